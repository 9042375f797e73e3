"""Label tables, split files and matching image ids to files on disk.

Helpers shared by the CSV-labelled loaders (HAM10000, APTOS 2019):

* :func:`read_csv_columns` reads a label CSV as text and checks its columns;
* :func:`read_split_file` reads a train/test split, either a CSV
  (``image_id,label,label_name,split``) or the reference DiffMIC repository's
  pickled list of ``{'img_root': path, 'label': int}`` dicts, through an
  unpickler that refuses every global, so a split file can never run code;
* :func:`select_split` checks a split against the labels and picks its rows;
* :func:`find_images` and :func:`match_ids` pair image ids with files;
* :func:`labelled_files` runs all of these checks for one data set.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

__all__ = [
    "SPLITS",
    "check_split_value",
    "find_images",
    "integer_column",
    "labelled_files",
    "match_ids",
    "read_csv_columns",
    "read_split_file",
    "select_split",
    "show",
]

SPLITS = (None, "train", "test")
_SPLIT_COLUMNS = ("image_id", "label", "split")
_PICKLE_SUFFIXES = (".pkl", ".pickle")


def show(items: Iterable, limit: int = 5) -> str:
    """Up to ``limit`` items as a comma-separated list, with '...' if cut."""
    items = [str(item) for item in items]
    text = ", ".join(items[:limit])
    return text + (", ..." if len(items) > limit else "")


def read_csv_columns(path: Path, required: Iterable[str]) -> pd.DataFrame:
    """Read ``path`` with every cell as text; check that ``required`` columns exist.

    Raises
    ------
    ValueError
        If the file cannot be parsed or lacks a required column (the message
        names the missing columns and the columns found).
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"Cannot read CSV file {str(path)!r}: {e}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(
            f"CSV file {str(path)!r} lacks the column(s) {missing}; "
            f"columns found: {list(frame.columns)}."
        )
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    return frame


def integer_column(frame: pd.DataFrame, column: str, path) -> np.ndarray:
    """The column as int64, or a ValueError naming the first bad values."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        raise ValueError(
            f"Column {column!r} of {str(path)!r} must hold integers; "
            f"{int(bad.sum())} row(s) do not: {show(frame[column][bad])}."
        )
    return values.to_numpy().astype(np.int64)


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a class or function."""


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler for plain data: lists, dicts, tuples, str, numbers, None.

    Every global (class or function) is refused, so no constructor, reduce
    call or ``__setstate__`` can run: loading the file cannot execute code.
    """

    def find_class(self, module, name):
        raise _ForbiddenGlobal(f"the pickle asks for the global {module}.{name}")


def _read_pickle_split(path: Path) -> pd.DataFrame:
    try:
        with open(path, "rb") as file:
            content = _DataOnlyUnpickler(file).load()
    except _ForbiddenGlobal as exc:
        raise ValueError(
            f"Refusing to load split file {str(path)!r}: {exc}. A split file "
            "may hold only lists, dicts, tuples, strings, numbers, booleans "
            "and None (never objects or functions)."
        ) from None
    except Exception as exc:  # any malformed stream: EOFError, KeyError, ...
        raise ValueError(
            f"Cannot read split file {str(path)!r} as a pickle: "
            f"{type(exc).__name__}: {exc}."
        ) from None
    if not isinstance(content, (list, tuple)):
        raise ValueError(
            f"Split file {str(path)!r} must hold a list of "
            f"{{'img_root': path, 'label': int}} dicts; got {type(content).__name__}."
        )
    ids, labels = [], []
    for i, entry in enumerate(content):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("img_root"), str)
            and isinstance(entry.get("label"), int)
            and not isinstance(entry.get("label"), bool)
        )
        if not ok:
            raise ValueError(
                f"Entry {i} of split file {str(path)!r} is not a "
                f"{{'img_root': str, 'label': int}} dict: {entry!r:.200}."
            )
        ids.append(PurePosixPath(entry["img_root"].replace("\\", "/")).stem)
        labels.append(entry["label"])
    return pd.DataFrame(
        {
            "image_id": pd.Series(ids, dtype=object),
            "label": np.asarray(labels, dtype=np.int64),
            "split": pd.Series([None] * len(ids), dtype=object),
        }
    )


def read_split_file(path: str | os.PathLike) -> tuple[pd.DataFrame, bool]:
    """Read a split file into columns ``image_id``, ``label`` (int64), ``split``.

    A file whose name ends in ``.pkl``/``.pickle`` or whose content starts
    like a binary pickle is read as the reference DiffMIC repository's pickled
    list of dicts (one split per file: its ``split`` column is None); any other
    file as a CSV with at least the columns ``image_id``, ``label``, ``split``.

    Returns
    -------
    table : DataFrame
        One row per image id.
    is_pickle : bool
        Whether the file was a pickle.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is malformed, asks to load any global (pickle), or lists
        an image id twice.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if not path.is_file():
        raise FileNotFoundError(f"Split file not found: {str(path)!r}.")
    with open(path, "rb") as file:
        head = file.read(1)
    is_pickle = path.suffix.lower() in _PICKLE_SUFFIXES or head == b"\x80"
    if is_pickle:
        table = _read_pickle_split(path)
    else:
        table = read_csv_columns(path, _SPLIT_COLUMNS)
        table = pd.DataFrame(
            {
                "image_id": table["image_id"],
                "label": integer_column(table, "label", path),
                "split": table["split"],
            }
        )
    duplicated = table["image_id"][table["image_id"].duplicated()]
    if len(duplicated):
        raise ValueError(
            f"Split file {str(path)!r} lists {len(duplicated)} image id(s) more "
            f"than once: {show(duplicated.unique())}."
        )
    return table, is_pickle


def check_split_value(split) -> None:
    """Raise ValueError unless ``split`` is None, 'train' or 'test'."""
    if not (split is None or (isinstance(split, str) and split in SPLITS)):
        raise ValueError(f"split must be None, 'train' or 'test'; got {split!r}.")


def select_split(
    ids: np.ndarray, labels: np.ndarray, split_file, split, label_source: str
) -> np.ndarray:
    """Keep the rows of ``ids``/``labels`` that ``split_file`` puts in ``split``.

    ``ids`` and ``labels`` come from the data set's own label file
    (``label_source``, for messages). With a CSV split file, ``split=None``
    keeps every id of the file, ``'train'``/``'test'`` those of that split.
    A pickle is one split by itself: all its ids are kept whatever ``split``.
    Every kept id must have a label, equal to the split file's label.

    Returns the positions of the kept rows in ``ids``, in increasing order.
    """
    check_split_value(split)
    if split_file is None:
        if split is not None:
            raise ValueError(
                f"split={split!r} needs split_file (a CSV with columns "
                "image_id,label,label_name,split, or a pickled list of dicts)."
            )
        return np.arange(len(ids))
    table, is_pickle = read_split_file(split_file)
    if split is not None and not is_pickle:
        present = sorted(set(table["split"]))
        table = table[table["split"] == split]
        if not len(table):
            raise ValueError(
                f"Split file {os.fspath(split_file)!r} has no row with "
                f"split={split!r}; splits present: {present}."
            )
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    unknown = ~table["image_id"].isin(position.index)
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} image id(s) of split file "
            f"{os.fspath(split_file)!r} have no label in {label_source}: "
            f"{show(table['image_id'][unknown])}."
        )
    rows = position[table["image_id"]].to_numpy()
    disagree = labels[rows] != table["label"].to_numpy()
    if disagree.any():
        examples = [
            f"{i} (split file {a}, {label_source} {b})"
            for i, a, b in zip(
                table["image_id"][disagree],
                table["label"][disagree],
                labels[rows][disagree],
            )
        ]
        raise ValueError(
            f"{int(disagree.sum())} of {len(rows)} labels in split file "
            f"{os.fspath(split_file)!r} disagree with {label_source}: "
            f"{show(examples)}."
        )
    return np.sort(rows)


def find_images(root: Path, extensions: Iterable[str]) -> dict[str, list[Path]]:
    """Image files under ``root`` (recursively), grouped by file stem.

    Hidden files and folders (name starting with '.') are skipped; extensions
    are matched case-insensitively. Each stem's paths are sorted as strings.
    """
    extensions = tuple(ext.lower() for ext in extensions)
    found: dict[str, list[Path]] = {}
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(extensions):
                continue
            stem = name.rsplit(".", 1)[0]
            found.setdefault(stem, []).append(Path(folder, name))
    for paths in found.values():
        paths.sort(key=str)
    return found


def match_ids(
    ids: np.ndarray, images: dict[str, list[Path]], root: Path, label_source: str
) -> np.ndarray:
    """The file of each id; errors for ids without a file and files without id.

    Where one id has several files (the Kaggle copy of HAM10000 ships every
    image twice), the first path in sorted order is used.

    Raises
    ------
    ValueError
        If an id has no image file, or an image file's stem is no id.
    """
    known = set(ids)
    missing = [i for i in ids if i not in images]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(ids)} image id(s) in {label_source} have no "
            f"image file under {str(root)!r}: {show(missing)}."
        )
    unlabelled = sorted(
        str(p) for s, paths in images.items() if s not in known for p in paths
    )
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} image file(s) on disk under {str(root)!r} have no "
            f"label in {label_source}: {show(unlabelled)}."
        )
    return np.array([str(images[i][0]) for i in ids], dtype=object)


def labelled_files(
    root: Path,
    ids: np.ndarray,
    labels: np.ndarray,
    images: dict[str, list[Path]],
    label_file: Path,
    split,
    split_file,
) -> tuple[np.ndarray, np.ndarray]:
    """Paths and labels of a CSV-labelled set, sorted by id, after the split.

    Checks that ``label_file`` lists each id once, that every id has an image
    and every image an id (:func:`match_ids`), then applies the split
    (:func:`select_split`).
    """
    source = repr(str(label_file))
    duplicated = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(duplicated):
        raise ValueError(
            f"{source} lists {len(duplicated)} image id(s) more than once: "
            f"{show(duplicated)}."
        )
    order = np.argsort(ids.astype(str), kind="stable")
    ids, labels = ids[order], labels[order]
    paths = match_ids(ids, images, root, source)
    rows = select_split(ids, labels, split_file, split, source)
    return paths[rows], labels[rows]
