"""The losses: classification of logits, and the Gaussian-kernel maximum mean
discrepancy (MMD), DiffMIC's distribution loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._targets import known_entries

__all__ = ["classification_loss", "gaussian_mmd"]


def classification_loss(logits, target, weight=None, *, multilabel=False, known=None):
    """The loss of logits ``(B, K)`` against their targets.

    Single-label: the cross-entropy against class indices ``target`` (B,),
    ``weight`` weighing the classes (normalised by the rows' total weight,
    as :func:`torch.nn.functional.cross_entropy` does). Multi-label: binary
    cross-entropy against the 0/1 indicator ``target`` (B, K), summed over
    the row's known labels (each label's logit then gets the gradient
    ``sigmoid - y``, the cross-entropy's scale) and averaged over the rows;
    ``weight`` is each label's ``pos_weight``, the weight of its positive
    rows. ``known`` (B, K) marks the entries that count; by default those
    where ``target`` is not NaN. An entry that is not known adds nothing to
    the loss, whatever its value, and its logit gets no gradient.
    """
    if multilabel:
        if known is None:
            target, known = known_entries(target)
        else:
            target = torch.where(known, target, torch.zeros_like(target))
        per_label = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=weight, reduction="none"
        )
        return torch.where(known, per_label, 0.0).sum(-1).mean()
    return F.cross_entropy(logits, target, weight=weight)


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None):
    """Biased (V-statistic) squared MMD between the rows of ``x`` and ``y``.

    ``MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`` with the Gaussian
    kernel ``k(a, b) = exp(-||a - b||^2 / (2 * bandwidth))``. The default
    bandwidth is the dimension ``d``: for two unit-variance Gaussian samples
    ``E||a - b||^2 = 2d``, so the kernel sits in its sensitive range whatever
    the number of classes.

    Parameters
    ----------
    x, y : torch.Tensor of shape (n, d) and (m, d)
        The two samples (here: true noise and predicted noise).
    bandwidth : float, optional
        Kernel variance; defaults to ``d``.

    Returns
    -------
    torch.Tensor
        A scalar, ``>= 0`` up to rounding; 0 when ``x`` and ``y`` are the same.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"Expected (n, d) and (m, d) tensors, got {x.shape}, {y.shape}."
        )
    bw = float(x.shape[1]) if bandwidth is None else float(bandwidth)

    def kernel_mean(a, b):
        sq_dist = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
        return torch.exp(-sq_dist / (2 * bw)).mean()

    return kernel_mean(x, x) + kernel_mean(y, y) - 2 * kernel_mean(x, y)
