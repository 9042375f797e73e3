"""Synthetic dermoscopy-like images whose class lives in a small local structure."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_lesions"]


def _smooth_noise(rng, n, size, cells):
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1, 1, size=(n, cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    i0 = np.clip(pos.astype(int), 0, cells - 1)
    frac = pos - i0
    rows = (
        grid[:, i0] * (1 - frac)[None, :, None] + grid[:, i0 + 1] * frac[None, :, None]
    )
    return rows[:, :, i0] * (1 - frac) + rows[:, :, i0 + 1] * frac


def make_lesions(
    n_samples: int = 200,
    *,
    image_size: int = 32,
    n_classes: int = 2,
    patch_size: int | None = None,
    contrast: float = 0.35,
    noise: float = 0.04,
    random_state=None,
    return_patches: bool = False,
):
    """Make skin-lesion-like RGB images whose class is set by a small local pattern.

    Every image shows skin with smooth blotches and one brown lesion of random
    size and position, drawn the same way for every class. The class is
    decided only by a small striped patch inside the lesion: class ``k`` has
    stripes at angle ``k * 180 / n_classes`` degrees. Stripes of every angle
    have the same mean colour, so the image's global statistics say nothing
    about the class: a classifier has to find and read the local structure,
    the case DiffMIC's local guidance exists for.

    Parameters
    ----------
    n_samples : int, default=200
        Number of images; classes are balanced (in turn ``0, 1, ..., 0, 1``) and
        then shuffled.
    image_size : int, default=32
        Side of the square images in pixels (at least 16).
    n_classes : int, default=2
        Number of classes (stripe orientations), 2 to 8.
    patch_size : int or None, default=None
        Side of the striped patch; ``None`` uses ``max(5, image_size // 5)``.
    contrast : float, default=0.35
        Stripe amplitude, as a fraction of the 0-255 range.
    noise : float, default=0.04
        Standard deviation of per-pixel Gaussian noise (fraction of 255).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible images.
    return_patches : bool, default=False
        Also return where each image's striped patch is: the ground truth of
        where the class evidence lies (used to check explanations).

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
        The images.
    y : ndarray of shape (n_samples,), dtype int64
        Class of each image, in ``[0, n_classes)``.
    patches : ndarray of shape (n_samples, 4), dtype int64
        Only with ``return_patches=True``: the striped patch of each image as
        ``(row, col, height, width)`` in pixels (the same images and labels
        as without it).

    Examples
    --------
    >>> from skdiffmic.datasets import make_lesions
    >>> X, y = make_lesions(10, image_size=32, n_classes=3, random_state=0)
    >>> X.shape, X.dtype, sorted(set(y))
    ((10, 32, 32, 3), dtype('uint8'), [0, 1, 2])
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}.")
    if not isinstance(n_classes, (int, np.integer)) or not 2 <= n_classes <= 8:
        raise ValueError(f"n_classes must be an integer in [2, 8], got {n_classes!r}.")
    patch = int(patch_size or max(5, image_size // 5))
    if not 3 <= patch <= image_size // 2:
        raise ValueError(f"patch_size must be in [3, image_size // 2], got {patch}.")
    rng = check_random_state(random_state)
    n, s = int(n_samples), int(image_size)

    y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)

    # Skin: a per-image tone plus smooth blotches.
    tone = np.array([0.87, 0.68, 0.56]) + rng.uniform(-0.06, 0.06, size=(n, 1, 1, 3))
    img = tone + 0.05 * _smooth_noise(rng, n, s, 4)[..., None]

    # Lesion: a soft brown ellipse at a random place, the same for every class.
    radius = rng.uniform(0.22, 0.32, size=n) * s
    margin = radius + 1
    cy = rng.uniform(margin, s - margin)
    cx = rng.uniform(margin, s - margin)
    aspect = rng.uniform(0.8, 1.25, size=n)
    dist = (
        np.sqrt(
            ((yy - cy[:, None, None]) * aspect[:, None, None]) ** 2
            + ((xx - cx[:, None, None]) / aspect[:, None, None]) ** 2
        )
        / radius[:, None, None]
    )
    lesion = np.clip((1.15 - dist) / 0.3, 0, 1)[..., None]
    brown = np.array([0.45, 0.28, 0.2]) + rng.uniform(-0.05, 0.05, size=(n, 1, 1, 3))
    img = img * (1 - lesion) + brown * lesion

    # The class: a striped patch near the lesion's centre.
    span = np.maximum(radius * 0.5 - patch / 2, 0)
    py = np.clip(cy + rng.uniform(-1, 1, n) * span - patch / 2, 0, s - patch).astype(
        int
    )
    px = np.clip(cx + rng.uniform(-1, 1, n) * span - patch / 2, 0, s - patch).astype(
        int
    )
    angle = np.pi * y / n_classes
    period = max(2.0, patch / 2.5)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    proj = np.cos(angle)[:, None, None] * yy + np.sin(angle)[:, None, None] * xx
    stripes = np.sign(np.sin(2 * np.pi * proj / period + phase[:, None, None]))
    inside = (
        (yy >= py[:, None, None])
        & (yy < (py + patch)[:, None, None])
        & (xx >= px[:, None, None])
        & (xx < (px + patch)[:, None, None])
    )
    img = img + (contrast * stripes * inside)[..., None]

    img = img + rng.normal(0, noise, size=img.shape)
    X = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    if return_patches:
        sides = np.full(n, patch)
        return X, y, np.stack([py, px, sides, sides], axis=1).astype(np.int64)
    return X, y
