"""Per-label ROC AUC over the known entries of a label set.

The calibration metrics of skdiffmic.metrics are tested in test_uncertainty.py.
"""

import doctest

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import skdiffmic.metrics
from skdiffmic.metrics import label_roc_auc, macro_label_roc_auc


def label_set(seed=0, n=60, n_labels=3):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, n_labels)) < 0.4).astype(float)
    scores = np.clip(0.6 * Y + 0.7 * rng.random((n, n_labels)), 0, 1)
    return Y, scores


def test_without_unknown_entries_it_is_scikit_learns_roc_auc():
    Y, scores = label_set()
    auc = label_roc_auc(Y, scores)
    expected = roc_auc_score(Y, scores, average=None)
    np.testing.assert_allclose(auc.to_numpy(), expected)
    assert list(auc.index) == [0, 1, 2]
    assert macro_label_roc_auc(Y, scores) == pytest.approx(roc_auc_score(Y, scores))


def test_unknown_entries_are_left_out_of_their_label_only():
    Y, scores = label_set()
    unknown = np.zeros_like(Y, dtype=bool)
    unknown[:20, 1] = True
    Y_nan = np.where(unknown, np.nan, Y)
    auc = label_roc_auc(Y_nan, scores)
    assert auc[1] == pytest.approx(roc_auc_score(Y[20:, 1], scores[20:, 1]))
    assert auc[0] == pytest.approx(roc_auc_score(Y[:, 0], scores[:, 0]))
    assert auc[1] != pytest.approx(roc_auc_score(Y[:, 1], scores[:, 1]))


def test_a_label_with_one_known_class_is_nan_and_left_out_of_the_mean():
    Y, scores = label_set()
    Y[:, 2] = np.where(Y[:, 2] == 1, np.nan, 0.0)  # only negatives known
    auc = label_roc_auc(Y, scores, label_names=["a", "b", "c"])
    assert list(auc.index) == ["a", "b", "c"] and np.isnan(auc["c"])
    assert macro_label_roc_auc(Y, scores) == pytest.approx(auc[["a", "b"]].mean())
    with pytest.raises(ValueError, match="No label has both"):
        macro_label_roc_auc(np.where(Y == 1, np.nan, Y), scores)


def test_dataframe_columns_name_the_labels():
    Y, scores = label_set()
    frame = pd.DataFrame(Y, columns=["Effusion", "Nodule", "Edema"])
    auc = label_roc_auc(frame, scores)
    assert list(auc.index) == ["Effusion", "Nodule", "Edema"]
    np.testing.assert_allclose(auc.to_numpy(), label_roc_auc(Y, scores).to_numpy())


@pytest.mark.parametrize(
    "Y, scores, kwargs, match",
    [
        (np.ones((4, 2)), np.ones((4, 3)), {}, "same shape"),
        (np.full((4, 2), 2.0), np.ones((4, 2)), {}, "0, 1 or NaN"),
        (np.ones((4, 2)), np.full((4, 2), np.nan), {}, "Y_score"),
        (np.ones((4, 2)), np.ones((4, 2)), {"label_names": ["a"]}, "1 names"),
    ],
)
def test_bad_inputs(Y, scores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        label_roc_auc(Y, scores, **kwargs)


def test_docstring_examples_run():
    result = doctest.testmod(skdiffmic.metrics)
    assert result.attempted > 0 and result.failed == 0
