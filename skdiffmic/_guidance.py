"""The dual-granularity conditional guidance (DCG) model of DiffMIC.

A GMIC-style network (Shen et al. 2021) giving two coarse predictions:

* global: backbone feature map -> 1x1 conv -> one class activation map (CAM) per
  class -> top-t% mean of each CAM = global logits ``y_g``;
* local: ``n_crops`` windows are chosen greedily on saliency maps made from the
  CAMs (highest mean saliency, mask it, repeat), cut from the input image (all
  channels), encoded by a second CNN and pooled by gated attention (Ilse et al.
  2018) into the local logits ``y_l``. The saliency (``crop_saliency``) is
  GMIC's sum of the per-class min-max normalised CAMs (``"sum"``), that sum
  weighted by the global prediction (``"predicted"``), or each class's own map
  in turn, most probable class first (``"per_class"``). With two classes and a
  softmax the two CAMs are close to mirror images, their normalised sum is
  nearly flat, and ``"sum"`` places the windows almost at random.

The fused prior is ``(y_g + y_l) / 2``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._backbones import (
    create_crop_encoder,
    create_feature_encoder,
    create_pooled_encoder,
)
from ._profiling import timed

__all__ = [
    "CROP_SALIENCY",
    "LOCAL_ENCODERS",
    "DCGModel",
    "GatedAttention",
    "GuidanceOutput",
    "crop_maps",
    "cut_crops",
    "normalised_cams",
    "saliency_map",
    "select_windows",
    "top_t_aggregate",
]


class GuidanceOutput(NamedTuple):
    """Logits of the DCG model, each ``(B, n_classes)``."""

    fused: torch.Tensor
    global_: torch.Tensor
    local: torch.Tensor


def top_t_aggregate(cam: torch.Tensor, top_t: float = 1.0) -> torch.Tensor:
    """Mean of the top ``top_t`` fraction of each CAM: ``(B, K, h, w) -> (B, K)``.

    ``top_t = 1`` (the reference setting) is the plain spatial mean.
    """
    flat = cam.flatten(2)
    k = max(1, int(math.ceil(top_t * flat.shape[-1])))
    if k >= flat.shape[-1]:
        return flat.mean(-1)
    return flat.topk(k, dim=-1).values.mean(-1)


CROP_SALIENCY = ("sum", "predicted", "per_class")
LOCAL_ENCODERS = ("full", "cut")


def _check_crop_saliency(mode: str) -> None:
    if mode not in CROP_SALIENCY:
        raise ValueError(f"crop_saliency must be one of {CROP_SALIENCY}, got {mode!r}.")


def normalised_cams(cam: torch.Tensor) -> torch.Tensor:
    """Each class's CAM min-max normalised to [0, 1]: ``(B, K, h, w)``."""
    flat = cam.flatten(2)
    lo = flat.min(-1, keepdim=True).values
    hi = flat.max(-1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)


def saliency_map(cam: torch.Tensor, weights: torch.Tensor | None = None):
    """Per-class min-max normalised CAMs, summed: ``(B, K, h, w) -> (B, h, w)``.

    With ``weights (B, K)`` the sum is weighted (by the predicted class
    probabilities, for ``crop_saliency="predicted"``).
    """
    norm = normalised_cams(cam)
    if weights is None:
        return norm.sum(1)
    return (norm * weights[:, :, None, None]).sum(1)


def crop_maps(
    cam: torch.Tensor, logits: torch.Tensor, mode: str, multilabel: bool = False
) -> torch.Tensor:
    """The saliency maps the windows are chosen on: ``(B, M, h, w)``.

    Window ``i`` is chosen on map ``i % M`` (see :func:`select_windows`).
    ``"sum"`` and ``"predicted"`` give one map; ``"per_class"`` gives the
    normalised CAMs ordered by decreasing ``softmax(logits)``, so that the
    windows go round the classes, most probable first. ``"predicted"``
    weighs the maps by the classes' softmax, or (``multilabel``) by each
    label's sigmoid.
    """
    _check_crop_saliency(mode)
    if mode == "sum":
        return saliency_map(cam)[:, None]
    if mode == "predicted":
        probabilities = logits.float()
        probabilities = (
            probabilities.sigmoid() if multilabel else probabilities.softmax(-1)
        )
        return saliency_map(cam, probabilities)[:, None]
    # per_class: the softmax (and each label's sigmoid) keeps the logits' order.
    order = logits.argsort(-1, descending=True)
    return normalised_cams(cam).gather(1, order[:, :, None, None].expand_as(cam))


def select_windows(saliency: torch.Tensor, image_hw, crop_size: int, n_crops: int):
    """Greedy ROI selection on saliency maps.

    ``saliency`` is one map per image ``(B, h, w)`` or several ``(B, M, h, w)``;
    round ``i`` uses map ``i % M``. The maps are upsampled (bilinear) to the
    image resolution; each of the ``n_crops`` rounds takes the ``crop_size``
    window with the highest saliency sum (found for all windows at once from an
    integral image), then zeroes that window in every map so that the next
    round looks elsewhere. Vectorised over the batch.

    Returns
    -------
    torch.Tensor of shape (B, n_crops, 2), int64
        Top-left ``(row, col)`` of each window in image pixels.
    """
    height, width = image_hw
    c = int(crop_size)
    if c > height or c > width:
        raise ValueError(f"crop_size={c} is larger than the image ({height}x{width}).")
    maps = saliency[:, None] if saliency.dim() == 3 else saliency
    sal = F.interpolate(
        maps.float(), size=(height, width), mode="bilinear", align_corners=False
    ).double()
    batch, n_maps = sal.shape[:2]
    n_rows, n_cols = height - c + 1, width - c + 1
    rows = torch.arange(height, device=sal.device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=sal.device).view(1, 1, 1, -1)
    corners = []
    for i in range(n_crops):
        current = sal[:, i % n_maps]
        integral = F.pad(current.cumsum(1).cumsum(2), (1, 0, 1, 0))
        sums = (
            integral[:, c:, c:]
            - integral[:, :-c, c:]
            - integral[:, c:, :-c]
            + integral[:, :-c, :-c]
        )
        best = sums[:, :n_rows, :n_cols].reshape(batch, -1).argmax(1)
        r, q = best // n_cols, best % n_cols
        corners.append(torch.stack([r, q], 1))
        r4, q4 = r.view(-1, 1, 1, 1), q.view(-1, 1, 1, 1)
        inside = (rows >= r4) & (rows < r4 + c) & (cols >= q4) & (cols < q4 + c)
        sal = sal.masked_fill(inside, 0.0)
    return torch.stack(corners, 1)


def cut_crops(images: torch.Tensor, corners: torch.Tensor, crop_size: int):
    """Cut square crops from all channels with one gather, no Python loop.

    ``images (B, C, H, W)`` and ``corners (B, K, 2)`` give ``(B, K, C, c, c)``.
    """
    batch, n_crops = corners.shape[:2]
    offsets = torch.arange(crop_size, device=images.device)
    ys = (corners[..., 0:1] + offsets).view(batch, n_crops, crop_size, 1)
    xs = (corners[..., 1:2] + offsets).view(batch, n_crops, 1, crop_size)
    b = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    crops = images.permute(0, 2, 3, 1)[b, ys, xs]  # (B, K, c, c, C)
    return crops.permute(0, 1, 4, 2, 3)


class GatedAttention(nn.Module):
    """Gated attention MIL pooling (Ilse et al. 2018, eq. 9).

    ``a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))``, ``z = sum_k a_k h_k``.
    """

    def __init__(self, in_dim: int, attn_dim: int = 128):
        super().__init__()
        self.V = nn.Linear(in_dim, attn_dim)
        self.U = nn.Linear(in_dim, attn_dim)
        self.w = nn.Linear(attn_dim, 1)

    def forward(self, h: torch.Tensor):
        """``h (B, K, F)`` -> pooled ``z (B, F)`` and weights ``a (B, K)``."""
        scores = self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)
        attn = scores.softmax(-1)
        return (attn.unsqueeze(-1) * h).sum(1), attn


class DCGModel(nn.Module):
    """Dual-granularity conditional guidance network.

    Parameters
    ----------
    backbone : str
        timm model name, used for both the global and the local (crop) encoder.
    n_classes, in_chans, image_size : int
        Output classes, input channels and (square) input size in pixels.
    crop_size, n_crops : int
        ROI window size in pixels and number of windows.
    pretrained : False or path
        Local weights file loaded into both encoders.
    top_t : float
        Fraction of CAM cells averaged into the global logits.
    crop_saliency : {"sum", "predicted", "per_class"}
        The saliency the windows are chosen on (see :func:`crop_maps`).
    multilabel : bool
        Whether the outputs are independent labels (for ``"predicted"``).
    local_encoder : {"full", "cut"}
        The crops' CNN: the whole network with its pooled head features
        (``"full"``), or cut at the deepest stage that keeps a cell of a crop
        and average-pooled (``"cut"``, :func:`create_crop_encoder`).
    """

    def __init__(
        self,
        backbone: str,
        *,
        n_classes: int,
        in_chans: int,
        image_size: int,
        crop_size: int,
        n_crops: int,
        pretrained=False,
        top_t: float = 1.0,
        attn_dim: int = 128,
        crop_saliency: str = "sum",
        multilabel: bool = False,
        local_encoder: str = "full",
    ):
        super().__init__()
        if local_encoder not in LOCAL_ENCODERS:
            raise ValueError(
                f"local_encoder must be one of {LOCAL_ENCODERS}, got {local_encoder!r}."
            )
        _check_crop_saliency(crop_saliency)
        self.crop_saliency = crop_saliency
        self.multilabel = bool(multilabel)
        self.crop_size = int(crop_size)
        self.n_crops = int(n_crops)
        self.top_t = float(top_t)
        self.global_encoder, chans, _ = create_feature_encoder(
            backbone, in_chans=in_chans, image_size=image_size, pretrained=pretrained
        )
        self.cam_head = nn.Conv2d(chans, n_classes, kernel_size=1)
        if local_encoder == "cut":
            self.local_encoder, local_dim = create_crop_encoder(
                backbone, in_chans=in_chans, crop_size=crop_size, pretrained=pretrained
            )
        else:
            self.local_encoder, local_dim = create_pooled_encoder(
                backbone, in_chans=in_chans, pretrained=pretrained
            )
        self.attention = GatedAttention(local_dim, attn_dim)
        self.local_head = nn.Linear(local_dim, n_classes)

    @property
    def feature_dim(self) -> int:
        """Channels of the CAM stage: the width of ``details["features"]``."""
        return self.cam_head.in_channels

    def forward(self, x: torch.Tensor, return_details: bool = False):
        """The three priors' logits; with ``return_details`` also a dict of the
        CAMs (``cam``), the first window's map (``saliency``), the windows'
        corners, the attention weights, the global encoder's feature maps
        (``feature_maps``, every stage up to the CAM stage) and their last
        stage average-pooled (``features``, ``(B, feature_dim)``)."""
        with timed("dcg global"):
            feature_maps = self.global_encoder(x)
            cam = self.cam_head(feature_maps[-1])
            y_global = top_t_aggregate(cam, self.top_t)
        with timed("dcg windows"), torch.no_grad():
            maps = crop_maps(
                cam.detach(), y_global.detach(), self.crop_saliency, self.multilabel
            )
            corners = select_windows(maps, x.shape[-2:], self.crop_size, self.n_crops)
        with timed("dcg local"):
            crops = cut_crops(x, corners, self.crop_size)
            batch = x.shape[0]
            h = self.local_encoder(crops.flatten(0, 1))
            if isinstance(h, list):  # a cut network: its feature map, pooled
                h = h[-1].mean((-2, -1))
            h = h.view(batch, self.n_crops, -1)
            z, attn = self.attention(h)
            y_local = self.local_head(z)
        out = GuidanceOutput((y_global + y_local) / 2, y_global, y_local)
        if return_details:
            return out, {
                "cam": cam,
                "saliency": maps[:, 0],
                "corners": corners,
                "attention": attn,
                "feature_maps": feature_maps,
                "features": feature_maps[-1].mean((-2, -1)),
            }
        return out
