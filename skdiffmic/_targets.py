"""Multi-label targets: checking an indicator ``Y`` and what "balanced" means.

A target with more than one column (a 2-D array, a sparse matrix or a
DataFrame of 0/1 columns) is a multi-label indicator matrix, scikit-learn's
``"multilabel-indicator"``: row ``i`` has label ``j`` when ``Y[i, j] == 1``, and
any subset of the labels may be present, none included. A column vector
``(n, 1)`` stays a single-label target, as scikit-learn reads it.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "check_multilabel",
    "is_multilabel",
    "label_probabilities",
    "label_sample_weight",
    "label_sets",
    "one_sided_label",
    "positive_weights",
]


def label_probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Probabilities of logits ``(B, K)``: a softmax over the classes, or
    (multi-label) one sigmoid per label."""
    return logits.sigmoid() if multilabel else logits.softmax(-1)


def label_sets(names, present) -> list[str]:
    """Each row's labels, the ``names`` of its True columns of ``present``
    (an ``(n, n_labels)`` boolean array) joined by ``|``: how predictions of a
    multi-label model are written in tables ("" for a row with none)."""
    names = np.asarray([str(n) for n in names], dtype=object)
    return ["|".join(names[row]) for row in np.asarray(present, dtype=bool)]


def is_multilabel(y) -> bool:
    """Whether ``y`` is a multi-label indicator (2-D with at least 2 columns)."""
    if y is None:
        return False
    if hasattr(y, "iloc"):  # pandas
        return getattr(y, "ndim", 1) == 2 and y.shape[1] > 1
    if hasattr(y, "toarray"):  # scipy.sparse
        return y.shape[1] > 1
    if isinstance(y, np.ndarray):
        return y.ndim == 2 and y.shape[1] > 1
    if (
        isinstance(y, (list, tuple))
        and len(y)
        and isinstance(y[0], (list, tuple, np.ndarray))
    ):
        return np.ndim(y[0]) == 1 and len(y[0]) > 1
    return False


def check_multilabel(Y, n_samples: int):
    """``(indicator, label names)`` of a multi-label target, or a clear error.

    ``indicator`` is an int64 array ``(n_samples, n_labels)`` of 0 and 1.
    The names are a DataFrame's column names (as strings), else None. Refused:
    a number of rows other than ``n_samples``, missing values, values other
    than 0 and 1, and a label that is never (or always) present; the error
    names the label.
    """
    names = None
    if hasattr(Y, "iloc"):
        names = np.array([str(c) for c in Y.columns], dtype=object)
        try:  # nullable columns: pd.NA becomes NaN, refused below as missing
            values = Y.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            values = Y.to_numpy()
    elif hasattr(Y, "toarray"):
        values = Y.toarray()
    else:
        try:
            values = np.asarray(Y)
        except ValueError as exc:
            raise ValueError(
                f"Y could not be read as an indicator matrix: {exc}"
            ) from None
    if values.ndim != 2:
        raise ValueError(
            "Y must be an indicator matrix (n_samples, n_labels): rows of equal length."
        )
    if values.shape[0] != n_samples:
        raise ValueError(
            f"X and Y have inconsistent numbers of samples: {n_samples} in X and "
            f"{values.shape[0]} rows in Y."
        )

    def label(j):
        return f"{names[j]!r} (column {j})" if names is not None else str(j)

    if values.dtype == object:  # None is a missing value, as NaN is
        values = np.where(
            np.vectorize(lambda v: v is None, otypes=[bool])(values), np.nan, values
        )
    if values.dtype.kind in "USO" and not all(
        isinstance(v, (bool, int, float, np.number, np.bool_)) for v in values.flat
    ):
        raise ValueError(
            "Y must hold only 0 and 1 (a multi-label indicator matrix); it holds "
            "strings or other objects. Convert it to numbers first."
        )
    try:
        numbers = values.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "Y must hold only 0 and 1 (a multi-label indicator matrix); it holds "
            f"values of type {values.dtype} that are not numbers."
        ) from None
    missing = np.isnan(numbers)
    if missing.any():
        row, j = np.argwhere(missing)[0]
        raise ValueError(
            f"Y has {int(missing.sum())} missing value(s); the first is label "
            f"{label(j)} of row {row}. Fill them (0: absent) before fitting."
        )
    bad = (numbers != 0) & (numbers != 1)
    if bad.any():
        row, j = np.argwhere(bad)[0]
        raise ValueError(
            "Y must hold only 0 and 1 (a multi-label indicator matrix); label "
            f"{label(j)} has the value {float(numbers[row, j]):g} in row {row}."
        )
    lacking = one_sided_label(numbers)
    if lacking is not None:
        j, which = lacking
        raise ValueError(
            f"Label {label(j)} has no {which} row: a label needs both to be "
            "learnt. Drop the column, or add rows that "
            f"{'show' if which == 'positive' else 'lack'} it."
        )
    return numbers.astype(np.int64), names


def one_sided_label(Y: np.ndarray):
    """``(j, "positive" | "negative")`` for the first label of the indicator
    ``Y`` that no row (every row) has, or None when each label has both."""
    for j, count in enumerate(Y.sum(axis=0)):
        if count == 0 or count == len(Y):
            return j, "positive" if count == 0 else "negative"
    return None


def positive_weights(Y: np.ndarray, class_weight, label_names) -> np.ndarray:
    """Per-label weights of the positive rows (binary cross-entropy's
    ``pos_weight``) for a ``class_weight`` setting, or None.

    ``"balanced"`` gives each label ``n_negative / n_positive``, so that its
    positive and negative rows weigh the same in total. A dict maps labels
    (column indices, or a DataFrame's column names) to weights; labels it does
    not name weigh 1.
    """
    if class_weight is None:
        return None
    n_labels = Y.shape[1]
    if isinstance(class_weight, str):  # "balanced"
        positives = Y.sum(axis=0)
        return (len(Y) - positives) / positives
    weights = np.ones(n_labels)
    keys = {j: j for j in range(n_labels)}
    if label_names is not None:
        keys.update({name: j for j, name in enumerate(label_names)})
    for key, value in class_weight.items():
        key = key.item() if hasattr(key, "item") else key
        if key not in keys and str(key) in keys:  # a DataFrame's column name
            key = str(key)
        if key not in keys:
            raise ValueError(
                f"class_weight names the label {key!r}, which Y does not have; "
                f"the labels are {list(keys)}."
            )
        weights[keys[key]] = float(value)
    return weights


def label_sample_weight(Y: np.ndarray) -> np.ndarray:
    """Drawing weights of ``balanced_sampling`` for an indicator ``Y``.

    A row weighs the inverse frequency of its rarest label (rows with no label
    form a group of their own), so that each label's positive rows are drawn
    about as often as the rarest label's.
    """
    counts = Y.sum(axis=0).astype(np.float64)
    # A label with no row here (a fold of prior_folds, say) weighs nothing.
    frequency = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    inverse = np.where(Y == 1, frequency, 0.0).max(axis=1)
    none = Y.sum(axis=1) == 0
    if none.any():
        inverse[none] = 1.0 / none.sum()
    return inverse
