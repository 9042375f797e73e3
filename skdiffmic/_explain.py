"""Per-image explanations: what the guidance (DCG) model looked at.

The DCG model computes, on the way to its priors, one class activation map
(CAM) per class, the saliency map made from them (see ``crop_saliency``), the
``n_crops`` windows chosen greedily on it and the gated-attention weight of
each window.
:func:`explain` collects them for every image of ``X``, batch by batch with
the estimator's own preprocessing, together with the three priors and the
diffusion's probabilities.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ._batching import autocast
from ._targets import label_probabilities

__all__ = [
    "class_maps",
    "explain",
    "normalised_saliency",
    "pointing_chance",
    "pointing_game",
]


def normalised_saliency(maps: torch.Tensor, size) -> torch.Tensor:
    """Maps at ``size``, min-max scaled per image.

    ``maps`` (one per image) are upsampled bilinearly to ``size`` (as the
    window selection does) and then scaled to [0, 1] image by image; a flat
    map becomes all zeros. ``(B, h, w) -> (B, H, W)``, float64.
    """
    sal = F.interpolate(
        maps.float()[:, None],
        size=tuple(size),
        mode="bilinear",
        align_corners=False,
    )[:, 0].double()
    flat = sal.flatten(1)
    lo = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - lo
    scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-300), 0.0)
    return scaled.clamp(0.0, 1.0).view_as(sal)


def class_maps(cams: np.ndarray, classes, size) -> np.ndarray:
    """One class's CAM per image, upsampled to ``size``, min-max scaled per image.

    ``cams`` is ``(n, K, h, w)`` and ``classes`` ``(n,)`` class indices;
    returns ``(n, H, W)`` in [0, 1] (bilinear, as the saliency map).
    """
    cams = np.asarray(cams)
    picked = cams[np.arange(len(cams)), np.asarray(classes)]
    return normalised_saliency(torch.from_numpy(picked), size).numpy()


def explain(clf, X) -> Bunch:
    """The explanation of every image of ``X``; see ``DiffMICClassifier.explain``."""
    check_is_fitted(clf)
    if clf.tabular_:
        raise ValueError(
            "explain needs images: this model was fitted on feature vectors (the "
            "tabular mode), whose guidance model has no class activation maps, "
            "saliency map or windows."
        )
    data, device = clf._prepare(X)
    guidance_model, _, dtype = clf._inference_networks()
    size = (clf.image_size_, clf.image_size_)
    crop = clf.crop_size_
    parts = {
        key: []
        for key in (
            "images",
            "saliency",
            "cams",
            "windows",
            "attention",
            "prior_global",
            "prior_local",
            "prior_fused",
        )
    }
    multilabel = clf._is_multilabel()

    def proba(logits):
        return label_probabilities(logits.to(torch.float64), multilabel).cpu()

    for _, x, raw in clf._batches(data, device):
        x = x if dtype is None else x.to(dtype)
        with torch.inference_mode(), autocast(device):
            logits, details = guidance_model(x, return_details=True)
        corners = details["corners"].cpu().to(torch.int64)
        sides = torch.full_like(corners, crop)
        parts["images"].append(raw.permute(0, 2, 3, 1).float())
        parts["saliency"].append(normalised_saliency(details["saliency"], size).cpu())
        parts["cams"].append(details["cam"].to(torch.float64).cpu())
        parts["windows"].append(torch.cat([corners, sides], -1))
        parts["attention"].append(details["attention"].to(torch.float64).cpu())
        parts["prior_fused"].append(proba(logits.fused))
        parts["prior_global"].append(proba(logits.global_))
        parts["prior_local"].append(proba(logits.local))
    result = {key: torch.cat(values).numpy() for key, values in parts.items()}
    # The diffusion's probabilities, exactly as predict_proba gives them.
    result["proba"] = clf.predict_proba(X)
    return Bunch(**result)


# --------------------------------------------------------- pointing game --
def _overlap_1d(start, length, box_start, box_length):
    return (start < box_start + box_length) & (box_start < start + length)


def pointing_game(explanation: Bunch, boxes) -> dict:
    """Per-image hits of the pointing game against known evidence boxes.

    ``boxes`` is ``(n, 4)``: ``(row, col, height, width)`` of the region that
    holds each image's class evidence, in network-input pixels. Returns
    boolean arrays of shape (n,):

    - ``attention``: the window with the highest attention weight overlaps
      the box;
    - ``first_window``: the first window chosen (the most salient) overlaps it;
    - ``saliency``: the maximum of the saliency map lies inside the box;
    - ``cam``: the maximum of the CAM of the class DiffMIC predicts
      (``proba``'s argmax), upsampled bilinearly, lies inside the box.
    """
    boxes = np.asarray(boxes, dtype=np.int64)
    windows = explanation.windows
    n = len(windows)
    top = windows[np.arange(n), explanation.attention.argmax(1)]

    def overlaps(w):
        return _overlap_1d(w[:, 0], w[:, 2], boxes[:, 0], boxes[:, 2]) & _overlap_1d(
            w[:, 1], w[:, 3], boxes[:, 1], boxes[:, 3]
        )

    def peak_inside(maps):
        flat = maps.reshape(n, -1).argmax(1)
        rows, cols = np.unravel_index(flat, maps.shape[1:])
        return (
            (rows >= boxes[:, 0])
            & (rows < boxes[:, 0] + boxes[:, 2])
            & (cols >= boxes[:, 1])
            & (cols < boxes[:, 1] + boxes[:, 3])
        )

    size = explanation.saliency.shape[1:]
    predicted = class_maps(explanation.cams, explanation.proba.argmax(1), size)
    return {
        "attention": overlaps(top),
        "first_window": overlaps(windows[:, 0]),
        "saliency": peak_inside(explanation.saliency),
        "cam": peak_inside(predicted),
    }


def pointing_chance(boxes, image_size: int, window_size: int) -> dict:
    """Chance levels of :func:`pointing_game`, per image, shape (n,).

    ``window``: the share of all positions of a ``window_size`` window in an
    ``image_size`` square image that overlap the box (a window placed
    uniformly at random); ``saliency``: the box's share of the image's pixels
    (a maximum placed uniformly at random).
    """
    boxes = np.asarray(boxes, dtype=np.int64)
    s, c = int(image_size), int(window_size)
    last = s - c  # the last top-left position of a window

    def positions(start, length):
        lo = np.maximum(0, start - c + 1)
        hi = np.minimum(last, start + length - 1)
        return np.maximum(hi - lo + 1, 0)

    window = (
        positions(boxes[:, 0], boxes[:, 2])
        * positions(boxes[:, 1], boxes[:, 3])
        / float((last + 1) ** 2)
    )
    saliency = boxes[:, 2] * boxes[:, 3] / float(s * s)
    return {"window": window, "saliency": saliency}
