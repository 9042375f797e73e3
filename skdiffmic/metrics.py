"""Calibration metrics for probabilistic classifiers.

scikit-learn has the log-loss (:func:`sklearn.metrics.log_loss`) and the
multi-class Brier score (:func:`sklearn.metrics.brier_score_loss`); this
module adds the expected calibration error and the reliability-diagram bins
it is computed from.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import column_or_1d
from sklearn.utils.validation import check_array, check_consistent_length

__all__ = ["calibration_bins", "expected_calibration_error"]


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
