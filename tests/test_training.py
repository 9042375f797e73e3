"""Validation and early stopping, interrupts, checkpoints and warm starts."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from sklearn.utils import check_random_state

import skdiffmic._batching as batching
import skdiffmic._training as training
from tests.conftest import tiny


def _lesions(n=40):
    from skdiffmic.datasets import make_lesions

    return make_lesions(n, image_size=16, random_state=0)


def test_early_stopping_stops_on_a_plateau():
    X, y = _lesions()
    clf = tiny(
        max_epochs=10,
        early_stopping=True,
        n_iter_no_change=2,
        validation_fraction=0.25,
        learning_rate=1e-12,
        guidance_learning_rate=1e-12,
    ).fit(X, y)
    # The weights barely move (only BatchNorm statistics do): the validation
    # score plateaus, and training stops two epochs after its best.
    assert clf.n_iter_ < clf.max_epochs
    assert clf.best_epoch_ == clf.n_iter_ - 2
    diffusion = [h for h in clf.history_ if h["stage"] == "diffusion"]
    assert len(diffusion) == clf.n_iter_
    assert all({"val_macro_f1", "val_accuracy"} <= set(h) for h in diffusion)
    scores = [h["val_macro_f1"] for h in diffusion]
    best = scores[clf.best_epoch_ - 1]
    assert all(s <= best + clf.tol for s in scores[clf.best_epoch_ :])
    assert best == max(scores)


def test_the_best_validation_epoch_is_restored():
    X, y = _lesions()
    clf = tiny(max_epochs=4, validation_fraction=0.3, augment=False).fit(X, y)
    diffusion = [h for h in clf.history_ if h["stage"] == "diffusion"]
    scores = [h["val_macro_f1"] for h in diffusion]
    assert clf.n_iter_ == 4
    assert clf.best_epoch_ == 1 + int(np.argmax(scores))
    # Recompute the held-out score with the returned model: it is the best one.
    train_seed = int(check_random_state(0).randint(0, 2**31 - 1, 3)[1])
    train, held_out = clf._validation_split(
        np.searchsorted(clf.classes_, y), train_seed
    )
    assert len(np.intersect1d(train, held_out)) == 0
    pred = clf.predict(X[held_out])
    score = f1_score(y[held_out], pred, average="macro", zero_division=0)
    assert score == pytest.approx(max(scores))


def test_no_validation_by_default_and_all_epochs_run():
    X, y = _lesions(24)
    clf = tiny(max_epochs=2).fit(X, y)
    assert clf.n_iter_ == clf.best_epoch_ == 2
    assert not any("val_macro_f1" in h for h in clf.history_)


def test_ctrl_c_keeps_the_last_completed_epoch(monkeypatch):
    X, y = _lesions(24)  # batch_size 8: 3 diffusion steps per epoch
    real = training.antithetic_timesteps
    calls = {"n": 0}

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "antithetic_timesteps", interrupt_in_epoch_two)
    with pytest.warns(UserWarning, match="interrupted after 1 diffusion epoch"):
        clf = tiny(max_epochs=5).fit(X, y)
    assert clf.n_iter_ == 1
    assert clf.predict(X).shape == (24,)


def test_ctrl_c_before_any_diffusion_epoch_propagates(monkeypatch):
    X, y = _lesions(24)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "antithetic_timesteps", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tiny(max_epochs=2).fit(X, y)


def _weights(clf):
    return {
        **{f"g.{k}": v for k, v in clf.guidance_model_.state_dict().items()},
        **{f"d.{k}": v for k, v in clf.denoiser_.state_dict().items()},
    }


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_crashed_fit_resumes_from_its_checkpoint_to_the_same_weights(
    tmp_path, monkeypatch, schedule
):
    X, y = _lesions(24)  # 3 steps per epoch
    settings = dict(max_epochs=3, guidance_epochs=1, guidance_schedule=schedule)
    uninterrupted = tiny(**settings, checkpoint_dir=tmp_path / "a").fit(X, y)

    real = training.antithetic_timesteps
    calls = {"n": 0}

    def crash_in_diffusion_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "antithetic_timesteps", crash_in_diffusion_epoch_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tiny(**settings, checkpoint_dir=tmp_path / "b").fit(X, y)
    monkeypatch.setattr(training, "antithetic_timesteps", real)
    resumed = tiny(**settings, checkpoint_dir=tmp_path / "b").fit(X, y)

    # The resumed run only did the epochs after the checkpoint.
    assert calls["n"] == 5
    expected, got = _weights(uninterrupted), _weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_array_equal(
        resumed.predict_proba(X), uninterrupted.predict_proba(X)
    )


def test_fits_with_other_settings_keep_their_own_checkpoints(tmp_path):
    X, y = _lesions(24)
    tiny(max_epochs=1, checkpoint_dir=tmp_path).fit(X, y)
    clf = tiny(max_epochs=2, checkpoint_dir=tmp_path).fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.history_) == 3  # 1 guidance + 2 diffusion
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("checkpoint-") for f in files)
    # Another fold of the same settings is other data: its own file again.
    tiny(max_epochs=1, checkpoint_dir=tmp_path).fit(X[:20], y[:20])
    assert len(list(tmp_path.iterdir())) == 3


def test_a_checkpoint_with_a_foreign_fingerprint_is_ignored(tmp_path):
    X, y = _lesions(24)
    tiny(max_epochs=1, checkpoint_dir=tmp_path).fit(X, y)
    (path,) = tmp_path.iterdir()
    saved = torch.load(path, weights_only=True)
    saved["fingerprint"] = "0" * 64
    torch.save(saved, path)
    with pytest.warns(UserWarning, match="other settings or data"):
        clf = tiny(max_epochs=1, checkpoint_dir=tmp_path).fit(X, y)
    assert clf.n_iter_ == 1


def test_warm_start_continues_counting():
    X, y = _lesions(24)
    clf = tiny(max_epochs=2).fit(X, y)
    before = {k: v.clone() for k, v in clf.denoiser_.state_dict().items()}
    clf.set_params(warm_start=True, max_epochs=1).fit(X, y)
    assert clf.n_iter_ == 3
    assert [h["stage"] for h in clf.history_] == ["guidance"] + ["diffusion"] * 3
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3, 4]
    after = clf.denoiser_.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="warm_start=True needs the same classes"):
        clf.fit(X, np.where(y == 0, "a", "b"))


def test_balanced_sampling_draws_classes_equally():
    counts = np.zeros(2)
    y = torch.tensor([0] * 90 + [1] * 10)
    weights = (1.0 / torch.bincount(y).double())[y]
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        order = batching.epoch_order(100, 32, generator, weights)
        counts += np.bincount(y[order].numpy(), minlength=2)
    assert abs(counts[0] / counts.sum() - 0.5) < 0.05
    X, labels = _lesions(24)
    assert tiny(max_epochs=1, balanced_sampling=True).fit(X, labels).n_iter_ == 1


@pytest.mark.slow
def test_compile_trains_the_same_model_shape_and_leaves_plain_modules():
    import pickle

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    clf = tiny(max_epochs=1, guidance_epochs=0, compile=True, batch_size=20)
    clf.fit(X, y)
    assert clf.guidance_model_._compiled_call_impl is None
    assert clf.denoiser_._compiled_call_impl is None
    assert clf.predict(X).shape == (40,)
    pickle.loads(pickle.dumps(clf))


def test_fit_temperature_minimises_the_log_loss():
    from skdiffmic._sampling import fit_temperature

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200)
    # Over-confident label vectors: right 75% of the time, with huge margins.
    right = rng.random(200) < 0.75
    label = np.where(right, truth, 1 - truth)
    y0 = (20.0 * np.eye(2)[label])[:, None, :]

    def log_loss(t):
        z = np.exp(y0[:, 0] / t - (y0[:, 0] / t).max(1, keepdims=True))
        p = z / z.sum(1, keepdims=True)
        return -np.mean(np.log(p[np.arange(200), truth]))

    t = fit_temperature(y0, truth)
    assert t > 1.0
    assert log_loss(t) < log_loss(1.0)


def test_the_temperature_is_fitted_on_the_hold_out_and_lowers_its_log_loss():
    X, y = _lesions()
    clf = tiny(max_epochs=2, validation_fraction=0.3).fit(X, y)
    assert clf.temperature_ > 0
    assert tiny(max_epochs=1).fit(X, y).temperature_ == 1.0
    train_seed = int(check_random_state(0).randint(0, 2**31 - 1, 3)[1])
    _, held_out = clf._validation_split(np.searchsorted(clf.classes_, y), train_seed)
    proba = clf.predict_proba(X[held_out])
    fitted_loss = -np.mean(np.log(proba[np.arange(len(held_out)), y[held_out]]))
    t = clf.temperature_
    clf.temperature_ = 1.0
    proba = clf.predict_proba(X[held_out])
    plain_loss = -np.mean(np.log(proba[np.arange(len(held_out)), y[held_out]]))
    clf.temperature_ = t
    assert fitted_loss <= plain_loss + 1e-9


class _RecordingSource:
    """A row source that logs which thread loads which rows."""

    def __init__(self, n, fail_at=None):
        self.X = torch.arange(n, dtype=torch.float32).view(n, 1)
        self.loads, self.fail_at = [], fail_at

    def __len__(self):
        return len(self.X)

    def load(self, indices):
        import threading

        indices = list(indices)
        if self.fail_at is not None and self.fail_at in indices:
            raise ValueError(f"X[{self.fail_at}]: cannot read")
        self.loads.append((indices, threading.current_thread().name))
        return self.X[indices]


def test_iter_batches_loads_ahead_in_the_background_in_order():
    source = _RecordingSource(10)
    order = np.array([3, 1, 4, 0, 9, 2, 6, 5, 8, 7])
    batches = list(
        batching.iter_batches(source, order, 4, lambda b: b, torch.device("cpu"))
    )
    assert [b.pos.tolist() for b in batches] == [[3, 1, 4, 0], [9, 2, 6, 5], [8, 7]]
    for batch in batches:
        np.testing.assert_array_equal(batch.x[:, 0].numpy(), batch.pos)
    assert all(name.startswith("skdiffmic-prefetch") for _, name in source.loads)


def test_iter_batches_reports_a_bad_row_of_a_prefetched_batch():
    source = _RecordingSource(10, fail_at=6)
    batches = batching.iter_batches(
        source, np.arange(10), 4, lambda b: b, torch.device("cpu")
    )
    assert next(batches).pos.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"X\[6\]: cannot read"):
        next(batches)


def copy_state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_guidance_schedule_cosine_decays_the_dcg_rate_to_zero(tmp_path, monkeypatch):
    X, y = _lesions(24)  # 3 steps per epoch, 1 + 2 epochs
    settings = dict(max_epochs=2, guidance_epochs=1, guidance_learning_rate=1e-3)

    def dcg_rate(directory):
        (path,) = directory.glob("checkpoint-*.pt")
        return torch.load(path, weights_only=False)["guidance_opt"]["param_groups"][0][
            "lr"
        ]

    # Stopped in the first diffusion batch: the checkpoint of the guidance
    # epoch holds the rate after 3 of the 9 steps of both stages.
    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(training, "antithetic_timesteps", crash)
    with pytest.raises(RuntimeError):
        tiny(**settings, guidance_schedule="cosine", checkpoint_dir=tmp_path / "s").fit(
            X, y
        )
    monkeypatch.undo()
    # Warm-up of 1 step, then 0.5 (1 + cos(pi (3 - 1) / (9 - 1))).
    assert dcg_rate(tmp_path / "s") == pytest.approx(
        1e-3 * 0.5 * (1 + np.cos(np.pi / 4))
    )

    fits = {}
    for schedule in ("constant", "cosine"):
        directory = tmp_path / schedule
        fits[schedule] = tiny(
            **settings, guidance_schedule=schedule, checkpoint_dir=directory
        ).fit(X, y)
        # Cosine: zero after the last of the 9 steps; constant: unchanged.
        expected = 1e-3 if schedule == "constant" else 0.0
        assert dcg_rate(directory) == pytest.approx(expected, abs=1e-12)
    assert not np.allclose(
        fits["cosine"].predict_prior_proba(X), fits["constant"].predict_prior_proba(X)
    )
    path = tmp_path / "m.safetensors"
    fits["cosine"].save(path)
    loaded = type(fits["cosine"]).load(path)
    assert loaded.guidance_schedule == "cosine"
    np.testing.assert_array_equal(
        loaded.predict_proba(X), fits["cosine"].predict_proba(X)
    )
    with pytest.raises(ValueError, match="guidance_schedule"):
        tiny(guidance_schedule="linear").fit(X, y)
