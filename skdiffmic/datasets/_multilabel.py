"""Loaders of multi-label chest X-ray data sets: NIH ChestX-ray14 and CheXpert.

One radiograph can show several findings, so ``target`` is a binary indicator
matrix of shape ``(n_images, n_labels)`` (scikit-learn's
"multilabel-indicator"), with one column per finding in ``target_names``.
Both data sets hold many images per patient; the Bunch gives each image's
patient id (``patient``) so that cross-validation can keep a patient's images
in one fold (:class:`~skdiffmic.model_selection.MultilabelStratifiedGroupKFold`
or :class:`~sklearn.model_selection.GroupKFold`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ._challenges import _find_label_file
from ._loaders import _directory, _verify_all
from ._splits import integer_column, read_csv_columns, show

__all__ = [
    "CHESTXRAY14_LABELS",
    "CHEXPERT_LABELS",
    "load_chestxray14",
    "load_chexpert",
]

#: The 14 ChestX-ray14 findings, in the order of the data set's paper.
CHESTXRAY14_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
#: The 14 CheXpert observations, in the column order of its label CSVs.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
_NO_FINDING = "No Finding"
_CXR14_LABEL_FILES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
_CXR14_SPLIT_FILES = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
_CHEXPERT_SPLITS = ("train", "valid")
_CHEXPERT_FOLDERS = ("train", "valid", "test")
_UNCERTAIN = ("zeros", "ones", "ignore")
_PATIENT = re.compile(r"patient(\d+)")


# --------------------------------------------------------------------- helpers
def _label_counts(target: np.ndarray, target_names) -> str:
    counts = (target == 1).sum(0) if len(target) else np.zeros(len(target_names), int)
    return "\n".join(
        f"    {i}: {name} ({count} images)"
        for i, (name, count) in enumerate(zip(target_names, counts))
    )


def _summary(target: np.ndarray, patient: np.ndarray) -> str:
    positives = (target == 1).sum(1)  # NaN (unknown) is not a positive
    n_none = int((positives == 0).sum())
    n_several = int((positives > 1).sum())
    return (
        f"{len(target)} images of {len(np.unique(patient))} patients; "
        f"{n_none} without any label, {n_several} with several.\n\n"
        f"Labels (column: name, positive images):\n"
    )


def _multilabel_bunch(
    paths, target, target_names, patient, descr, *, return_X_y, as_frame
):
    """The Bunch (or ``(data, target)``) of a multi-label file-based data set."""
    paths = np.array([str(p) for p in paths], dtype=object)
    names = np.asarray(target_names, dtype=str)
    target = np.asarray(target)
    dtype = np.float64 if target.dtype.kind == "f" else np.int64  # float: NaN
    target = target.astype(dtype).reshape(len(paths), len(names))
    patient = np.asarray(patient, dtype=np.int64)
    frame = None
    data, y = paths, target
    if as_frame:
        frame = pd.concat(
            [
                pd.DataFrame({"path": paths, "patient": patient}),
                pd.DataFrame(target, columns=list(names)),
            ],
            axis=1,
        )
        data, y = frame[["path"]], frame[list(names)]
    if return_X_y:
        return data, y
    return Bunch(
        data=data,
        target=y,
        target_names=names,
        filenames=paths,
        patient=patient,
        frame=frame,
        DESCR=descr,
    )


def _missing_images(paths, found, label_source, root, skip_missing, what):
    """Rows whose image exists; a ValueError naming the missing ones unless skipped."""
    missing = ~np.asarray(found, dtype=bool)
    if not missing.any():
        return np.arange(len(paths)), ""
    if not skip_missing:
        raise ValueError(
            f"{int(missing.sum())} of {len(paths)} image(s) listed in "
            f"{label_source} ({what}) have no file under {str(root)!r}: "
            f"{show(np.asarray(paths, dtype=object)[missing])}. Pass "
            "skip_missing=True to load only the images found."
        )
    if missing.all():
        raise ValueError(
            f"None of the {len(paths)} image(s) listed in {label_source} ({what}) "
            f"has a file under {str(root)!r}."
        )
    note = (
        f"\n{int(missing.sum())} listed image(s) without a file were skipped "
        "(skip_missing=True).\n"
    )
    return np.flatnonzero(~missing), note


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")


# ---------------------------------------------------------------- ChestX-ray14
def _cxr14_labels(table: pd.DataFrame, path: Path) -> np.ndarray:
    """The (n, 14) indicator matrix of column 'Finding Labels'."""
    tokens = table["Finding Labels"].reset_index(drop=True).str.split("|").explode()
    tokens = tokens.str.strip()
    order = {name: j for j, name in enumerate(CHESTXRAY14_LABELS)}
    unknown = sorted(set(tokens) - set(order) - {_NO_FINDING})
    if unknown:
        raise ValueError(
            f"Column 'Finding Labels' of {str(path)!r} holds unknown finding(s) "
            f"{show(repr(u) for u in unknown)}; expected {_NO_FINDING!r} or "
            f"findings of {list(CHESTXRAY14_LABELS)} joined by '|'."
        )
    target = np.zeros((len(table), len(order)), dtype=np.int64)
    known = tokens[tokens != _NO_FINDING]
    target[known.index.to_numpy(), known.map(order).to_numpy(dtype=np.int64)] = 1
    no_finding = np.zeros(len(table), dtype=bool)
    no_finding[tokens.index[tokens == _NO_FINDING].to_numpy()] = True
    both = no_finding & (target.sum(1) > 0)
    if both.any():
        raise ValueError(
            f"{int(both.sum())} row(s) of {str(path)!r} list {_NO_FINDING!r} "
            f"together with a finding: "
            f"{show(table['Image Index'].to_numpy()[both])}."
        )
    return target


def _cxr14_split(root: Path, label_file: Path, split: str, names: np.ndarray):
    """Which rows (a bool mask over ``names``) the official split file lists."""
    file_name = _CXR14_SPLIT_FILES[split]
    split_file = label_file.parent / file_name
    if not split_file.is_file():
        try:
            split_file = _find_label_file(root, (file_name,))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"Split file {file_name} (split={split!r}) not found in "
                f"{str(label_file.parent)!r}, {str(root)!r} or its sub-folders."
            ) from None
    with open(split_file, encoding="utf-8") as file:
        listed = {line.strip() for line in file if line.strip()}
    unknown = sorted(listed - set(names))
    if unknown:
        raise ValueError(
            f"{len(unknown)} image name(s) of split file {str(split_file)!r} have "
            f"no row in {str(label_file)!r}: {show(unknown)}."
        )
    return np.isin(names, list(listed)), split_file


def _scan_files(root: Path, wanted: set[str], suffix: str):
    """One walk of ``root``: paths of the ``wanted`` file names, other ``suffix`` files.

    Hidden files and folders (name starting with '.') are skipped.
    """
    found: dict[str, list[str]] = {}
    others: list[str] = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name in wanted:
                found.setdefault(name, []).append(os.path.join(folder, name))
            elif not name.startswith(".") and name.lower().endswith(suffix):
                others.append(os.path.join(folder, name))
    return found, sorted(others)


def load_chestxray14(
    root: str | os.PathLike,
    *,
    split: str | None = None,
    skip_missing: bool = False,
    verify: bool = False,
    return_X_y: bool = False,
    as_frame: bool = False,
) -> Bunch | tuple:
    """Load the NIH ChestX-ray14 chest radiographs and their 14 finding labels.

    The NIH layout: ``Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``)
    in ``root`` or one of its sub-folders, with the columns ``Image Index``
    (the file name, such as ``00000001_000.png``), ``Finding Labels``
    (findings joined by ``|``, such as ``Cardiomegaly|Effusion``, or ``No
    Finding``) and ``Patient ID``. The images are found by file name anywhere
    under ``root`` in one scan: the download unpacks into
    ``images_001/images/`` ... ``images_012/images/``, and a flat
    ``root/images/`` works as well.

    ``target`` is the indicator matrix of the 14 findings, in the order of
    :data:`CHESTXRAY14_LABELS`; ``No Finding`` is the all-zero row. Rows are
    sorted by image name. ChestX-ray14 has many images per patient (30,805
    patients for 112,120 images): split folds by ``patient``
    (:class:`~sklearn.model_selection.GroupKFold`), or use the official
    patient-wise ``split``.

    A listed image without a file is an error (unless ``skip_missing``), as
    are a ``.png`` under ``root`` with no row in the CSV and a file name found
    twice.

    Parameters
    ----------
    root : str or os.PathLike
        The folder holding the label CSV and (anywhere below it) the images.
    split : {None, "train_val", "test"}, default=None
        The official patient-wise split: the images listed in
        ``train_val_list.txt`` (86,524 images) or ``test_list.txt`` (25,596),
        one file name per line, next to the label CSV or in ``root`` or one
        of its sub-folders. None loads every row of the CSV.
    skip_missing : bool, default=False
        Load only the listed images that have a file (for instance when only
        some of the twelve image archives are unpacked) instead of raising an
        error; ``DESCR`` says how many were skipped.
    verify : bool, default=False
        Decode every returned image (in threads) and fail if any cannot be read.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        ``data`` becomes a DataFrame with one column ``"path"``, ``target`` a
        DataFrame with one 0/1 column per finding (named as in
        ``target_names``), and ``frame`` a DataFrame with the columns
        ``path``, ``patient`` and the findings.

    Returns
    -------
    data : Bunch
        ``data`` and ``filenames``: absolute image paths (object array of str);
        ``target``: int64 indicator matrix of shape ``(n_images, 14)``;
        ``target_names``: the findings; ``patient``: int64 patient id of each
        image; ``frame``: DataFrame or None; ``DESCR``: a description.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If ``root``, the label CSV or the split file is missing.
    ValueError
        If ``split`` is unknown, the CSV lacks a column, lists an image twice,
        holds an unknown finding, ``No Finding`` together with a finding or a
        non-integer patient id, the split file names an image the CSV lacks,
        a listed image has no file (without ``skip_missing``), an image file
        is found twice or has no row in the CSV, or (``verify=True``) an image
        is unreadable.

    Examples
    --------
    >>> from sklearn.model_selection import GroupKFold
    >>> from skdiffmic.datasets import load_chestxray14
    >>> data = load_chestxray14("ChestX-ray14", split="train_val")  # doctest: +SKIP
    >>> folds = GroupKFold(5).split(
    ...     data.data, data.target, groups=data.patient
    ... )  # doctest: +SKIP
    """
    if not (split is None or (isinstance(split, str) and split in _CXR14_SPLIT_FILES)):
        raise ValueError(f"split must be None, 'train_val' or 'test'; got {split!r}.")
    _check_flag(skip_missing, "skip_missing")
    root = _directory(root)
    label_file = _find_label_file(root, _CXR14_LABEL_FILES)
    columns = ("Image Index", "Finding Labels", "Patient ID")
    table = read_csv_columns(label_file, columns)
    names = table["Image Index"].to_numpy(dtype=object)
    duplicated = pd.unique(names[pd.Series(names).duplicated().to_numpy()])
    if len(duplicated):
        raise ValueError(
            f"{str(label_file)!r} lists {len(duplicated)} image(s) more than "
            f"once: {show(duplicated)}."
        )
    target = _cxr14_labels(table, label_file)
    patient = integer_column(table, "Patient ID", label_file)
    order = np.argsort(names.astype(str), kind="stable")
    names, target, patient = names[order], target[order], patient[order]

    what = "all rows"
    if split is not None:
        keep, split_file = _cxr14_split(root, label_file, split, names)
        names, target, patient = names[keep], target[keep], patient[keep]
        what = f"split={split!r} of {str(split_file)!r}"

    found, others = _scan_files(root, set(names), ".png")
    twice = sorted(name for name, paths in found.items() if len(paths) > 1)
    if twice:
        raise ValueError(
            f"{len(twice)} image name(s) are found more than once under "
            f"{str(root)!r}; keep one copy of each: "
            + show(f"{n} ({' and '.join(sorted(found[n])[:2])})" for n in twice)
            + "."
        )
    all_names = set(table["Image Index"])
    unlabelled = [p for p in others if os.path.basename(p) not in all_names]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} .png file(s) under {str(root)!r} have no row in "
            f"{str(label_file)!r}: {show(unlabelled)}."
        )
    rows, note = _missing_images(
        names,
        [name in found for name in names],
        repr(str(label_file)),
        root,
        skip_missing,
        what,
    )
    names, target, patient = names[rows], target[rows], patient[rows]
    paths = [found[name][0] for name in names]
    _verify_all(paths, verify)
    descr = (
        "NIH ChestX-ray14: frontal chest radiographs (1024 x 1024 PNG) with 14 "
        "findings text-mined from the radiology reports (112,120 images of "
        "30,805 patients in total); 'No Finding' is the all-zero row.\n"
        f"Loaded from {str(root)!r}: {what}, "
        + _summary(target, patient)
        + _label_counts(target, CHESTXRAY14_LABELS)
        + "\n"
        + note
        + "\nSource: Wang et al., 'ChestX-ray8: Hospital-scale chest X-ray "
        "database and benchmarks on weakly-supervised classification and "
        "localization of common thorax diseases', CVPR 2017. Download from the "
        "NIH Clinical Center (nihcc.app.box.com/v/ChestXray-NIHCC).\n"
    )
    return _multilabel_bunch(
        paths,
        target,
        CHESTXRAY14_LABELS,
        patient,
        descr,
        return_X_y=return_X_y,
        as_frame=as_frame,
    )


# -------------------------------------------------------------------- CheXpert
def _chexpert_values(table: pd.DataFrame, path: Path) -> np.ndarray:
    """The observation columns as an int64 matrix of 1, 0 and -1 (blank: 0)."""
    columns = []
    for name in CHEXPERT_LABELS:
        text = table[name]
        values = pd.to_numeric(text.mask(text == "", "0"), errors="coerce")
        bad = ~values.isin([1, 0, -1])
        if bad.any():
            raise ValueError(
                f"Column {name!r} of {str(path)!r} must hold 1, 0, -1 or nothing; "
                f"{int(bad.sum())} row(s) do not: {show(text[bad].unique())}."
            )
        columns.append(values.to_numpy().astype(np.int64))
    return np.stack(columns, axis=1)


def _chexpert_path(base: Path, text: str) -> str:
    """The file of one ``Path`` cell, relative to the folder holding the CSV."""
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if parts and parts[0] == "/":
        return str(Path(text))
    if len(parts) > 1 and parts[0] not in _CHEXPERT_FOLDERS:
        parts = parts[1:]  # the CheXpert-v1.0-small folder, whatever its name here
    return str(base.joinpath(*parts))


def load_chexpert(
    root: str | os.PathLike,
    *,
    split: str = "train",
    uncertain: str = "zeros",
    frontal_only: bool = False,
    skip_missing: bool = False,
    verify: bool = False,
    return_X_y: bool = False,
    as_frame: bool = False,
) -> Bunch | tuple:
    """Load CheXpert chest radiographs and their 14 observation labels.

    The Stanford layout (``CheXpert-v1.0-small`` or the full
    ``CheXpert-v1.0``): ``train.csv`` and ``valid.csv`` next to the folders
    ``train/`` and ``valid/``. ``root`` may be that folder or its parent (the
    CSV is then searched in one sub-folder). The CSV's ``Path`` column names
    each image relative to the parent of the data set folder
    (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``):
    its first part, the data set folder, is replaced by the folder that
    holds the CSV, whatever that is called on disk (paths that start with
    ``train/`` or ``valid/`` are taken relative to that folder as they are).

    The 14 observation columns (:data:`CHEXPERT_LABELS`, ``No Finding``
    included) hold 1 (positive), 0 (negative), -1 (uncertain) or nothing
    (not mentioned in the report). Not mentioned becomes 0 and uncertain
    follows ``uncertain``: 0, 1, or NaN (unknown) with ``"ignore"``, the
    paper's U-Ignore. The package's estimators leave NaN entries of a
    multi-label target out of their losses, validation and calibration, and
    :func:`skdiffmic.metrics.label_roc_auc` out of its scores. The patient id
    of each image is the number in its path (``patient00001`` is 1); a
    patient's images should stay in one fold
    (:class:`~skdiffmic.model_selection.MultilabelStratifiedGroupKFold`, or
    :class:`~sklearn.model_selection.GroupKFold`). Rows are sorted by path.
    Only the files the CSV lists are checked, each for existence.

    Parameters
    ----------
    root : str or os.PathLike
        The data set folder (holding ``train.csv``) or its parent.
    split : {"train", "valid"}, default="train"
        Which label file to read: ``train.csv`` (223,414 images of the full
        set) or ``valid.csv`` (234 images of 200 patients, labelled by
        radiologists, with no uncertain or blank labels).
    uncertain : {"zeros", "ones", "ignore"}, default="zeros"
        The policy for uncertain (-1) labels: ``"zeros"`` makes them
        negative, ``"ones"`` positive, ``"ignore"`` unknown (NaN in a float
        ``target``): U-Zeros, U-Ones and U-Ignore of the CheXpert paper.
    frontal_only : bool, default=False
        Keep only the frontal views (column ``Frontal/Lateral`` equal to
        ``Frontal``), the usual choice for a single-view classifier.
    skip_missing : bool, default=False
        Load only the listed images that have a file instead of raising an
        error; ``DESCR`` says how many were skipped.
    verify : bool, default=False
        Decode every returned image (in threads) and fail if any cannot be read.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=False
        As in :func:`load_chestxray14`: ``target`` becomes a DataFrame with one
        0/1 column per observation (float columns with NaN when
        ``uncertain="ignore"``).

    Returns
    -------
    data : Bunch
        As in :func:`load_chestxray14`; ``target`` has shape
        ``(n_images, 14)`` and ``target_names`` are the observations. With
        ``uncertain="ignore"``, ``target`` is float64, NaN where uncertain.
    (data, target) : tuple if ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If ``root`` or the label CSV is missing.
    ValueError
        If ``split`` or ``uncertain`` is unknown, the CSV lacks a column,
        lists a path twice, holds a label other than 1, 0, -1 or blank, or a
        path without ``patientNNNNN``, a listed image has no file (without
        ``skip_missing``), or (``verify=True``) an image is unreadable.

    Examples
    --------
    >>> from skdiffmic.datasets import load_chexpert
    >>> X, Y = load_chexpert(
    ...     "CheXpert-v1.0-small", uncertain="ones", frontal_only=True,
    ...     return_X_y=True,
    ... )  # doctest: +SKIP
    >>> from skdiffmic.model_selection import MultilabelStratifiedGroupKFold
    >>> data = load_chexpert(
    ...     "CheXpert-v1.0-small", uncertain="ignore"
    ... )  # doctest: +SKIP
    >>> folds = MultilabelStratifiedGroupKFold(5).split(
    ...     data.data, data.target, groups=data.patient
    ... )  # doctest: +SKIP
    """
    if not (isinstance(split, str) and split in _CHEXPERT_SPLITS):
        raise ValueError(f"split must be 'train' or 'valid'; got {split!r}.")
    if not (isinstance(uncertain, str) and uncertain in _UNCERTAIN):
        raise ValueError(
            "uncertain must be 'zeros', 'ones' or 'ignore' (uncertain labels "
            f"become NaN); got {uncertain!r}."
        )
    _check_flag(frontal_only, "frontal_only")
    _check_flag(skip_missing, "skip_missing")
    root = _directory(root)
    label_file = _find_label_file(root, (f"{split}.csv",))
    required = ("Path",) + CHEXPERT_LABELS
    if frontal_only:
        required += ("Frontal/Lateral",)
    table = read_csv_columns(label_file, required)
    duplicated = table["Path"][table["Path"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(
            f"{str(label_file)!r} lists {len(duplicated)} path(s) more than once: "
            f"{show(duplicated)}."
        )
    values = _chexpert_values(table, label_file)
    number = table["Path"].str.extract(_PATIENT, expand=False)
    if number.isna().any():
        raise ValueError(
            f"{int(number.isna().sum())} path(s) of {str(label_file)!r} name no "
            f"patientNNNNN folder: {show(table['Path'][number.isna()])}."
        )
    patient = number.to_numpy().astype(np.int64)
    cells = table["Path"].to_numpy(dtype=object)
    what = f"{label_file.name}"
    if frontal_only:
        keep = (table["Frontal/Lateral"].str.lower() == "frontal").to_numpy()
        cells, values, patient = cells[keep], values[keep], patient[keep]
        what += ", frontal views only"
    order = np.argsort(cells.astype(str), kind="stable")
    cells, values, patient = cells[order], values[order], patient[order]
    base = label_file.parent
    paths = np.array([_chexpert_path(base, c) for c in cells], dtype=object)
    rows, note = _missing_images(
        cells,
        [os.path.isfile(p) for p in paths],
        repr(str(label_file)),
        base,
        skip_missing,
        what,
    )
    paths, values, patient = paths[rows], values[rows], patient[rows]
    _verify_all(paths, verify)
    n_uncertain = (values == -1).sum(0)
    becomes = {"zeros": 0, "ones": 1, "ignore": np.nan}[uncertain]
    target = np.where(values == -1, becomes, values)
    uncertain_counts = ", ".join(
        f"{name} {count}" for name, count in zip(CHEXPERT_LABELS, n_uncertain) if count
    )
    descr = (
        "CheXpert: chest radiographs of Stanford Hospital with 14 observations "
        "labelled from the radiology reports (224,316 images of 65,240 "
        "patients in total); blank (not mentioned) labels are 0.\n"
        f"Loaded from {str(base)!r}: {what}, uncertain={uncertain!r} (uncertain "
        f"labels become {'NaN, unknown' if uncertain == 'ignore' else becomes}), "
        + _summary(target, patient)
        + _label_counts(target, CHEXPERT_LABELS)
        + "\n"
        + (
            f"\nUncertain (-1) labels among these images: {uncertain_counts}.\n"
            if uncertain_counts
            else ""
        )
        + note
        + "\nSource: Irvin et al., 'CheXpert: a large chest radiograph dataset "
        "with uncertainty labels and expert comparison', AAAI 2019. Download "
        "from the CheXpert page (stanfordmlgroup.github.io/competitions/"
        "chexpert).\n"
    )
    return _multilabel_bunch(
        paths,
        target,
        CHEXPERT_LABELS,
        patient,
        descr,
        return_X_y=return_X_y,
        as_frame=as_frame,
    )
