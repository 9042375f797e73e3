"""Rows into mini-batches: epoch orders, background decoding, device transfer.

Shared by training (both estimators) and prediction: :func:`iter_batches`
loads the rows of a source batch by batch, the next one decoded in a
background thread, and puts them on the device in the networks' layout.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from ._profiling import timed
from ._targets import label_sample_weight

__all__ = [
    "Batch",
    "autocast",
    "balanced_sample_weight",
    "dihedral",
    "epoch_order",
    "epoch_size",
    "iter_batches",
]


def autocast(device: torch.device):
    """bf16 autocast on CUDA when supported; a no-op context elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled
    )


class Batch(NamedTuple):
    """One mini-batch: row positions, network input on the device, CPU rows."""

    pos: np.ndarray
    x: torch.Tensor
    raw: torch.Tensor


def iter_batches(images, indices, batch_size, preprocess, device):
    """Yield a :class:`Batch` for each slice of ``indices``.

    ``raw`` is what ``images.load`` returned (CPU, before ``preprocess``). The
    next batch is loaded (files decoded) in a background thread while the
    caller works on the current one.
    """
    indices = np.asarray(indices)
    cuda = device.type == "cuda"
    slices = [
        indices[start : start + batch_size]
        for start in range(0, len(indices), batch_size)
    ]
    with ThreadPoolExecutor(1, thread_name_prefix="skdiffmic-prefetch") as ahead:
        pending = ahead.submit(images.load, slices[0]) if slices else None
        for k, pos in enumerate(slices):
            with timed("decode"):
                raw = pending.result()
            if k + 1 < len(slices):
                pending = ahead.submit(images.load, slices[k + 1])
            yield _to_network(pos, raw, preprocess, device, cuda)


def _to_network(pos, raw, preprocess, device, cuda) -> Batch:
    """A loaded batch on the device, preprocessed, in the networks' layout."""
    with timed("to device"):
        batch = raw
        if cuda:
            batch = batch.pin_memory().to(device, non_blocking=True)
        batch = preprocess(batch)
        if batch.dim() == 4:  # images: the networks' memory format
            batch = batch.contiguous(memory_format=torch.channels_last)
    return Batch(pos, batch, raw)


# The views test-time augmentation averages over: the square's 8 symmetries
# (4 quarter turns, each also flipped left-right), the identity first.
N_VIEWS = 8


def dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """Image batch ``x`` (N, C, H, W) under symmetry ``view`` of the square:
    ``view % 4`` quarter turns, then a left-right flip when ``view >= 4``.
    View 0 is ``x`` itself; other tensors (feature rows) pass unchanged."""
    if view == 0 or x.dim() != 4:
        return x
    out = torch.rot90(x, view % 4, dims=(2, 3))
    if view >= 4:
        out = torch.flip(out, dims=(3,))
    return out.contiguous(memory_format=torch.channels_last)


def epoch_size(n, batch_size):
    """Images seen per epoch: all but a trailing batch of one.

    BatchNorm cannot train on one sample, so a last batch of one is dropped
    (that image is seen again in the next epoch's shuffle).
    """
    return n - 1 if n > 1 and n % batch_size == 1 else n


def balanced_sample_weight(y: torch.Tensor, n_classes: int = 0) -> torch.Tensor:
    """Per-row drawing weights, inversely proportional to the row's class size
    (``balanced_sampling``: every class drawn about equally often); for an
    indicator ``y`` (multi-label), :func:`skdiffmic._targets.label_sample_weight`."""
    if y.dim() == 2:
        weights = label_sample_weight(y.cpu().numpy())
        return torch.as_tensor(weights, dtype=torch.float64)
    counts = torch.bincount(y, minlength=n_classes).double()
    return (1.0 / counts.clamp_min(1))[y]


def epoch_order(n, batch_size, generator, sample_weight=None):
    """Shuffled indices for one epoch (see :func:`epoch_size`).

    With ``sample_weight``, ``n`` rows are drawn with replacement in proportion
    to it (class-balanced sampling).
    """
    if sample_weight is None:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.multinomial(sample_weight, n, True, generator=generator)
    return order.numpy()[: epoch_size(n, batch_size)]
