"""Multi-label targets: checking an indicator ``Y`` and what "balanced" means.

A target with more than one column (a 2-D array, a sparse matrix or a
DataFrame of 0/1 columns) is a multi-label indicator matrix, scikit-learn's
``"multilabel-indicator"``: row ``i`` has label ``j`` when ``Y[i, j] == 1``, and
any subset of the labels may be present, none included. A column vector
``(n, 1)`` stays a single-label target, as scikit-learn reads it.

A missing entry (NaN, ``None`` or pandas' ``NA``) means "unknown": CheXpert's
uncertain findings left out (U-Ignore), a finding a report does not mention.
It is kept as NaN in the float indicator and left out of everything that
reads the truth: both training losses, each label's ``pos_weight`` and
sampling weight, the temperature fit and the validation scores
(:func:`known_entries` is the one place the mask comes from).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "check_multilabel",
    "is_multilabel",
    "known_entries",
    "known_label_scores",
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

    ``indicator`` is a float64 array ``(n_samples, n_labels)`` of 0, 1 and
    NaN (unknown: a missing value of ``Y``). The names are a DataFrame's
    column names (as strings), else None. Refused: a number of rows other
    than ``n_samples``, values other than 0, 1 and missing, and a label
    with no known positive (or no known negative) row; the error names the
    label.
    """
    names = None
    if hasattr(Y, "iloc"):
        names = np.array([str(c) for c in Y.columns], dtype=object)
        try:  # nullable columns: pd.NA becomes NaN, an unknown entry
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
    if np.isinf(numbers).any():
        row, j = np.argwhere(np.isinf(numbers))[0]
        raise ValueError(
            "Y must hold only 0, 1 and missing values; label "
            f"{label(j)} is infinite in row {row}."
        )
    bad = (numbers != 0) & (numbers != 1) & ~np.isnan(numbers)
    if bad.any():
        row, j = np.argwhere(bad)[0]
        raise ValueError(
            "Y must hold only 0 and 1 (a multi-label indicator matrix) or "
            f"missing values; label {label(j)} has the value "
            f"{float(numbers[row, j]):g} in row {row}."
        )
    lacking = one_sided_label(numbers)
    if lacking is not None:
        j, which = lacking
        raise ValueError(
            f"Label {label(j)} has no known {which} row: a label needs both "
            "to be learnt (missing entries are unknown and count as "
            "neither). Drop the column, or add rows that "
            f"{'show' if which == 'positive' else 'lack'} it."
        )
    return numbers, names


def known_entries(Y):
    """``(filled, known)`` of an indicator with unknown (NaN) entries:
    ``known`` is True where ``Y`` holds 0 or 1, and ``filled`` is ``Y`` with 0
    at the unknown entries (a value nothing that reads ``known`` can see).
    NumPy arrays or torch tensors, as given."""
    if isinstance(Y, torch.Tensor):
        known = ~torch.isnan(Y)
        return torch.where(known, Y, torch.zeros_like(Y)), known
    Y = np.asarray(Y, dtype=np.float64)
    known = ~np.isnan(Y)
    return np.where(known, Y, 0.0), known


def known_positives(Y: np.ndarray):
    """``(positive, known)`` boolean masks of a NumPy indicator with unknown
    (NaN) entries: ``positive`` holds the known entries that are 1, whatever
    :func:`known_entries` fills the unknown ones with."""
    filled, known = known_entries(Y)
    return known & (filled == 1), known


def one_sided_label(Y: np.ndarray):
    """``(j, "positive" | "negative")`` for the first label of the indicator
    ``Y`` that no known entry shows (no known entry lacks), or None when each
    label has both."""
    positive, known = known_positives(Y)
    positives, counts = positive.sum(axis=0), known.sum(axis=0)
    for j, (count, total) in enumerate(zip(positives, counts)):
        if count == 0 or count == total:
            return j, "positive" if count == 0 else "negative"
    return None


def known_label_scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    """The validation scores of decided label sets against an indicator with
    unknown entries: ``accuracy``, the rows whose every known label is right
    (subset accuracy), and ``macro_f1``, the mean over the labels of each
    label's F1 on its known rows (0 for a label that has no known positive
    and none predicted)."""
    positive, known = known_positives(truth)
    pred = np.asarray(pred) == 1
    right = (pred == positive) | ~known
    tp = (pred & positive & known).sum(axis=0)
    fp = (pred & ~positive & known).sum(axis=0)
    fn = (~pred & positive & known).sum(axis=0)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(
        2 * tp,
        denominator,
        out=np.zeros(len(tp), dtype=np.float64),
        where=denominator > 0,
    )
    return {"accuracy": float(right.all(axis=1).mean()), "macro_f1": float(f1.mean())}


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
    if isinstance(class_weight, str):  # "balanced", over each label's known rows
        positive, known = known_positives(Y)
        positives = positive.sum(axis=0)
        return (known.sum(axis=0) - positives) / positives
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

    A row weighs the inverse frequency of its rarest label (rows with no
    label form a group of their own), so that each label's positive rows are
    drawn about as often as the rarest label's. Only known positives count,
    in the frequencies and in a row's labels.
    """
    Y = known_positives(Y)[0].astype(np.float64)
    counts = Y.sum(axis=0)
    # A label with no row here (a fold of prior_folds, say) weighs nothing.
    frequency = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    inverse = np.where(Y == 1, frequency, 0.0).max(axis=1)
    none = Y.sum(axis=1) == 0
    if none.any():
        inverse[none] = 1.0 / none.sum()
    return inverse
