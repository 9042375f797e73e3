"""Reading image files with PIL: modes, channels and clear errors.

Every PIL mode is mapped to grayscale (1 channel) or colour (3 channels):

* ``1``, ``L``, ``LA``, ``La``, ``I``, ``I;16*`` and ``F`` are grayscale; the
  alpha of ``LA`` is dropped;
* every other mode (``RGB``, ``RGBA``, ``P``, ``CMYK``, ``YCbCr``, ...) is
  converted to ``RGB``; alpha channels are dropped, palettes expanded.

A set of files is read with 3 channels as soon as one of them is colour
(grayscale files are then replicated to RGB), and with 1 channel when all are
grayscale. Pixels come back as float32 in [0, 1]: 8-bit modes are divided by
255 and 16-bit modes by 65535; ``F`` (float) pixels are used as given.

DICOM files (a ``.dcm`` name, or ``DICM`` at byte 128) are read with pydicom
instead, as :mod:`skdiffmic._dicom` describes: grayscale or colour by their
photometric interpretation, pixel values as a viewer shows them. A colour
file read with one channel is converted to luma with the weights Pillow's
``L`` mode uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._dicom import is_dicom, probe_dicom, read_dicom

__all__ = [
    "GRAY_MODES",
    "file_channels",
    "is_path",
    "probe_image",
    "read_image",
    "verify_image",
]

GRAY_MODES = frozenset(
    {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
)
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL


def _existing(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Image file not found: {path!r}.")
    return path


def _open(path):
    """Open ``path`` lazily (header only), turning failures into ValueError."""
    path = _existing(path)
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"Not a readable image file: {path!r}.") from None
    except OSError as exc:
        raise ValueError(f"Cannot open image file {path!r}: {exc}.") from None


def file_channels(path: str | os.PathLike) -> int:
    """1 for a grayscale file, 3 for a colour one, from the file header only.

    Raises
    ------
    ValueError
        If the file does not exist or is not an image PIL can identify.
    """
    return probe_image(path)[2]


def probe_image(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(height, width, channels)`` of an image file, from its header only.

    ``channels`` is 1 for grayscale modes and 3 for colour ones.

    Raises
    ------
    ValueError
        If the file does not exist or is not an image PIL can identify; for
        DICOM, if it cannot give one image (see :func:`~._dicom.probe_dicom`).
    """
    if is_dicom(_existing(path)):
        return probe_dicom(path)
    with _open(path) as image:
        width, height = image.size
        return height, width, 1 if image.mode in GRAY_MODES else 3


def _decode(image: Image.Image, path) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"Cannot decode image file {os.fspath(path)!r} (truncated or corrupt): "
            f"{exc}."
        ) from None


def verify_image(path: str | os.PathLike) -> None:
    """Check that ``path`` decodes completely; raise ValueError naming it if not.

    JPEGs are decoded at reduced scale (the whole stream is still read, so a
    truncated file is caught) to keep the check cheap on large data sets.
    DICOM files are decoded whole.
    """
    if is_dicom(_existing(path)):
        read_dicom(path)
        return
    with _open(path) as image:
        if image.format == "JPEG":
            image.draft(image.mode, (64, 64))
        _decode(image, path)


def read_image(
    path: str | os.PathLike, channels: int, *, dicom_window="auto"
) -> np.ndarray:
    """Decode ``path`` to a float32 array ``(H, W, channels)`` in [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    channels : {1, 3}
        Grayscale or RGB output (see the module notes for the conversions).
    dicom_window : None, "auto", "full" or (center, width), default="auto"
        How DICOM grayscale values are mapped to [0, 1]; see
        :func:`~._dicom.read_dicom`. Other files ignore it.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels}.")
    if is_dicom(_existing(path)):
        pixels = read_dicom(path, dicom_window)
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        elif channels == 1:
            pixels = (pixels @ _LUMA)[..., None]
        if pixels.shape[-1] != channels:
            pixels = np.repeat(pixels, channels, axis=-1)
        return pixels
    with _open(path) as image:
        _decode(image, path)
        mode = image.mode
        if mode in _SIXTEEN_BIT:
            pixels = np.asarray(image).astype(np.float32)
            pixels = np.clip(pixels, 0.0, 65535.0) / 65535.0
        elif mode == "F":
            pixels = np.asarray(image, dtype=np.float32)
        elif mode in GRAY_MODES or channels == 1:
            pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        else:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[-1] != channels:
        pixels = np.repeat(pixels, channels, axis=-1)
    return pixels


def is_path(value) -> bool:
    """Whether ``value`` is a file path (``str`` or ``os.PathLike``)."""
    return isinstance(value, (str, Path, os.PathLike))
