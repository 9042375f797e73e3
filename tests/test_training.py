"""Validation, early stopping, restoring the best epoch, interrupts."""

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.utils import check_random_state

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
