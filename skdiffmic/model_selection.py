"""Cross-validation splitters for grouped multi-label image sets.

Chest X-ray sets are multi-label and hold many images per patient. A fold
must keep a patient's images on one side, and rare findings should still be
spread evenly over the folds: scikit-learn's
:class:`~sklearn.model_selection.StratifiedGroupKFold` takes only one label
per image and :class:`~sklearn.model_selection.GroupKFold` ignores the labels.
:class:`MultilabelStratifiedGroupKFold` does both.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.model_selection._split import GroupsConsumerMixin, _BaseKFold
from sklearn.utils import check_random_state
from sklearn.utils.validation import _num_samples, check_array

__all__ = ["MultilabelStratifiedGroupKFold"]


def _indicator(y) -> np.ndarray:
    """``y`` as a float (n, n_labels) matrix of 0, 1 and NaN (unknown)."""
    if y is None:
        raise ValueError(
            "MultilabelStratifiedGroupKFold needs y, the (n_samples, n_labels) "
            "indicator matrix of the labels."
        )
    if sparse.issparse(y):
        y = y.toarray()
    Y = np.asarray(y)
    if Y.ndim != 2:
        raise ValueError(
            "y must be a 2-D (n_samples, n_labels) indicator matrix; got an "
            f"array of shape {Y.shape}."
        )
    Y = check_array(Y, dtype=np.float64, ensure_all_finite="allow-nan", input_name="y")
    known = Y[~np.isnan(Y)]
    if not np.isin(known, (0.0, 1.0)).all():
        raise ValueError(
            "y must hold 0, 1 or NaN (unknown); got "
            f"{np.unique(known[~np.isin(known, (0.0, 1.0))])[:5].tolist()}."
        )
    return Y


class MultilabelStratifiedGroupKFold(GroupsConsumerMixin, _BaseKFold):
    """K-fold of non-overlapping groups, stratified on every label of a label set.

    Each group (a patient, a lesion) lands in exactly one test fold, and the
    known positives of each label are spread over the folds as evenly as the
    groups allow. The groups are assigned greedily, in the manner of the
    iterative stratification of Sechidis et al. (2011): the label with the
    fewest positives still unassigned goes first, its groups largest first;
    each group goes to the fold that lacks most of that label's positives,
    ties going to the fold that lacks most images. Groups with no positive
    label fill the folds by size. NaN entries of ``y`` (unknown labels) count
    as neither positive nor negative.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2 and at most the number of groups.
    shuffle : bool, default=False
        Whether to shuffle the groups before assigning them, which changes
        how ties are broken (the folds stay stratified). Without shuffling,
        ties go to the group that comes first in sorted order.
    random_state : int, RandomState instance or None, default=None
        The shuffle of the groups. Only used when ``shuffle`` is True.

    See Also
    --------
    sklearn.model_selection.StratifiedGroupKFold : The same for one label per
        sample.
    sklearn.model_selection.GroupKFold : Groups without stratification.

    Examples
    --------
    >>> import numpy as np
    >>> from skdiffmic.model_selection import MultilabelStratifiedGroupKFold
    >>> Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [0, 0]])
    >>> patients = np.array([0, 0, 1, 1, 2, 3])
    >>> cv = MultilabelStratifiedGroupKFold(n_splits=2)
    >>> for train, test in cv.split(np.zeros(6), Y, patients):
    ...     print(patients[test], Y[test].sum(axis=0))
    [0 0 1 1] [2 2]
    [2 3] [1 1]
    """

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None):
        super().__init__(n_splits, shuffle=shuffle, random_state=random_state)

    def split(self, X, y, groups=None):
        """Generate indices to split data into training and test set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; only its length is used.
        y : array-like of shape (n_samples, n_labels)
            The 0/1 indicator matrix of the labels (an array, a sparse matrix
            or a DataFrame); NaN marks an unknown entry.
        groups : array-like of shape (n_samples,)
            The group of each sample (a patient id); required.

        Yields
        ------
        train : ndarray
            The training set indices for that split.
        test : ndarray
            The testing set indices for that split.
        """
        if groups is None:
            raise ValueError(
                "MultilabelStratifiedGroupKFold needs groups (a patient id per "
                "sample): split(X, y, groups)."
            )
        lengths = {
            name: _num_samples(value)
            for name, value in (("X", X), ("y", y), ("groups", groups))
            if value is not None
        }
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "X, y and groups must have the same length; got "
                + ", ".join(f"{name} {n}" for name, n in lengths.items())
                + "."
            )
        return super().split(X, y, groups)

    def _iter_test_indices(self, X, y, groups):
        Y = _indicator(y)
        groups = check_array(groups, input_name="groups", ensure_2d=False, dtype=None)
        unique, group_of = np.unique(groups, return_inverse=True)
        if len(unique) < self.n_splits:
            raise ValueError(
                f"Cannot have n_splits={self.n_splits} greater than the number "
                f"of groups: {len(unique)}."
            )
        fold_of_group = self._assign(Y, group_of.ravel(), len(unique))
        fold_of_sample = fold_of_group[group_of.ravel()]
        for fold in range(self.n_splits):
            yield np.flatnonzero(fold_of_sample == fold)

    def _assign(self, Y, group_of, n_groups) -> np.ndarray:
        """The fold of each group, by greedy iterative stratification."""
        n_folds = self.n_splits
        positives = np.zeros((n_groups, Y.shape[1]))
        np.add.at(positives, group_of, Y == 1)  # NaN == 1 is False: unknown
        size = np.bincount(group_of, minlength=n_groups).astype(float)
        order = np.arange(n_groups)
        if self.shuffle:
            order = check_random_state(self.random_state).permutation(n_groups)
        # Later sorts are stable, so the (shuffled) order breaks their ties.
        positives, size = positives[order], size[order]
        need = np.tile(positives.sum(0) / n_folds, (n_folds, 1))
        room = np.full(n_folds, size.sum() / n_folds)
        fold = np.full(n_groups, -1)
        left = positives.copy()  # positives of the groups not yet assigned
        n_left, empty = n_groups, np.ones(n_folds, dtype=bool)

        def place(g, label):
            nonlocal n_left
            # Keep every fold non-empty: the last groups go to the empty folds.
            allowed = empty if n_left <= empty.sum() else np.ones(n_folds, bool)
            by_label = need[:, label] if label is not None else np.zeros(n_folds)
            keys = np.where(allowed, 0, 1), -by_label, -room
            best = np.lexsort(keys[::-1])[0]
            fold[g] = best
            need[best] -= positives[g]
            room[best] -= size[g]
            empty[best] = False
            left[g] = 0
            n_left -= 1

        while True:
            remaining = left.sum(0)
            if not remaining.any():
                break
            label = int(np.argmin(np.where(remaining > 0, remaining, np.inf)))
            members = np.flatnonzero(left[:, label] > 0)
            by_size = np.lexsort((-size[members], -left[members, label]))
            for g in members[by_size]:
                place(g, label)
        rest = np.flatnonzero(fold < 0)
        for g in rest[np.argsort(-size[rest], kind="stable")]:
            place(g, None)
        result = np.empty(n_groups, dtype=np.int64)
        result[order] = fold
        return result
