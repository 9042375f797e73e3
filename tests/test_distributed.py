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


def _lesions(n=24):
    from skdiffmic.datasets import make_lesions

    return make_lesions(n, image_size=16, random_state=0)


class DiesOnRankOne(DiffMICClassifier):
    """A DiffMICClassifier whose rank-1 worker kills itself (SIGKILL, as the
    out-of-memory killer does) at the 5th diffusion step: in the second
    diffusion epoch, after rank 0 has checkpointed the first."""

    def fit(self, X, y):
        import os
        import signal

        import torch.distributed as dist

        import skdiffmic._training as training

        if dist.is_initialized() and dist.get_rank() == 1:
            real, calls = training.antithetic_timesteps, [0]

            def dying(*args, **kwargs):
                calls[0] += 1
                if calls[0] == 5:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)

            training.antithetic_timesteps = dying
        return super().fit(X, y)


def _children():
    """This process's live children, but multiprocessing's resource tracker
    and fork server (one each per interpreter, started with the first
    distributed fit, idle between fits): the workers."""
    import psutil

    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.is_running()
        and not any(
            name in " ".join(p.cmdline()) for name in ("resource_tracker", "forkserver")
        )
    ]


def test_a_killed_worker_is_named_and_the_checkpointed_fit_resumes(tmp_path):
    from tests.conftest import TINY

    X, y = _lesions()  # 24 images, global batch 8: 3 steps an epoch
    kw = dict(TINY, max_epochs=3, device=["cpu", "cpu"])
    whole = DiffMICClassifier(**kw, checkpoint_dir=tmp_path / "a").fit(X, y)

    with pytest.raises(RuntimeError, match=r"worker 1 \(device 'cpu'\) was killed"):
        DiesOnRankOne(**kw, checkpoint_dir=tmp_path / "b").fit(X, y)
    assert _children() == []  # the surviving rank was stopped, nothing left
    assert len(list((tmp_path / "b").iterdir())) == 1  # rank 0's checkpoint

    resumed = DiffMICClassifier(**kw, checkpoint_dir=tmp_path / "b").fit(X, y)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.predict_proba(X), whole.predict_proba(X))


def test_grid_search_over_a_two_process_fit_and_the_same_seed_twice(tmp_path):
    from sklearn.model_selection import GridSearchCV

    from tests.conftest import TINY

    X, y = _lesions(32)
    model = DiffMICClassifier(**TINY, device=["cpu", "cpu"])
    one_split = [(np.arange(0, 32, 2), np.arange(1, 32, 2))]
    search = GridSearchCV(model, {"max_epochs": [1]}, cv=one_split).fit(X, y)
    assert search.best_estimator_.device == ["cpu", "cpu"]
    assert 0.0 <= search.best_score_ <= 1.0 and _children() == []

    # The refit, and the same settings fitted again: the same predictions.
    refit = {**TINY, "max_epochs": 1}
    again = DiffMICClassifier(**refit, device=["cpu", "cpu"]).fit(X, y)
    expected = search.best_estimator_.predict_proba(X)
    np.testing.assert_array_equal(again.predict_proba(X), expected)
    again.save(tmp_path / "model.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "model.safetensors")
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)


def test_the_cnn_baseline_fits_on_two_processes_too():
    from skdiffmic.baselines import TimmClassifier

    X, y = _lesions(32)
    kw = dict(backbone="test_resnet", pretrained=False, image_size=16, max_epochs=2)
    kw.update(batch_size=8)
    one = TimmClassifier(**kw, random_state=0).fit(X, y)
    two = TimmClassifier(**kw, random_state=0, device=["cpu", "cpu"]).fit(X, y)
    assert len(two.history_) == len(one.history_) == 2 and _children() == []
    assert two.predict_proba(X).shape == (32, 2)
    again = pickle.loads(pickle.dumps(two))
    np.testing.assert_array_equal(again.predict_proba(X), two.predict_proba(X))


def test_a_script_without_the_main_guard_is_told_what_to_add(tmp_path, monkeypatch):
    """Each worker re-imports the caller's main module; one that fits at its
    top level starts a fit in every worker, which multiprocessing refuses
    while the worker bootstraps. Here this process's main module is made
    such a script (as ``python unguarded.py`` would make it)."""
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        "from skdiffmic import DiffMICClassifier\n"
        "X, y = np.zeros((8, 2)), np.arange(8) % 2\n"
        "DiffMICClassifier(max_epochs=1, device=['cpu']).fit(X, y)\n"
    )
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__spec__", None)
    monkeypatch.setattr(main, "__file__", str(script), raising=False)
    X, y = np.zeros((8, 2)), np.arange(8) % 2
    with pytest.raises(RuntimeError) as error:
        DiffMICClassifier(max_epochs=1, device=["cpu"]).fit(X, y)
    message = str(error.value)
    assert "worker 0 (device 'cpu') exited with code 1 before it started" in message
    assert message.endswith('under `if __name__ == "__main__":`.')
    assert _children() == []
