"""Loaders of the ISIC 2018 (HAM10000) and APTOS 2019 challenge data sets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ._loaders import (
    _HAM_METADATA,
    _ISIC_GROUND_TRUTH,
    APTOS2019_CLASSES,
    HAM10000_CLASSES,
    _bunch,
    _class_counts,
    _directory,
    _verify_all,
)
from ._splits import (
    check_split_value,
    find_images,
    integer_column,
    labelled_files,
    read_csv_columns,
    show,
)

__all__ = ["load_aptos2019", "load_ham10000"]


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
        ``['MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC']``, and
        ``lesion_id`` the lesion of each image (from ``HAM10000_metadata.csv``;
        None with the ISIC ground-truth CSV, which has no lesions). HAM10000
        has several images of many lesions: split by ``lesion_id`` (e.g.
        :class:`~sklearn.model_selection.StratifiedGroupKFold`) so that no
        lesion sits on both sides.
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
    bunch = _bunch(
        paths, target, names, descr, return_X_y=return_X_y, as_frame=as_frame
    )
    if not return_X_y:
        bunch.lesion_id = _lesion_ids(label_file, paths)
        if as_frame:
            bunch.frame["lesion_id"] = bunch.lesion_id
    return bunch


def _lesion_ids(label_file: Path, paths) -> np.ndarray | None:
    """The lesion of each image (``HAM10000_metadata.csv``'s ``lesion_id``),
    to keep a lesion's images on one side of a split; None without it."""
    if label_file.name != _HAM_METADATA:
        return None
    table = pd.read_csv(label_file)
    if "lesion_id" not in table.columns:
        return None
    lesion = dict(zip(table["image_id"].astype(str), table["lesion_id"].astype(str)))
    return np.array([lesion[Path(p).stem] for p in paths], dtype=object)


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
