"""Loader of MedMNIST ``.npz`` files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._loaders import (
    _class_counts,
)

__all__ = ["load_medmnist"]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, refusing pickled objects."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"Cannot read {str(path)!r} as a MedMNIST .npz: {exc}."
        ) from None


def _medmnist_labels(labels: np.ndarray, key: str, path: Path) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] > 1:
        # A multi-label set (ChestMNIST): the 0/1 indicator of the findings.
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(
                f"{key} of {str(path)!r} has shape {labels.shape} (a multi-label "
                "set) but holds values other than 0 and 1."
            )
        return labels.astype(np.int64)
    if labels.ndim not in (1, 2):
        raise ValueError(f"{key} of {str(path)!r} has shape {labels.shape}.")
    labels = labels.reshape(-1)
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))
    )
    if not integral or (labels.size and labels.min() < 0):
        raise ValueError(f"{key} of {str(path)!r} must hold integers >= 0.")
    return labels.astype(np.int64)


def load_medmnist(
    path: str | os.PathLike,
    *,
    split: str = "train",
    return_X_y: bool = False,
    as_frame: bool = False,
) -> Bunch | tuple:
    """Load one split of a MedMNIST ``.npz`` file.

    The file (any MedMNIST v2 / v3 2-D set at any size: 28, 64, 128 or 224 px)
    holds ``<split>_images`` and ``<split>_labels`` for the splits ``train``,
    ``val`` and ``test``. Images are ``(n, H, W)`` (grayscale) or
    ``(n, H, W, 3)`` uint8 arrays; labels ``(n, 1)`` integers, or for the
    multi-label ChestMNIST ``(n, 14)`` 0/1 findings, returned as that
    indicator matrix (the estimators fit it as a multi-label target). The
    file is read without unpickling anything.

    ``target_names`` are the label values as strings, ``'0'`` to ``str(k - 1)``
    where ``k - 1`` is the largest label in any split of the file, so the
    splits of one file share them (MedMNIST's ``INFO[flag]['label']`` gives
    the clinical names).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file, e.g. ``dermamnist_64.npz``.
    split : {"train", "val", "test"}, default="train"
        The split to load.
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.
    as_frame : bool, default=False
        Must be False: image arrays have no DataFrame form.

    Returns
    -------
    data : Bunch
        ``data``: the uint8 images; ``target``: int64 labels (multi-label:
        an int64 0/1 indicator ``(n, n_labels)``);
        ``target_names``: label values as strings; ``filenames`` and
        ``frame``: None; ``DESCR``: a description.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``as_frame`` is True, the file is no readable ``.npz``, ``split`` is
        not in the file (the message lists the splits found), or the arrays
        have unexpected shapes or types.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skdiffmic.datasets import load_medmnist
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.npz")
    >>> images = np.zeros((4, 28, 28), dtype=np.uint8)
    >>> labels = np.array([[0], [1], [2], [1]])
    >>> np.savez(path, train_images=images, train_labels=labels)
    >>> bunch = load_medmnist(path, split="train")
    >>> bunch.data.shape, bunch.target.tolist(), bunch.target_names.tolist()
    ((4, 28, 28), [0, 1, 2, 1], ['0', '1', '2'])
    """
    if as_frame:
        raise ValueError(
            "load_medmnist returns image arrays, which have no DataFrame form; "
            "use as_frame=False."
        )
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if not path.is_file():
        raise FileNotFoundError(f"MedMNIST file not found: {str(path)!r}.")
    arrays = _read_npz(path)
    available = [
        s
        for s in ("train", "val", "test")
        if f"{s}_images" in arrays and f"{s}_labels" in arrays
    ]
    if not isinstance(split, str) or split not in available:
        raise ValueError(
            f"split={split!r} is not in {str(path)!r}; available splits: "
            f"{available} (arrays found: {sorted(arrays)})."
        )
    all_labels = {
        s: _medmnist_labels(arrays[f"{s}_labels"], f"{s}_labels", path)
        for s in available
    }
    images, target = arrays[f"{split}_images"], all_labels[split]
    shape_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))
    if images.dtype != np.uint8 or not shape_ok:
        raise ValueError(
            f"{split}_images of {str(path)!r} must be a uint8 array (n, H, W) or "
            f"(n, H, W, 3); got {images.dtype} {images.shape}."
        )
    if len(images) != len(target):
        raise ValueError(
            f"{str(path)!r} has {len(images)} {split} images but {len(target)} labels."
        )
    if target.ndim == 2:
        n_classes = target.shape[1]
        names = np.asarray([str(i) for i in range(n_classes)], dtype=str)
        kinds = "labels (multi-label)"
        counts = "\n".join(
            f"  {j}: {int(c)} images" for j, c in enumerate(target.sum(axis=0))
        )
    else:
        n_classes = 1 + max(
            (int(v.max()) for v in all_labels.values() if v.size), default=0
        )
        names = np.asarray([str(i) for i in range(n_classes)], dtype=str)
        kinds, counts = "classes", _class_counts(target, names)
    if return_X_y:
        return images, target
    descr = (
        f"MedMNIST data set {path.name!r}, split {split!r}: {len(images)} images "
        f"of shape {images.shape[1:]}, {n_classes} {kinds}.\n\n"
        f"{kinds.split()[0].capitalize()} (index: images):\n{counts}\n\n"
        "Source: Yang et al., 'MedMNIST v2 - A large-scale lightweight benchmark "
        "for 2D and 3D biomedical image classification', Scientific Data 10, 41 "
        "(2023); files from medmnist.com (Zenodo).\n"
    )
    return Bunch(
        data=images,
        target=target,
        target_names=names,
        filenames=None,
        frame=None,
        DESCR=descr,
    )
