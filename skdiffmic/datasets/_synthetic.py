"""Synthetic dermoscopy-like images whose class lives in a small local structure.

:func:`make_lesions` draws single-label images (the class is the angle of a
striped patch) or, with ``n_labels``, multi-label images (each label is one
kind of small finding, present or absent independently of the others).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_lesions"]

#: Number of distinct findings the multi-label images can show.
_N_FINDINGS = 8
#: Strength of each finding relative to ``contrast``: the spot, ring and cross
#: are smooth shapes, harder to tell from the blotchy skin than the textures.
_GAIN = (2.0, 1.6, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0)
#: Strengths are ``contrast * gain * u ** _POWER`` with u uniform in [0, 1]:
#: skewed towards faint findings, some too faint to see in the noise.
_POWER = 2.0


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


def _skin_and_lesion(rng, n, s, yy, xx):
    """Skin with one brown lesion per image: images in [0, 1], lesion radius, centre."""
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
    return img * (1 - lesion) + brown * lesion, radius, cy, cx


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
    n_labels: int | None = None,
):
    """Make skin-lesion-like RGB images whose class is set by a small local pattern.

    Every image shows skin with smooth blotches and one brown lesion of random
    size and position, drawn the same way for every class. The class is
    decided only by a small striped patch inside the lesion: class ``k`` has
    stripes at angle ``k * 180 / n_classes`` degrees. Stripes of every angle
    have the same mean colour, so the image's global statistics say nothing
    about the class: a classifier has to find and read the local structure,
    the case DiffMIC's local guidance exists for.

    **Multi-label images** (``n_labels=L``): the same skin and lesion
    background, plus up to ``L`` small *findings*, one kind per label, each
    present or absent independently of the others (any subset may co-occur,
    none included) and placed at a random spot of the image (anywhere, on skin
    or lesion; findings of one image do not overlap where there is room).
    Finding ``j`` is drawn in grey levels with its own signature, in this
    order: 0 a dark spot, 1 a bright ring, 2 horizontal stripes, 3 vertical
    stripes, 4 a checkerboard, 5 diagonal stripes, 6 a bright cross, 7
    anti-diagonal stripes. Label ``j`` is present with probability
    ``0.5 - 0.35 * j / (L - 1)`` (from 0.5 for label 0 down to 0.15 for the
    last one), so the labels are unevenly frequent. Each finding's strength is
    drawn per image as ``contrast * g * u ** 2`` with ``u`` uniform in [0, 1]
    (``g`` is 2 for the spot and the cross, 1.6 for the ring and 1 for the
    textures): many are faint and the faintest drown in the noise, so even a
    good model ranks some images wrongly (a small CNN reaches per-label ROC
    AUCs of roughly 0.8 to 0.95 at 32 px). Every label is guaranteed both
    values: where a column comes out all 0 (all 1), one randomly chosen image
    gets the finding (loses it). ``n_labels=None`` (the default) gives the
    single-label images above, unchanged.

    Parameters
    ----------
    n_samples : int, default=200
        Number of images; classes are balanced (in turn ``0, 1, ..., 0, 1``) and
        then shuffled. At least 2 with ``n_labels``.
    image_size : int, default=32
        Side of the square images in pixels (at least 16).
    n_classes : int, default=2
        Number of classes (stripe orientations), 2 to 8. Not used with
        ``n_labels`` (leave it at 2 then).
    patch_size : int or None, default=None
        Side of the striped patch (of each finding with ``n_labels``); ``None``
        uses ``max(5, image_size // 5)`` (``max(6, image_size // 4)`` with
        ``n_labels``).
    contrast : float, default=0.35
        Stripe amplitude, as a fraction of the 0-255 range (the strongest
        finding's amplitude with ``n_labels``).
    noise : float, default=0.04
        Standard deviation of per-pixel Gaussian noise (fraction of 255).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible images.
    return_patches : bool, default=False
        Also return where each image's striped patch is: the ground truth of
        where the class evidence lies (used to check explanations).
    n_labels : int or None, default=None
        Make multi-label images with this many labels (2 to 8) and return a
        binary indicator matrix ``Y`` instead of class indices ``y``.

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
        The images.
    y : ndarray of shape (n_samples,) or (n_samples, n_labels), dtype int64
        Class of each image, in ``[0, n_classes)``; with ``n_labels``, the
        indicator matrix ``Y`` (``Y[i, j] == 1`` when image ``i`` shows
        finding ``j``), scikit-learn's "multilabel-indicator" target.
    patches : ndarray of shape (n_samples, 4) or (n_samples, n_labels, 4), \
dtype int64
        Only with ``return_patches=True``: the striped patch of each image as
        ``(row, col, height, width)`` in pixels (the same images and labels
        as without it). With ``n_labels``, one box per finding; rows of
        absent findings are ``-1``.

    Raises
    ------
    ValueError
        If an argument is out of range, or ``n_classes`` is changed together
        with ``n_labels``.

    Examples
    --------
    >>> from skdiffmic.datasets import make_lesions
    >>> X, y = make_lesions(10, image_size=32, n_classes=3, random_state=0)
    >>> X.shape, X.dtype, sorted(set(y.tolist()))
    ((10, 32, 32, 3), dtype('uint8'), [0, 1, 2])
    >>> X, Y = make_lesions(50, n_labels=4, random_state=0)
    >>> Y.shape, Y.dtype, Y.min(0).tolist(), Y.max(0).tolist()
    ((50, 4), dtype('int64'), [0, 0, 0, 0], [1, 1, 1, 1])
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}.")
    if not isinstance(n_classes, (int, np.integer)) or not 2 <= n_classes <= 8:
        raise ValueError(f"n_classes must be an integer in [2, 8], got {n_classes!r}.")
    if n_labels is not None:
        if (
            not isinstance(n_labels, (int, np.integer))
            or isinstance(n_labels, bool)
            or not 2 <= n_labels <= _N_FINDINGS
        ):
            raise ValueError(
                f"n_labels must be None or an integer in [2, {_N_FINDINGS}], got "
                f"{n_labels!r}."
            )
        if n_classes != 2:
            raise ValueError(
                "n_classes is not used with n_labels (multi-label images); leave "
                f"it at its default, got n_classes={n_classes!r}."
            )
        if n_samples < 2:
            raise ValueError(
                "n_samples must be at least 2 with n_labels (every label needs a "
                f"positive and a negative image), got {n_samples!r}."
            )
    if n_labels is None:
        default_patch = max(5, image_size // 5)
    else:
        default_patch = max(6, image_size // 4)
    patch = int(patch_size or default_patch)
    if not 3 <= patch <= image_size // 2:
        raise ValueError(f"patch_size must be in [3, image_size // 2], got {patch}.")
    rng = check_random_state(random_state)
    n, s = int(n_samples), int(image_size)
    if n_labels is not None:
        return _multilabel_lesions(
            rng, n, s, int(n_labels), patch, contrast, noise, return_patches
        )

    y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    img, radius, cy, cx = _skin_and_lesion(rng, n, s, yy, xx)

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


# ------------------------------------------------------------ multi-label --
def _finding_pattern(kind, rng, n, patch):
    """``n`` grey-level drawings of finding ``kind``, shape (n, patch, patch).

    Values lie in [-1, 1]: the stripes and the checkerboard have a random
    phase; the spot is dark (negative), the ring and the cross bright.
    """
    idx = np.arange(patch, dtype=np.float64)
    rows, cols = np.meshgrid(idx, idx, indexing="ij")
    u = (rows + 0.5) / patch * 2 - 1
    v = (cols + 0.5) / patch * 2 - 1
    r = np.sqrt(u**2 + v**2)
    period = max(2.0, patch / 2.5)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    if kind == 0:  # dark spot
        shape = -np.clip((0.8 - r) / 0.25, 0, 1)
    elif kind == 1:  # bright ring
        shape = np.clip(1 - np.abs(r - 0.7) / 0.22, 0, 1)
    elif kind == 6:  # bright cross
        shape = ((np.abs(u) < 0.3) | (np.abs(v) < 0.3)).astype(np.float64)
    elif kind == 4:  # checkerboard
        phase2 = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        wave = np.sin(2 * np.pi * rows / period + phase)
        return np.sign(wave * np.sin(2 * np.pi * cols / period + phase2))
    else:  # stripes: 2 horizontal, 3 vertical, 5 diagonal, 7 anti-diagonal
        angle = {2: 0.0, 3: np.pi / 2, 5: np.pi / 4, 7: 3 * np.pi / 4}[kind]
        proj = np.cos(angle) * rows + np.sin(angle) * cols
        return np.sign(np.sin(2 * np.pi * proj / period + phase))
    return np.broadcast_to(shape, (n, patch, patch))


def _place_findings(rng, present, s, patch, tries=30):
    """Top-left corners (n, n_labels, 2) of the present findings, -1 if absent.

    Each finding takes the first of ``tries`` random spots that overlaps no
    finding already placed in its image, or the first spot if none is free.
    """
    n, n_labels = present.shape
    corners = np.full((n, n_labels, 2), -1, dtype=np.int64)
    for j in range(n_labels):
        spots = rng.randint(0, s - patch + 1, size=(n, tries, 2))
        free = np.ones((n, tries), dtype=bool)
        for k in range(j):
            close = np.all(np.abs(spots - corners[:, k, None, :]) < patch, axis=-1)
            free &= ~(close & present[:, k, None])
        chosen = spots[np.arange(n), free.argmax(1)]  # argmax is 0 if none free
        corners[:, j] = np.where(present[:, j, None], chosen, -1)
    return corners


def _multilabel_lesions(rng, n, s, n_labels, patch, contrast, noise, return_patches):
    """The ``n_labels`` branch of :func:`make_lesions`."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    img, *_ = _skin_and_lesion(rng, n, s, yy, xx)

    rates = 0.5 - 0.35 * np.arange(n_labels) / (n_labels - 1)
    Y = (rng.uniform(size=(n, n_labels)) < rates).astype(np.int64)
    for j in range(n_labels):  # every label gets both values
        if Y[:, j].min() == Y[:, j].max():
            Y[rng.randint(n), j] = 1 - Y[0, j]
    present = Y.astype(bool)

    corners = _place_findings(rng, present, s, patch)
    offsets = np.arange(patch)
    for j in range(n_labels):
        strength = contrast * _GAIN[j] * rng.uniform(0, 1, size=n) ** _POWER
        drawing = _finding_pattern(j, rng, n, patch) * strength[:, None, None]
        rows = np.flatnonzero(present[:, j])
        r = corners[rows, j, 0, None] + offsets  # (m, patch)
        c = corners[rows, j, 1, None] + offsets
        img[rows[:, None, None], r[:, :, None], c[:, None, :]] += drawing[rows][
            ..., None
        ]

    img = img + rng.normal(0, noise, size=img.shape)
    X = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    if return_patches:
        boxes = np.concatenate(
            [corners, np.where(present, patch, -1)[..., None].repeat(2, -1)], axis=-1
        )
        return X, Y, boxes.astype(np.int64)
    return X, Y
