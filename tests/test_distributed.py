"""A fit across two CPU processes (gloo) through ``device=["cpu", "cpu"]``."""

import pickle

import numpy as np
import pytest

from skdiffmic import DiffMICClassifier, presets
from skdiffmic._distributed import shard_order


def test_shard_order_splits_each_batch_between_the_ranks(monkeypatch):
    import skdiffmic._distributed as d

    order = np.arange(21)
    parts = []
    for rank in range(2):
        monkeypatch.setattr(d, "world", lambda rank=rank: (rank, 2))
        rows, batch = shard_order(order, 8)
        assert batch == 4
        parts.append(rows)
    assert not set(parts[0]) & set(parts[1])
    assert len(parts[0]) == len(parts[1]) == 10  # the last batch of 5: 2 each
    with pytest.raises(ValueError, match="batch_size=3 is too small"):
        shard_order(order, 3)


def test_two_cpu_processes_learn_as_one_does_and_the_caller_holds_the_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kw = dict(presets.SCRATCH, hidden_dim=32, n_timesteps=100, max_epochs=3)
    kw.update(guidance_epochs=1, batch_size=16, random_state=0)
    one = DiffMICClassifier(**kw).fit(X, y)
    two = DiffMICClassifier(**kw, device=["cpu", "cpu"]).fit(X, y)
    assert two.device == ["cpu", "cpu"] and len(two.history_) == 4
    assert two.score(X, y) >= one.score(X, y) - 0.05 and two.score(X, y) > 0.85
    again = pickle.loads(pickle.dumps(two))
    np.testing.assert_array_equal(again.predict_proba(X), two.predict_proba(X))
