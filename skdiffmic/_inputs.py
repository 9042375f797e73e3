"""Coercion of ``X`` into image batches, and the per-batch preprocessing.

An :class:`ArrayImages` wraps the user's array without copying it; pixels are
converted to float32 one batch at a time. :class:`Preprocess` turns such a
batch into network input on the target device: centre square crop, resize to
``image_size``, normalisation with the backbone's statistics.
"""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

__all__ = ["ArrayImages", "Preprocess", "as_images", "row_seeds"]

_INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_MAX_CHANNELS = 4


class ArrayImages:
    """Images in a numpy array of shape ``(n, H, W)`` or ``(n, H, W, C)``.

    ``uint8`` pixels are divided by 255 and ``uint16`` by 65535; float (and
    other numeric) pixels are used as given and expected in [0, 1].
    """

    def __init__(self, X: np.ndarray):
        self.X = X if X.ndim == 4 else X[..., None]  # a view, not a copy
        self.scale = _INT_SCALE.get(X.dtype, 1.0)

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images."""
        return tuple(int(s) for s in self.X.shape[1:])

    def load(self, indices) -> torch.Tensor:
        """Float32 tensor ``(B, C, H, W)`` for the rows ``indices``."""
        batch = np.ascontiguousarray(self.X[np.asarray(indices)])
        out = torch.from_numpy(batch)
        out = out.float() if out.dtype != torch.float32 else out
        if self.scale != 1.0:
            out = out / self.scale
        return out.permute(0, 3, 1, 2)

    def row_bytes(self, i: int) -> bytes:
        return np.ascontiguousarray(self.X[i]).tobytes()


def as_images(X, *, n_channels: int | None = None) -> ArrayImages:
    """Validate ``X`` and wrap it as images, raising clear errors for bad input.

    Parameters
    ----------
    X : array-like of shape (n, H, W) or (n, H, W, C)
        The images.
    n_channels : int, optional
        Channel count seen at ``fit``; a different count at predict time is an
        error.
    """
    if sp.issparse(X):
        raise TypeError(
            "Sparse matrices are not supported: DiffMICClassifier needs dense "
            "images; convert with X.toarray()."
        )
    if isinstance(X, str) or (
        isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], str)
    ):
        raise TypeError(
            "File paths are not supported as X yet; load the images into an array "
            "of shape (n, H, W) or (n, H, W, C)."
        )
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind in "USV":
        raise TypeError(
            f"X has dtype {X.dtype}; images must be numeric arrays (uint8, uint16 "
            "or float)."
        )
    if X.dtype.kind == "c":
        raise TypeError("Complex-valued images are not supported.")
    if X.dtype == bool:
        X = X.astype(np.uint8) * 255
    if X.ndim not in (3, 4):
        raise ValueError(
            f"Expected images of shape (n, H, W) or (n, H, W, C); got an array with "
            f"{X.ndim} dimension(s), shape {X.shape}."
        )
    if X.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}).")
    if X.ndim == 4 and not 1 <= X.shape[-1] <= _MAX_CHANNELS:
        hint = (
            " It looks channels-first; use np.moveaxis(X, 1, -1)."
            if X.shape[1] in (1, 3, 4)
            else ""
        )
        raise ValueError(
            f"Images must be channels-last (n, H, W, C) with 1 to {_MAX_CHANNELS} "
            f"channels; got shape {X.shape}.{hint}"
        )
    if X.dtype.kind == "f":
        for start in range(0, X.shape[0], 256):
            chunk = X[start : start + 256]
            if not np.isfinite(chunk).all():
                bad = start + int(
                    np.flatnonzero(
                        ~np.isfinite(chunk).reshape(chunk.shape[0], -1).all(1)
                    )[0]
                )
                raise ValueError(
                    f"Input contains NaN or infinity (first at image {bad})."
                )
    images = ArrayImages(X)
    if n_channels is not None and images.shape[2] != n_channels:
        raise ValueError(
            f"X has {images.shape[2]} channel(s) but the estimator was fitted on "
            f"images with {n_channels}."
        )
    return images


def row_seeds(images: ArrayImages, seed: int) -> list[int]:
    """A 63-bit seed per image, derived from ``seed`` and the image's own bytes.

    Sampling noise drawn from these seeds is the same for an image whatever
    batch or order it comes in.
    """
    key = int(seed).to_bytes(8, "little", signed=False)
    out = []
    for i in range(len(images)):
        digest = hashlib.blake2b(images.row_bytes(i), digest_size=8, key=key).digest()
        out.append(int.from_bytes(digest, "little") >> 1)
    return out


class Preprocess:
    """Batch preprocessing on the target device.

    Centre square crop, resize to ``image_size`` (bilinear, antialiased) and
    per-channel normalisation ``(x - mean) / std``.
    """

    def __init__(self, image_size: int, mean, std):
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        h, w = batch.shape[-2:]
        if h != w:
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            batch = batch[..., top : top + side, left : left + side]
        if batch.shape[-1] != self.image_size:
            batch = F.interpolate(
                batch,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        mean, std = self.mean.to(batch.device), self.std.to(batch.device)
        return (batch - mean) / std
