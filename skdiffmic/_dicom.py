"""Reading DICOM files with pydicom: pixel values as a viewer shows them.

A file is DICOM when its name ends in ``.dcm`` (any case) or when it carries
the DICOM preamble, ``DICM`` at byte 128. One file gives one image, float32 in
[0, 1], ``(H, W)`` for grayscale and ``(H, W, 3)`` for colour:

* grayscale (``MONOCHROME1`` / ``MONOCHROME2``) pixels go through the modality
  LUT (*Rescale Slope* / *Rescale Intercept*, or a *Modality LUT Sequence*),
  then the first VOI LUT or, without one, the first *Window Center* / *Window
  Width* pair (honouring *VOI LUT Function*), and are mapped to [0, 1] through
  that window: a VOI LUT's output over ``0 .. 2**n - 1`` (``n`` bits per LUT
  entry, DICOM PS3.3 C.11.2.1.1), a window's over its output range. Without
  a window the image's own minimum .. maximum is used (an image with a single
  value comes back as zeros). ``MONOCHROME1`` is then inverted, so that
  higher always means brighter;
* colour pixels (``RGB``, and ``YBR_*`` converted to RGB by pydicom;
  ``PALETTE COLOR`` expanded through its palette) are divided by the largest
  value of their bit depth, as a viewer shows them: no window applies.

``window`` overrides the file's window: ``"full"`` ignores it (minimum ..
maximum), ``(center, width)`` replaces it. Multi-frame files are refused;
every failure is a ValueError that names the file.
"""

from __future__ import annotations

import os
import warnings
from numbers import Real

import numpy as np

__all__ = ["DICOM_EXTRA", "check_window", "is_dicom", "probe_dicom", "read_dicom"]

DICOM_EXTRA = 'pip install "skdiffmic[dicom]"'
_PLUGIN_PACKAGES = "pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle"
_PREAMBLE = 128
_DEFER = 1024  # bytes: the probe leaves values larger than this (pixels) unread
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
_GRAY = ("MONOCHROME1", "MONOCHROME2")


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a DICOM file: a ``.dcm`` name or the preamble."""
    path = os.fspath(path)
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as file:
            file.seek(_PREAMBLE)
            return file.read(4) == b"DICM"
    except OSError:
        return False


def check_window(window):
    """Validate a ``dicom_window`` value: ``"auto"``, ``"full"`` or a pair.

    ``None`` means ``"auto"``. Returns the value to use.
    """
    if window is None or (isinstance(window, str) and window == "auto"):
        return "auto"
    if isinstance(window, str) and window == "full":
        return "full"
    if (
        isinstance(window, (tuple, list))
        and len(window) == 2
        and all(isinstance(v, Real) and not isinstance(v, bool) for v in window)
        and all(np.isfinite(float(v)) for v in window)
        and float(window[1]) > 0
    ):
        return float(window[0]), float(window[1])
    raise ValueError(
        "dicom_window must be None or 'auto' (the file's own window), 'full' "
        "(the image's minimum to maximum) or a (center, width) pair of finite "
        f"numbers with width > 0; got {window!r}."
    )


def _pydicom(path: str):
    try:
        import pydicom
    except ImportError:
        raise ValueError(
            f"{path!r} is a DICOM file; reading DICOM needs pydicom, which is not "
            f"installed: {DICOM_EXTRA}."
        ) from None
    return pydicom


def _transfer_syntax(ds, pydicom):
    """The dataset's transfer syntax, inferred from its encoding when unset."""
    uid = pydicom.uid
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:  # files written without a file meta header
        implicit, little = ds.original_encoding
        if implicit:
            syntax = uid.ImplicitVRLittleEndian
        else:
            syntax = uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = syntax
    return syntax


def _check(ds, path: str, pydicom) -> tuple[int, int, int]:
    """Refuse what cannot give one image; return ``(height, width, channels)``."""
    if len(ds) == 0:  # pydicom met the end of the file inside the data set
        raise ValueError(
            f"DICOM file {path!r} is truncated or corrupt: none of its data "
            "elements could be read."
        )
    pixel_tag = next((tag for tag in _PIXEL_TAGS if tag in ds), None)
    if pixel_tag is None:
        if "Rows" in ds and "Columns" in ds:
            raise ValueError(
                f"DICOM file {path!r} is truncated or corrupt: its header describes "
                f"a {ds.Rows}x{ds.Columns} image but its pixel data is missing."
            )
        sop = ds.get("SOPClassUID")
        kind = f" (a {sop.name} object)" if sop is not None else ""
        raise ValueError(
            f"DICOM file {path!r} has no pixel data{kind}: it holds no image."
        )
    if "Rows" not in ds or "Columns" not in ds:
        raise ValueError(
            f"DICOM file {path!r} has pixel data but no Rows / Columns: its image "
            "cannot be read."
        )
    frames = ds.get("NumberOfFrames")
    frames = int(frames) if frames not in (None, "") else 1
    if frames > 1:
        raise ValueError(
            f"DICOM file {path!r} has {frames} frames; only single-frame images "
            "are read (skdiffmic does not guess which frame you mean): save the "
            "frame you want as its own file."
        )
    syntax = _transfer_syntax(ds, pydicom)
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError:
        raise ValueError(
            f"DICOM file {path!r} uses the transfer syntax {syntax.name} "
            f"({syntax}), which pydicom cannot decode."
        ) from None
    if not decoder.is_available:
        raise ValueError(
            f"DICOM file {path!r} is compressed ({syntax.name}) and no decoder "
            f"for it is installed: install {_decoder_package(syntax, pydicom)} "
            f"(all decoders: {DICOM_EXTRA}, which installs {_PLUGIN_PACKAGES})."
        )
    deflated = syntax == pydicom.uid.DeflatedExplicitVRLittleEndian
    if not syntax.is_encapsulated and not deflated:
        elem = ds.get_item(pixel_tag, keep_deferred=True)
        if getattr(elem, "value", None) is not None:
            available = len(elem.value)
        else:  # a deferred value: what the file holds past its start
            available = min(elem.length, os.path.getsize(path) - elem.value_tell)
        expected = pydicom.pixels.utils.get_expected_length(ds, "bytes")
        if available < expected:
            raise ValueError(
                f"DICOM file {path!r} is truncated: it holds {max(available, 0)} "
                f"of the {expected} bytes of pixel data its header describes."
            )
    samples = int(ds.get("SamplesPerPixel") or 1)
    interpretation = str(ds.get("PhotometricInterpretation", "")).strip()
    if samples not in (1, 3):
        raise ValueError(
            f"DICOM file {path!r} has {samples} samples per pixel; 1 (grayscale) "
            "or 3 (colour) can be read."
        )
    colour = samples == 3 or interpretation == "PALETTE COLOR"
    return int(ds.Rows), int(ds.Columns), 3 if colour else 1


def _decoder_package(syntax, pydicom) -> str:
    """The pip package that decodes ``syntax``."""
    uid = pydicom.uid
    if syntax in uid.JPEG2000TransferSyntaxes:
        return "pylibjpeg-openjpeg (with pylibjpeg)"
    if syntax in uid.RLETransferSyntaxes:
        return "pylibjpeg-rle (with pylibjpeg)"
    return "pylibjpeg-libjpeg (with pylibjpeg)"


def _dataset(path: str, *, pixels: bool):
    """Read ``path`` (its pixel values too when ``pixels``) and check it."""
    pydicom = _pydicom(path)
    options = {} if pixels else {"defer_size": _DEFER}
    try:
        try:
            ds = pydicom.dcmread(path, **options)
        except pydicom.errors.InvalidDicomError:
            # No preamble or file meta header: older files still parse.
            ds = pydicom.dcmread(path, force=True, **options)
            if not any(key in ds for key in ("SOPClassUID", "Rows", *_PIXEL_TAGS)):
                raise ValueError(f"Not a readable DICOM file: {path!r}.") from None
        shape = _check(ds, path, pydicom)
    except ValueError as exc:
        if repr(path) in str(exc):
            raise
        raise ValueError(
            f"Cannot read DICOM file {path!r} (truncated or corrupt): {exc}."
        ) from None
    except Exception as exc:  # pydicom's parser raises many kinds on bad bytes
        raise ValueError(
            f"Cannot read DICOM file {path!r} (truncated or corrupt): "
            f"{type(exc).__name__}: {exc}."
        ) from None
    return ds, shape, pydicom


def probe_dicom(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(height, width, channels)`` of a DICOM file, without decoding its pixels.

    The file is checked as far as that is possible without decoding: pixel
    data present and complete, one frame, a decoder installed for its
    transfer syntax.
    """
    return _dataset(os.fspath(path), pixels=False)[1]


def read_dicom(path: str | os.PathLike, window="auto") -> np.ndarray:
    """Decode a DICOM file to float32 in [0, 1]: ``(H, W)`` or ``(H, W, 3)``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    window : None, "auto", "full" or (center, width), default="auto"
        The file's own VOI LUT or window (``None`` / ``"auto"``), the image's
        minimum to maximum (``"full"``) or this window in modality units
        (after *Rescale Slope* / *Intercept*; Hounsfield units for CT).
    """
    path = os.fspath(path)
    window = check_window(window)
    ds, (_, _, channels), pydicom = _dataset(path, pixels=True)
    syntax = ds.file_meta.TransferSyntaxUID
    pixels = pydicom.pixels
    try:
        decoder = pixels.get_decoder(syntax)
        array, properties = decoder.as_array(ds, **pixels.as_pixel_options(ds))
        interpretation = str(properties["photometric_interpretation"]).strip()
        if channels == 3:
            if isinstance(window, tuple):
                raise ValueError(
                    f"dicom_window={window} cannot apply to the colour DICOM file "
                    f"{path!r} ({interpretation}): windows are for grayscale images."
                )
            out = _colour(array, ds, properties, interpretation, pixels)
        else:
            out = _grayscale(array, ds, window, interpretation, path, pixels)
    except ValueError as exc:
        if repr(path) in str(exc):
            raise
        raise ValueError(f"Cannot decode DICOM file {path!r}: {exc}") from None
    except Exception as exc:  # decoders and LUTs fail with many kinds
        raise ValueError(
            f"Cannot decode DICOM file {path!r} (truncated or corrupt): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _colour(array, ds, properties, interpretation, pixels) -> np.ndarray:
    """RGB in [0, 1], scaled by the bit depth of the stored (or palette) values."""
    if interpretation == "PALETTE COLOR":
        array = pixels.apply_color_lut(array, ds)
        depth = 8 * array.dtype.itemsize
    else:
        if interpretation.startswith("YBR"):  # left as YBR by the decoder
            array = pixels.convert_color_space(array, interpretation, "RGB")
        depth = int(properties.get("bits_stored") or ds.BitsStored)
    return array.astype(np.float64) / (2.0**depth - 1.0)


def _grayscale(array, ds, window, interpretation, path, pixels) -> np.ndarray:
    """Modality LUT, then VOI LUT / window / minimum..maximum, then MONOCHROME1."""
    if interpretation not in _GRAY:
        raise ValueError(
            f"unsupported photometric interpretation {interpretation!r} for one "
            "sample per pixel"
        )
    values = pixels.apply_modality_lut(array, ds)
    constant = False
    if window == "full":
        out, constant = _min_max(values)
    elif isinstance(window, tuple):
        ds.WindowCenter, ds.WindowWidth = window
        if "VOILUTSequence" in ds:
            del ds.VOILUTSequence
        out = _windowed(values, ds, pixels)
    elif _has_voi_lut(ds):
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        out = pixels.apply_voi(_integral(values), ds, 0)
        out = out.astype(np.float64) / (2.0 ** int(descriptor[2]) - 1.0)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        try:
            out = _windowed(values, ds, pixels)
        except ValueError as exc:  # e.g. a zero width: viewers ignore such windows
            warnings.warn(
                f"DICOM file {path!r}: its window cannot be used ({exc}); the "
                "image's minimum to maximum is shown instead.",
                UserWarning,
                stacklevel=2,
            )
            out, constant = _min_max(values)
    else:
        out, constant = _min_max(values)
    if interpretation == "MONOCHROME1" and not constant:
        out = 1.0 - out
    return out


def _has_voi_lut(ds) -> bool:
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return False
    item = sequence[0]
    return item.get("LUTDescriptor") is not None and item.get("LUTData") is not None


def _integral(values: np.ndarray) -> np.ndarray:
    """Integer-valued float pixels as int64 (a VOI LUT indexes with integers)."""
    if values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
        return values.astype(np.int64)
    return values


def _windowed(values: np.ndarray, ds, pixels) -> np.ndarray:
    """pydicom's windowing of the first window, scaled from its output range."""
    low, high = pixels.apply_windowing(np.array([-np.inf, np.inf]), ds, 0)
    out = pixels.apply_windowing(values, ds, 0)
    return (out - low) / (high - low)


def _min_max(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """``values`` scaled from their minimum..maximum; zeros (and True) if constant."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros_like(values), True
    return (values - low) / (high - low), False
