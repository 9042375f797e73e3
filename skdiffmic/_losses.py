"""Gaussian-kernel maximum mean discrepancy (MMD), DiffMIC's distribution loss."""

from __future__ import annotations

import torch

__all__ = ["gaussian_mmd"]


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
