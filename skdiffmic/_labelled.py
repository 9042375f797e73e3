"""Labelled image data for ``skdiffmic fit`` and ``skdiffmic evaluate``.

Two layouts, both checked before any training:

* a folder with one sub-folder per class (as
  :func:`~skdiffmic.datasets.load_image_folder` reads it): the labels are the
  folder names;
* a CSV file with a ``path`` column (paths relative to the CSV's folder, or
  absolute; DICOM files included) and label columns: one column of class
  labels (single-label; every row needs one), or several 0/1 columns
  (multi-label findings; a blank cell is NaN, an unknown finding). Without
  ``label_columns``, every column but the identifier columns of
  :data:`ID_COLUMNS` is a label column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ID_COLUMNS", "Labelled", "read_labelled"]

#: Columns of a CSV that are never labels (compared case-insensitively):
#: the image, and the patient, study or group identifiers and splits that
#: data sets carry beside it.
ID_COLUMNS = (
    "path",
    "image",
    "image_id",
    "patient",
    "patient_id",
    "subject",
    "subject_id",
    "study",
    "study_id",
    "lesion_id",
    "group",
    "groups",
    "split",
    "fold",
)


@dataclass
class Labelled:
    """Image paths and their labels: a 1-D array of class labels, or (multi-label)
    a float DataFrame of 0/1 label columns with NaN for unknown entries."""

    paths: list[str]
    y: np.ndarray | pd.DataFrame
    name: str  # the folder's or the CSV's name, for output names

    @property
    def multilabel(self) -> bool:
        return isinstance(self.y, pd.DataFrame)


def read_labelled(data, label_columns=None) -> Labelled:
    """The labelled images of a class-folder tree or a CSV file (see the module
    docstring); ValueError naming the file for anything that is not usable."""
    data = Path(data)
    if data.is_dir():
        return _read_folder(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        return _read_csv(data, label_columns)
    if data.exists():
        raise ValueError(
            f"{os.fspath(data)!r} is neither a folder of class folders nor a CSV file"
        )
    raise FileNotFoundError(f"no such file or folder: {os.fspath(data)!r}")


def _read_folder(root: Path) -> Labelled:
    from .datasets import load_image_folder

    bunch = load_image_folder(root, verify=False)  # verified by the command
    names = bunch.target_names
    if len(names) < 2:
        raise ValueError(
            f"{os.fspath(root)!r} has one class folder only ({str(names[0])!r}); "
            "a classifier needs at least two classes"
        )
    return Labelled(list(bunch.data), names[bunch.target], root.name)


def _read_csv(path: Path, label_columns) -> Labelled:
    where = repr(os.fspath(path))
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the CSV {where}: {exc}") from None
    if "path" not in table.columns:
        raise ValueError(
            f"the CSV {where} has no 'path' column (columns: {list(table.columns)})"
        )
    if table.empty:
        raise ValueError(f"the CSV {where} has no rows")
    blank = table["path"].isna()
    if blank.any():
        raise ValueError(f"the CSV {where} has no path on line(s) {_lines(blank)}")
    paths = [
        os.fspath(Path(p) if os.path.isabs(p) else path.parent / p)
        for p in table["path"].astype(str)
    ]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"{len(missing)} file(s) named in {where} do not exist, the first "
            f"{missing[0]!r}"
        )
    columns = _label_columns(table, label_columns, where)
    if len(columns) == 1:
        labels = table[columns[0]]
        if labels.isna().any():
            raise ValueError(
                f"the CSV {where} has no label in column {columns[0]!r} on "
                f"line(s) {_lines(labels.isna())}"
            )
        return Labelled(paths, labels.to_numpy(), path.stem)
    return Labelled(paths, _indicator(table, columns, where), path.stem)


def _label_columns(table, label_columns, where) -> list[str]:
    if label_columns is None:
        columns = [
            c
            for c in table.columns
            if str(c).lower() not in ID_COLUMNS and not str(c).startswith("Unnamed:")
        ]
        if not columns:
            raise ValueError(f"the CSV {where} has no label column besides its paths")
        return columns
    unknown = [c for c in label_columns if c not in table.columns]
    if unknown:
        raise ValueError(
            f"the CSV {where} has no column {unknown[0]!r} (columns: "
            f"{list(table.columns)})"
        )
    return list(label_columns)


def _indicator(table, columns, where) -> pd.DataFrame:
    """The 0/1 label columns as floats, a blank cell NaN (unknown)."""
    indicator = {}
    for column in columns:
        cells = table[column]
        values = pd.to_numeric(
            cells.astype(int) if cells.dtype == bool else cells, errors="coerce"
        )
        bad = (values.notna() & ~values.isin([0, 1])) | (values.isna() & cells.notna())
        if bad.any():
            first = cells[bad].iloc[0]
            raise ValueError(
                f"column {column!r} of the CSV {where} holds {first!r} on line(s) "
                f"{_lines(bad)}; multi-label columns hold 0, 1 or a blank (unknown)"
            )
        indicator[str(column)] = values.astype(np.float64)
    return pd.DataFrame(indicator)


def _lines(mask, limit=5) -> str:
    """The CSV line numbers (header = line 1) of the rows in ``mask``."""
    lines = [str(i + 2) for i in np.flatnonzero(np.asarray(mask))]
    return ", ".join(lines[:limit]) + (", ..." if len(lines) > limit else "")
