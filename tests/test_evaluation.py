"""The scores of ``skdiffmic evaluate``."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from skdiffmic._evaluation import evaluate, write_evaluation


def test_single_label_scores_agree_with_scikit_learn(tmp_path):
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"])
    y = classes[np.arange(30) % 3]
    proba = rng.dirichlet(np.ones(3), size=30)
    result = evaluate(y, proba, classes, multilabel=False)
    metrics = result.metrics.set_index("metric").value
    pred = classes[proba.argmax(1)]
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(y, pred)
    )
    assert metrics["macro_roc_auc"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", labels=classes)
    )
    assert result.confusion.to_numpy().sum() == 30
    written = write_evaluation(result, tmp_path / "out")
    assert written[:3] == ["metrics.csv", "per_class.csv", "confusion_matrix.csv"]


def test_multilabel_scores_use_the_known_entries_only():
    Y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], dtype=float)
    proba = np.array([[0.9, 0.2], [0.1, 0.99], [0.6, 0.7], [0.4, 0.3]])
    result = evaluate(Y, proba, ["edema", "mass"], multilabel=True)
    per_label = result.per_class.set_index("label")
    assert per_label.n_known.tolist() == [4, 3]
    assert per_label.roc_auc.tolist() == [1.0, 1.0]
    metrics = result.metrics.set_index("metric").value
    assert metrics["exact_match_accuracy"] == 1.0 and metrics["n_known_entries"] == 7
    assert result.confusion is None
