"""Decoding a list of image files once into an array at the network size."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .._inputs import PathImages

__all__ = ["read_images"]


def read_images(
    paths,
    *,
    size: int,
    channels: int | None = None,
    batch_size: int = 256,
    verbose: int = 0,
    dicom_window=None,
) -> np.ndarray:
    """Decode image files into one uint8 array, centre-cropped and resized.

    Each file is read with PIL (DICOM files with pydicom) exactly as the
    estimators read paths (same mode conversion, centre square crop,
    antialiased bilinear resize), then rounded to uint8. Fitting on the result
    matches fitting on the paths with ``image_size=size`` up to that rounding
    (and, for DICOM, with the default ``dicom_window``), and avoids decoding
    every file again in every epoch: useful when the resized set fits in
    memory (``n * size * size * channels`` bytes).

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files.
    size : int
        Side of the square output images in pixels.
    channels : {1, 3} or None, default=None
        Grayscale or RGB; ``None`` reads RGB when any file is colour.
    batch_size : int, default=256
        Files decoded at a time.
    verbose : int, default=0
        ``1`` shows a progress bar.
    dicom_window : None, "auto", "full" or (center, width), default=None
        How the grayscale values of DICOM files are mapped to [0, 1].
        ``None`` or ``"auto"``: through the file's own VOI LUT or first window
        (*Window Center* / *Width*), or over the image's minimum to maximum
        when it has none, as the estimators read DICOM paths. ``"full"``:
        always over the minimum to maximum. ``(center, width)``: through this
        window, in modality units (after *Rescale Slope* / *Intercept*:
        Hounsfield units for CT), e.g. ``(40, 400)`` for soft tissue. Colour
        files are not windowed; a ``(center, width)`` window refuses them.

    Returns
    -------
    images : ndarray of shape (n, size, size, channels), uint8

    Examples
    --------
    >>> from skdiffmic.datasets import load_br35h, read_images
    >>> paths, y = load_br35h(return_X_y=True)  # doctest: +SKIP
    >>> X = read_images(paths, size=64)  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (3000, 64, 64, 3)
    """
    source = PathImages(
        list(paths), channels=channels, size=int(size), dicom_window=dicom_window
    )
    out = np.empty((len(source), size, size, source.channels), dtype=np.uint8)
    for start in tqdm(
        range(0, len(source), batch_size), disable=not verbose, desc="reading"
    ):
        rows = np.arange(start, min(start + batch_size, len(source)))
        batch = source.load(rows).permute(0, 2, 3, 1).numpy()
        out[rows] = np.clip(np.rint(batch * 255.0), 0, 255).astype(np.uint8)
    return out
