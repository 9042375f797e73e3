"""Calibration metrics, and ROC AUC of label sets with unknown entries.

scikit-learn has the log-loss (:func:`sklearn.metrics.log_loss`) and the
multi-class Brier score (:func:`sklearn.metrics.brier_score_loss`); this
module adds the expected calibration error and the reliability-diagram bins
it is computed from. :func:`sklearn.metrics.roc_auc_score` refuses a
multi-label target with missing values; :func:`label_roc_auc` and
:func:`macro_label_roc_auc` score each label over its known entries (a NaN
entry of the indicator matrix is unknown, as CheXpert's uncertain labels
with ``load_chexpert(uncertain="ignore")``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.utils import column_or_1d
from sklearn.utils.validation import check_array, check_consistent_length

__all__ = [
    "calibration_bins",
    "expected_calibration_error",
    "label_roc_auc",
    "macro_label_roc_auc",
]


def _top_label(y_true, y_proba, labels):
    y_true = column_or_1d(y_true)
    y_proba = check_array(y_proba, dtype=np.float64)
    check_consistent_length(y_true, y_proba)
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    if y_proba.shape[1] != len(labels):
        raise ValueError(
            f"y_proba has {y_proba.shape[1]} columns but there are {len(labels)} "
            "labels; pass labels= in the order of the columns."
        )
    if not np.isin(y_true, labels).all():
        raise ValueError("y_true has labels that are not in labels.")
    confidence = y_proba.max(axis=1)
    correct = labels[y_proba.argmax(axis=1)] == y_true
    return confidence, correct


def calibration_bins(y_true, y_proba, *, n_bins=15, labels=None):
    """Bins of top-label confidence: the data of a reliability diagram.

    Each prediction falls in the bin of its confidence (the largest
    probability), with ``n_bins`` equal-width bins on [0, 1] (a confidence
    on a bin edge goes to the lower bin, as in Guo et al., 2017).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``labels``.
    n_bins : int, default=15
        Number of equal-width confidence bins.
    labels : array-like of shape (n_classes,) or None, default=None
        Class of each column; ``None`` takes the sorted unique ``y_true``
        (as ``classes_`` of a fitted classifier when every class is present).

    Returns
    -------
    confidence : ndarray of shape (n_bins,)
        Mean confidence in each bin (NaN for an empty bin).
    accuracy : ndarray of shape (n_bins,)
        Fraction of correct predictions in each bin (NaN for an empty bin).
    count : ndarray of shape (n_bins,)
        Number of predictions in each bin.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int; got {n_bins!r}.")
    confidence, correct = _top_label(y_true, y_proba, labels)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, confidence, n_bins) / count
        accuracy = np.bincount(which, correct.astype(float), n_bins) / count
    return mean_conf, accuracy, count


def expected_calibration_error(y_true, y_proba, *, n_bins=15, labels=None):
    """Expected calibration error (ECE) of the top-label confidence.

    ``sum_b (n_b / n) * |accuracy_b - confidence_b|`` over ``n_bins``
    equal-width confidence bins (Guo et al., 2017): 0 for a perfectly
    calibrated classifier, at most 1.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``labels``.
    n_bins : int, default=15
        Number of equal-width confidence bins.
    labels : array-like of shape (n_classes,) or None, default=None
        Class of each column; ``None`` takes the sorted unique ``y_true``.

    Returns
    -------
    ece : float
        The expected calibration error.
    """
    confidence, accuracy, count = calibration_bins(
        y_true, y_proba, n_bins=n_bins, labels=labels
    )
    filled = count > 0
    gap = np.abs(accuracy[filled] - confidence[filled])
    return float(np.sum(count[filled] * gap) / count.sum())


def _label_matrices(Y_true, Y_score):
    Y = check_array(
        Y_true, dtype=np.float64, ensure_all_finite="allow-nan", input_name="Y_true"
    )
    S = check_array(Y_score, dtype=np.float64, input_name="Y_score")
    if Y.shape != S.shape:
        raise ValueError(
            f"Y_true and Y_score must have the same shape; got {Y.shape} and {S.shape}."
        )
    known = Y[~np.isnan(Y)]
    if not np.isin(known, (0.0, 1.0)).all():
        raise ValueError("Y_true must hold 0, 1 or NaN (unknown).")
    return Y, S


def label_roc_auc(Y_true, Y_score, *, label_names=None):
    """ROC AUC of each label over its known entries.

    Each column of ``Y_true`` is scored on the rows where it is known (not
    NaN), so unknown labels (CheXpert's uncertain findings loaded with
    ``uncertain="ignore"``) count neither as positive nor as negative. A label
    whose known entries are all of one class has no ROC AUC: NaN.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_labels)
        The 0/1 indicator matrix of the labels; NaN marks an unknown entry.
        A DataFrame's column names name the result's entries.
    Y_score : array-like of shape (n_samples, n_labels)
        Scores of each label (probabilities, such as ``predict_proba``, or any
        monotone score), finite.
    label_names : array-like of shape (n_labels,) or None, default=None
        Index of the result; None takes the columns of a DataFrame
        ``Y_true``, else ``0, ..., n_labels - 1``.

    Returns
    -------
    auc : pandas.Series of shape (n_labels,)
        The ROC AUC of each label, NaN where it cannot be computed.

    See Also
    --------
    macro_label_roc_auc : Their mean.

    Examples
    --------
    >>> import numpy as np
    >>> from skdiffmic.metrics import label_roc_auc
    >>> Y = np.array([[1, 0], [0, np.nan], [1, 0], [0, 0]])
    >>> scores = np.array([[0.9, 0.2], [0.2, 0.9], [0.4, 0.1], [0.6, 0.3]])
    >>> label_roc_auc(Y, scores, label_names=["Effusion", "Nodule"])
    Effusion    0.75
    Nodule       NaN
    dtype: float64
    """
    columns = getattr(Y_true, "columns", None)
    Y, S = _label_matrices(Y_true, Y_score)
    if label_names is None:
        label_names = range(Y.shape[1]) if columns is None else list(columns)
    if len(label_names) != Y.shape[1]:
        raise ValueError(
            f"label_names has {len(label_names)} names for {Y.shape[1]} labels."
        )
    auc = np.full(Y.shape[1], np.nan)
    for j in range(Y.shape[1]):
        known = ~np.isnan(Y[:, j])
        if len(np.unique(Y[known, j])) == 2:
            auc[j] = roc_auc_score(Y[known, j], S[known, j])
    return pd.Series(auc, index=pd.Index(label_names))


def macro_label_roc_auc(Y_true, Y_score):
    """The mean ROC AUC of the labels, each over its known entries.

    The mean of :func:`label_roc_auc` over the labels that have one (whose
    known entries hold both classes): scikit-learn's
    ``roc_auc_score(Y_true, Y_score, average="macro")`` where ``Y_true`` has
    no NaN and every label both classes.

    Parameters
    ----------
    Y_true : array-like of shape (n_samples, n_labels)
        The 0/1 indicator matrix of the labels; NaN marks an unknown entry.
    Y_score : array-like of shape (n_samples, n_labels)
        Scores of each label, finite.

    Returns
    -------
    auc : float
        The macro-averaged ROC AUC.

    Raises
    ------
    ValueError
        If no label has both classes among its known entries.

    Examples
    --------
    >>> import numpy as np
    >>> from skdiffmic.metrics import macro_label_roc_auc
    >>> Y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]])
    >>> scores = np.array([[0.9, 0.2], [0.2, 0.9], [0.4, 0.1], [0.6, 0.3]])
    >>> float(macro_label_roc_auc(Y, scores))
    0.375
    """
    auc = label_roc_auc(Y_true, Y_score).to_numpy()
    if np.isnan(auc).all():
        raise ValueError(
            "No label has both a positive and a negative known entry: the ROC "
            "AUC is undefined."
        )
    return float(np.nanmean(auc))
