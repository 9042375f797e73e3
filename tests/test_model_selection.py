"""MultilabelStratifiedGroupKFold: grouped folds, stratified on every label."""

import doctest

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import GroupKFold, cross_val_score

import skdiffmic.model_selection
from skdiffmic.model_selection import MultilabelStratifiedGroupKFold

PREVALENCE = np.array([0.03, 0.08, 0.15, 0.3, 0.5])


def grouped_labels(seed=0, n=300, n_groups=100):
    """Labels that cluster by patient, five of them from rare to common."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    patient_has = rng.random((n_groups, len(PREVALENCE))) < 1.5 * PREVALENCE
    Y = (rng.random((n, len(PREVALENCE))) < 0.7) & patient_has[groups]
    return Y.astype(float), groups


def test_folds_keep_groups_together_and_cover_every_row_once():
    Y, groups = grouped_labels()
    cv = MultilabelStratifiedGroupKFold(5, shuffle=True, random_state=0)
    tested = []
    for train, test in cv.split(np.zeros(len(Y)), Y, groups):
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(Y)
        tested.extend(test)
    assert sorted(tested) == list(range(len(Y)))
    assert cv.get_n_splits() == 5


def share_imbalance(cv, Y, groups):
    """Per label: the largest gap between a fold's share of its positives and 1/k."""
    shares = [Y[test].sum(0) / Y.sum(0) for _, test in cv.split(Y, Y, groups)]
    return np.abs(np.array(shares) - 1 / cv.get_n_splits()).max(0)


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_positives_of_every_label_are_spread_evenly(seed):
    Y, groups = grouped_labels(seed)
    assert (Y.sum(0) > 0).all()
    cv = MultilabelStratifiedGroupKFold(5, shuffle=True, random_state=seed)
    ours = share_imbalance(cv, Y, groups)
    plain = share_imbalance(GroupKFold(5, shuffle=True, random_state=seed), Y, groups)
    common = Y.sum(0) >= 40
    # The common labels within 3 points of the even 20 %, those with 10 or
    # more positives within 10, the rarest (4 to 10 positives, clustered by
    # patient) within what that lumpiness allows; better than GroupKFold.
    assert (ours[common] <= 0.03).all()
    assert (ours[Y.sum(0) >= 10] <= 0.1).all()
    assert (ours <= 0.4).all()
    assert ours.mean() <= plain.mean()
    assert ours[common].mean() < plain[common].mean()
    sizes = [len(test) for _, test in cv.split(Y, Y, groups)]
    assert max(sizes) - min(sizes) <= 0.1 * len(Y)


def test_same_random_state_same_folds_and_shuffle_changes_them():
    Y, groups = grouped_labels()

    def folds(**kwargs):
        cv = MultilabelStratifiedGroupKFold(4, **kwargs)
        return [test.tolist() for _, test in cv.split(Y, Y, groups)]

    assert folds(shuffle=True, random_state=3) == folds(shuffle=True, random_state=3)
    assert folds(shuffle=True, random_state=3) != folds(shuffle=True, random_state=4)
    assert folds() == folds()


def test_unknown_entries_count_as_neither_positive_nor_negative():
    Y, groups = grouped_labels()
    unknown = np.random.default_rng(0).random(Y.shape) < 0.2
    Y_nan = np.where(unknown, np.nan, Y)
    Y_zero = np.where(unknown, 0.0, Y)
    cv = MultilabelStratifiedGroupKFold(5, shuffle=True, random_state=0)
    with_nan = [test.tolist() for _, test in cv.split(Y, Y_nan, groups)]
    assert with_nan == [test.tolist() for _, test in cv.split(Y, Y_zero, groups)]
    assert (share_imbalance(cv, Y_zero, groups)[Y_zero.sum(0) >= 40] <= 0.03).all()


def test_takes_a_dataframe_and_works_in_cross_val_score():
    Y, groups = grouped_labels()
    frame = pd.DataFrame(Y.astype(int), columns=list("abcde"))
    cv = MultilabelStratifiedGroupKFold(3)
    from_frame = [test.tolist() for _, test in cv.split(frame, frame, groups)]
    assert from_frame == [test.tolist() for _, test in cv.split(Y, Y, groups)]
    X = np.arange(len(Y), dtype=float)[:, None]
    scores = cross_val_score(
        DummyClassifier(strategy="most_frequent"), X, frame, groups=groups, cv=cv
    )
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_repr_and_parameters():
    cv = MultilabelStratifiedGroupKFold(3, shuffle=True, random_state=0)
    assert repr(cv) == (
        "MultilabelStratifiedGroupKFold(n_splits=3, random_state=0, shuffle=True)"
    )
    with pytest.raises(ValueError, match="shuffle"):
        MultilabelStratifiedGroupKFold(3, random_state=0)
    with pytest.raises(ValueError, match="n_splits=2 or more"):
        MultilabelStratifiedGroupKFold(1)


@pytest.mark.parametrize(
    "y, groups, match",
    [
        (np.ones((6, 2)), None, "needs groups"),
        (np.ones((6, 2)), [0, 0, 1, 1, 1, 1], "greater than the number of groups"),
        (np.ones(6), [0, 1, 2, 3, 4, 5], "2-D"),
        (np.ones((5, 2)), [0, 1, 2, 3, 4, 5], "same length; got X 6, y 5"),
        (np.ones((6, 2)), [0, 1, 2, 3, 4], "groups 5"),
        (np.full((6, 2), 2.0), [0, 1, 2, 3, 4, 5], "0, 1 or NaN"),
        (None, [0, 1, 2, 3, 4, 5], "needs y"),
    ],
)
def test_bad_inputs_are_named(y, groups, match):
    cv = MultilabelStratifiedGroupKFold(3)
    with pytest.raises(ValueError, match=match):
        next(cv.split(np.zeros((6, 1)), y, groups))


def test_docstring_examples_run():
    result = doctest.testmod(skdiffmic.model_selection)
    assert result.attempted > 0 and result.failed == 0
