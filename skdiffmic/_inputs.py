"""Sources of training / prediction rows, and the per-batch transforms.

Three kinds of source share one interface (``len``, ``load(indices)``):

* :class:`ArrayImages` wraps an image array without copying it;
* :class:`PathImages` decodes image files lazily, batch by batch;
* :class:`ArrayFeatures` wraps a 2-D feature matrix (the tabular mode).

``load`` returns a float32 CPU tensor: images ``(B, C, size, size)`` already
centre-cropped to a square and resized to the network input, features
``(B, n_features)``. The per-row sampling seeds are hashed from these tensors,
so an image gets the same noise whether it came as an array or as a file, in
whatever batch or order. :class:`Normalize` and :class:`Augment` then run on
the target device.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ._dicom import check_window
from ._imageio import is_path, probe_image, read_image

__all__ = [
    "ArrayFeatures",
    "ArrayImages",
    "Augment",
    "ImageCache",
    "Normalize",
    "PathImages",
    "Subset",
    "as_images",
    "as_paths",
    "check_dense",
    "row_seeds",
    "square_resize",
]

_INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_MAX_CHANNELS = 4
_READERS = min(4, os.cpu_count() or 1)
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """A process-wide pool for file decoding and probing (PIL releases the GIL)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(_READERS, thread_name_prefix="skdiffmic-io")
    return _executor


def square_resize(batch: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre square crop of ``(B, C, H, W)`` images, resized to ``size``.

    Bilinear with antialiasing; ``size=None`` only crops.
    """
    h, w = batch.shape[-2:]
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        batch = batch[..., top : top + side, left : left + side]
    if size is not None and batch.shape[-1] != size:
        batch = F.interpolate(
            batch,
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
    return batch


class ArrayImages:
    """Images in a numpy array of shape ``(n, H, W)`` or ``(n, H, W, C)``.

    ``uint8`` pixels are divided by 255 and ``uint16`` by 65535; float (and
    other numeric) pixels are used as given and expected in [0, 1]. ``size``
    is the side of the square network input, set by the estimator.
    """

    def __init__(self, X: np.ndarray, size: int | None = None):
        self.X = X if X.ndim == 4 else X[..., None]  # a view, not a copy
        self.scale = _INT_SCALE.get(X.dtype, 1.0)
        self.size = size

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images."""
        return tuple(int(s) for s in self.X.shape[1:])

    @property
    def channels(self) -> int:
        return self.shape[2]

    def shorter_sides(self) -> np.ndarray:
        return np.full(len(self), min(self.shape[:2]))

    def load(self, indices) -> torch.Tensor:
        """Float32 tensor ``(B, C, size, size)`` for the rows ``indices``."""
        batch = np.ascontiguousarray(self.X[np.asarray(indices)])
        out = torch.from_numpy(batch)
        out = out.float() if out.dtype != torch.float32 else out
        if self.scale != 1.0:
            out = out / self.scale
        return square_resize(out.permute(0, 3, 1, 2), self.size).contiguous()


class PathImages:
    """Image files, decoded with PIL (DICOM: pydicom) when a batch asks for them.

    Every file's header is read up front (in parallel): a missing or
    unreadable file is reported, with its index, before any work starts. Files
    are read as RGB when any of them is colour (or when ``channels=3``), as
    grayscale otherwise; see :mod:`skdiffmic._imageio` for the mode mapping.
    Each image is cropped and resized on its own, so sizes may vary.
    ``dicom_window`` maps DICOM grayscale values (see
    :func:`skdiffmic._dicom.read_dicom`).
    """

    def __init__(
        self,
        paths,
        channels: int | None = None,
        size: int | None = None,
        dicom_window="auto",
        cache=None,
    ):
        self.dicom_window = check_window(dicom_window)
        self.cache = ImageCache.create(cache)
        self.paths = [os.fspath(p) for p in paths]
        headers = list(_pool().map(_probe, enumerate(self.paths)))
        self.heights = np.array([h for h, _, _ in headers])
        self.widths = np.array([w for _, w, _ in headers])
        if channels is None:
            channels = 3 if any(c == 3 for _, _, c in headers) else 1
        self._channels = int(channels)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def shape(self) -> tuple[int | None, int | None, int]:
        """``(H, W, C)``; H and W are None when the files differ in size."""
        same = len(set(self.heights)) == 1 and len(set(self.widths)) == 1
        if same:
            return int(self.heights[0]), int(self.widths[0]), self._channels
        return None, None, self._channels

    def shorter_sides(self) -> np.ndarray:
        return np.minimum(self.heights, self.widths)

    def _read(self, i: int) -> torch.Tensor:
        try:
            pixels = read_image(
                self.paths[i], self._channels, dicom_window=self.dicom_window
            )
        except ValueError as exc:
            raise ValueError(f"X[{i}]: {exc}") from None
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        return square_resize(image, self.size)

    def _decode(self, indices) -> torch.Tensor:
        images = list(_pool().map(self._read, indices))
        return torch.cat(images).contiguous()

    def load(self, indices) -> torch.Tensor:
        """Float32 tensor ``(B, C, size, size)`` for the files ``indices``."""
        if self.size is None:
            raise RuntimeError("PathImages.size must be set before loading.")
        indices = [int(i) for i in indices]
        if self.cache is None:
            return self._decode(indices)
        return self.cache.load(self, indices)

    def cache_key(self) -> str:
        """What identifies the decoded images: files, sizes, modes, window."""
        if getattr(self, "_key", (None,))[0] != self.size:
            self._key = (self.size, self._hash())
        return self._key[1]

    def _hash(self) -> str:
        digest = hashlib.sha256()
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        digest.update(repr((self.size, self._channels, self.dicom_window)).encode())
        return digest.hexdigest()[:24]


class ImageCache:
    """Decoded, cropped and resized images kept for later epochs (opt-in).

    The first request for an image decodes it; later ones copy it from the
    cache, exactly as decoded (float32), so a cached fit gives the same
    weights as an uncached one. ``"memory"`` keeps the images in RAM
    (``n x C x size x size x 4`` bytes); a directory keeps them in a
    memory-mapped ``.npy`` file there, named by the files, their sizes and
    modification times, the network input size and the channels, so that
    later fits and predictions on the same files (a grid search, another
    process) read it too.

    An image not yet decoded is a row of NaN (decoded pixels never are): the
    cache is one file, which a process creates complete under a temporary
    name and then renames, so processes sharing the directory each see
    whole rows of one file, and a row half-written by another process reads
    as missing and is decoded again.
    """

    def __init__(self, directory=None):
        self.directory = None if directory is None else os.fspath(directory)
        self.key = None
        self.images = None

    @classmethod
    def create(cls, cache):
        if cache is None:
            return None
        if cache == "memory":
            return cls()
        return cls(cache)

    def _open(self, source) -> None:
        key = source.cache_key()
        if key == self.key:
            return
        shape = (len(source), source.channels, source.size, source.size)
        if self.directory is None:
            self.images = np.full(shape, np.nan, dtype=np.float32)
        else:
            os.makedirs(self.directory, exist_ok=True)
            path = os.path.join(self.directory, f"images-{key}.npy")
            self.images = _open_memmap(path, shape)
        self.key = key

    def load(self, source, indices) -> torch.Tensor:
        self._open(source)
        rows = self.images[indices]  # a copy
        missing = np.isnan(rows.reshape(len(indices), -1)).any(axis=1)
        if missing.any():
            todo = list(dict.fromkeys(np.asarray(indices)[missing].tolist()))
            decoded = source._decode(todo).numpy()
            self.images[todo] = decoded
            where = {index: k for k, index in enumerate(todo)}
            for position in np.flatnonzero(missing):
                rows[position] = decoded[where[indices[position]]]
        return torch.from_numpy(rows)


def _open_memmap(path, shape):
    """The cache file at ``path``: the existing one if it fits, else a new one
    of NaN rows, written under a temporary name and renamed into place."""
    from numpy.lib.format import open_memmap

    if os.path.exists(path):
        try:
            existing = open_memmap(path, mode="r+")
        except (ValueError, OSError):  # truncated or not an .npy file
            existing = None
        if (
            existing is not None
            and existing.shape == shape
            and existing.dtype == np.float32
        ):
            return existing
        del existing
    tmp = f"{path}.{os.getpid()}.tmp"
    fresh = open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    fresh[:] = np.nan
    fresh.flush()
    del fresh
    os.replace(tmp, path)
    return open_memmap(path, mode="r+")


def _probe(item):
    index, path = item
    try:
        return probe_image(path)
    except ValueError as exc:
        raise ValueError(f"X[{index}]: {exc}") from None


class Subset:
    """The rows ``indices`` of another source (a training / validation split)."""

    def __init__(self, source, indices):
        self.source = source
        self.indices = np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, indices) -> torch.Tensor:
        return self.source.load(self.indices[np.asarray(indices)])


class ArrayFeatures:
    """A 2-D float feature matrix ``(n, n_features)`` (the tabular mode)."""

    def __init__(self, X: np.ndarray):
        self.X = X

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def load(self, indices) -> torch.Tensor:
        batch = np.ascontiguousarray(self.X[np.asarray(indices)], dtype=np.float32)
        return torch.from_numpy(batch)


def check_dense(X) -> None:
    """Reject sparse input with a clear TypeError."""
    if sp.issparse(X):
        raise TypeError(
            "Sparse data is not supported: the estimator needs dense images or "
            "features; convert with X.toarray()."
        )


def as_paths(X) -> list | None:
    """The file paths in ``X`` if it is a container of paths, else None.

    Accepted: a list / tuple / 1-D array of ``str`` or ``os.PathLike``, a
    one-column 2-D array, pandas Series or one-column DataFrame of them. A single string
    is refused with a TypeError (pass a list).
    """
    if is_path(X):
        raise TypeError(
            f"X is a single path ({os.fspath(X)!r}); pass a list of image paths "
            "(one per sample), e.g. [path]."
        )
    values = None
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # DataFrame
        if X.shape[1] == 1 and X.dtypes.iloc[0].kind in "OUS":
            values = X.iloc[:, 0].tolist()
        elif X.shape[1] == 1 and str(X.dtypes.iloc[0]) in ("string", "str"):
            values = X.iloc[:, 0].tolist()
    elif hasattr(X, "iloc"):  # Series
        if X.dtype.kind in "OUS" or str(X.dtype) in ("string", "str"):
            values = X.tolist()
    elif isinstance(X, (list, tuple)):
        values = list(X)
    elif isinstance(X, np.ndarray) and X.dtype.kind in "OU":
        if X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1):
            values = X.ravel().tolist()
    if not values or not is_path(values[0]):
        return None
    for i, value in enumerate(values):
        if not is_path(value):
            raise TypeError(
                f"X mixes file paths and other values: X[{i}] is "
                f"{type(value).__name__} {value!r}."
            )
    return values


def as_images(X, *, n_channels: int | None = None) -> ArrayImages:
    """Validate an image array and wrap it, raising clear errors for bad input.

    Parameters
    ----------
    X : array-like of shape (n, H, W) or (n, H, W, C)
        The images.
    n_channels : int, optional
        Channel count seen at ``fit``; a different count at predict time is an
        error.
    """
    check_dense(X)
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind in "USV":
        raise TypeError(
            f"X has dtype {X.dtype}; images must be numeric arrays (uint8, uint16 "
            "or float), or a list of file paths."
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
    if n_channels is not None and images.channels != n_channels:
        raise ValueError(
            f"X has {images.channels} channel(s) but the estimator was fitted on "
            f"images with {n_channels}."
        )
    return images


def row_seeds(rows: torch.Tensor, seed: int) -> list[int]:
    """A 63-bit seed per row of ``rows``, from ``seed`` and the row's own values.

    Sampling noise drawn from these seeds is the same for a row whatever batch
    or order it comes in.
    """
    key = int(seed).to_bytes(8, "little", signed=False)
    data = rows.detach().cpu().contiguous().numpy()
    out = []
    for row in data:
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest()
        out.append(int.from_bytes(digest, "little") >> 1)
    return out


class Normalize:
    """``(x - mean) / std`` per channel (images) or per feature (tabular)."""

    def __init__(self, mean, std, *, images: bool = True):
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        shape = (1, -1, 1, 1) if images else (1, -1)
        self.mean, self.std = mean.view(shape), std.view(shape)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(batch.device, batch.dtype)
        std = self.std.to(batch.device, batch.dtype)
        return (batch - mean) / std


class Augment:
    """Random flips and rotations of a training batch, on its device.

    Parameters
    ----------
    hflip, vflip : bool
        Flip each image left-right / up-down with probability 1/2.
    rotation : float
        Rotate each image by an angle drawn uniformly in
        ``[-rotation, rotation]`` degrees (bilinear; the corners are filled
        with zeros, the mean colour after normalisation).
    """

    def __init__(self, hflip: bool = True, vflip: bool = True, rotation: float = 30):
        self.hflip, self.vflip, self.rotation = bool(hflip), bool(vflip), rotation

    def __call__(self, batch: torch.Tensor, generator: torch.Generator):
        b = batch.shape[0]
        draws = torch.rand(b, 3, generator=generator).to(batch.device)
        if self.hflip:
            flip = (draws[:, 0] < 0.5).view(b, 1, 1, 1)
            batch = torch.where(flip, batch.flip(-1), batch)
        if self.vflip:
            flip = (draws[:, 1] < 0.5).view(b, 1, 1, 1)
            batch = torch.where(flip, batch.flip(-2), batch)
        if self.rotation:
            angle = (2 * draws[:, 2] - 1) * (self.rotation * np.pi / 180)
            cos, sin = torch.cos(angle), torch.sin(angle)
            zero = torch.zeros_like(cos)
            theta = torch.stack(
                [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)],
                1,
            ).to(batch.dtype)
            grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
            batch = F.grid_sample(batch, grid, mode="bilinear", align_corners=False)
        return batch
