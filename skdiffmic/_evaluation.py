"""The scores of ``skdiffmic evaluate``: tables, a confusion matrix, a figure.

:func:`evaluate` scores predicted probabilities against the truth:

* single-label: accuracy, macro-F1, balanced accuracy, macro ROC AUC (one
  class against the rest, averaged over the classes present with both
  outcomes), log-loss and the expected calibration error of the top-label
  confidence; per class its support, recall, precision, F1 and ROC AUC; the
  confusion matrix;
* multi-label: each label scored on its known entries (NaN is unknown): ROC
  AUC, and recall, precision, F1 and balanced accuracy at 0.5; their macro
  means, the exact-match accuracy of the rows with every label known, and the
  calibration error of every known entry pooled.

:func:`write_evaluation` writes them as CSV files with the reliability
diagram (``reliability.png``, needs matplotlib).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    roc_auc_score,
)

from .metrics import calibration_bins
from .metrics import expected_calibration_error as _ece

__all__ = ["N_BINS", "Evaluation", "evaluate", "write_evaluation"]

N_BINS = 10  # confidence bins of the calibration error and the diagram


@dataclass
class Evaluation:
    """The tables of one evaluation, and the reliability diagram's bins."""

    metrics: pd.DataFrame  # columns metric, value
    per_class: pd.DataFrame
    confusion: pd.DataFrame | None
    bins: tuple[np.ndarray, np.ndarray, np.ndarray]  # confidence, accuracy, count
    multilabel: bool


def evaluate(truth, proba, labels, multilabel: bool) -> Evaluation:
    """Score ``proba`` (columns in the order of ``labels``) against ``truth``:
    class labels, or (multi-label) an indicator with NaN for unknown."""
    proba = np.asarray(proba, dtype=np.float64)
    if multilabel:
        return _multilabel(np.asarray(truth, dtype=np.float64), proba, labels)
    return _single_label(np.asarray(truth), proba, np.asarray(labels))


def _auc(positive, scores) -> float:
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")  # undefined with one outcome only
    return float(roc_auc_score(positive, scores))


def _single_label(y, proba, classes) -> Evaluation:
    pred = classes[proba.argmax(axis=1)]
    matrix = confusion_matrix(y, pred, labels=classes)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    hits = np.diag(matrix).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        precision = np.where(predicted > 0, hits / predicted, np.nan)
        f1 = 2 * hits / (support + predicted)
    auc = [_auc(y == c, proba[:, k]) for k, c in enumerate(classes)]
    names = [str(c) for c in classes]
    per_class = pd.DataFrame(
        {
            "class": names,
            "support": support,
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "roc_auc": auc,
        }
    )
    metrics = {
        "n_images": len(y),
        "accuracy": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, labels=classes, average="macro", zero_division=0),
        "balanced_accuracy": float(np.nanmean(recall)),
        "macro_roc_auc": _nanmean(auc),
        "log_loss": log_loss(y, proba, labels=classes),
        f"ece_{N_BINS}_bins": _ece(y, proba, n_bins=N_BINS, labels=classes),
    }
    confusion = pd.DataFrame(matrix, index=names, columns=names)
    confusion.index.name = "true \\ predicted"
    bins = calibration_bins(y, proba, n_bins=N_BINS, labels=classes)
    return Evaluation(_table(metrics), per_class, confusion, bins, multilabel=False)


def _multilabel(Y, proba, names) -> Evaluation:
    known = ~np.isnan(Y)
    rows = []
    for k, name in enumerate(names):
        mask = known[:, k]
        truth, scores = Y[mask, k] == 1, proba[mask, k]
        pred = scores >= 0.5
        both = truth.any() and not truth.all()
        rows.append(
            {
                "label": str(name),
                "n_known": int(mask.sum()),
                "n_positive": int(truth.sum()),
                "roc_auc": _auc(truth, scores),
                "recall": float(pred[truth].mean()) if truth.any() else np.nan,
                "precision": float(truth[pred].mean()) if pred.any() else np.nan,
                "f1": f1_score(truth, pred, zero_division=0) if mask.any() else np.nan,
                "balanced_accuracy": balanced_accuracy_score(truth, pred)
                if both
                else np.nan,
            }
        )
    per_label = pd.DataFrame(rows)
    complete = known.all(axis=1)
    exact = (proba[complete] >= 0.5) == (Y[complete] == 1)
    metrics = {
        "n_images": len(Y),
        "n_known_entries": int(known.sum()),
        "macro_roc_auc": _nanmean(per_label.roc_auc),
        "macro_f1": _nanmean(per_label.f1),
        "macro_balanced_accuracy": _nanmean(per_label.balanced_accuracy),
        "exact_match_accuracy": float(exact.all(axis=1).mean())
        if complete.any()
        else np.nan,
    }
    bins = _binary_bins(proba[known], Y[known] == 1)
    confidence, accuracy, count = bins
    filled = count > 0
    metrics[f"ece_{N_BINS}_bins"] = float(
        np.sum(count[filled] * np.abs(accuracy[filled] - confidence[filled]))
        / max(count.sum(), 1)
    )
    return Evaluation(_table(metrics), per_label, None, bins, multilabel=True)


def _binary_bins(p, positive):
    """Equal-width bins of predicted probabilities: mean probability, fraction
    positive and count per bin (the pooled reliability of every label)."""
    edges = np.linspace(0.0, 1.0, N_BINS + 1)
    which = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, N_BINS - 1)
    count = np.bincount(which, minlength=N_BINS)
    with np.errstate(invalid="ignore"):
        mean = np.bincount(which, p, N_BINS) / count
        observed = np.bincount(which, positive.astype(float), N_BINS) / count
    return mean, observed, count


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _table(metrics: dict) -> pd.DataFrame:
    values = [v if isinstance(v, int) else float(v) for v in metrics.values()]
    return pd.DataFrame(
        {"metric": list(metrics), "value": pd.Series(values, dtype=object)}
    )


# ----------------------------------------------------------------- output --
def write_evaluation(evaluation: Evaluation, folder, predictions=None) -> list[str]:
    """Write the tables (and the diagram, with matplotlib) into ``folder``.

    Returns the names of the files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    evaluation.metrics.to_csv(folder / "metrics.csv", index=False)
    per_class = "per_label.csv" if evaluation.multilabel else "per_class.csv"
    evaluation.per_class.to_csv(folder / per_class, index=False)
    written = ["metrics.csv", per_class]
    if evaluation.confusion is not None:
        evaluation.confusion.to_csv(folder / "confusion_matrix.csv")
        written.append("confusion_matrix.csv")
    if predictions is not None:
        predictions.to_csv(folder / "predictions.csv", index=False)
        written.append("predictions.csv")
    if _reliability_diagram(evaluation, folder / "reliability.png"):
        written.append("reliability.png")
    return written


def _reliability_diagram(evaluation, path) -> bool:
    """Draw the reliability diagram with matplotlib's Agg canvas (no pyplot,
    no change of the session's backend); False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    confidence, accuracy, count = evaluation.bins
    centres = (np.arange(N_BINS) + 0.5) / N_BINS
    figure = Figure(figsize=(4.5, 5.2), layout="constrained")
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = count > 0
    top.bar(
        centres[filled],
        accuracy[filled],
        width=1 / N_BINS,
        edgecolor="#08519c",
        color="#9ecae1",
        label="observed",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.plot(confidence[filled], accuracy[filled], "o", color="#fd8d3c", ms=4)
    ece = evaluation.metrics.set_index("metric").value[f"ece_{N_BINS}_bins"]
    if evaluation.multilabel:
        top.set_ylabel("fraction positive")
        bottom.set_xlabel("predicted probability (every known label entry)")
    else:
        top.set_ylabel("accuracy")
        bottom.set_xlabel("confidence (top-label probability)")
    top.set_title(f"Reliability (ECE {ece:.3f})")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centres, count, width=1 / N_BINS, color="#bdbdbd", edgecolor="grey")
    bottom.set_ylabel("count")
    figure.savefig(os.fspath(path), dpi=120)
    return True
