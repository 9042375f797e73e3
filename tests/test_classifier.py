import io
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

from skdiffmic import DiffMICClassifier
from skdiffmic._diffusion import PREDICTION_TYPES
from tests.conftest import tiny


def test_fit_predict_shapes_and_labels(images, fitted):
    X, y = images
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)
    pred = fitted.predict(X)
    assert pred.dtype == fitted.classes_.dtype
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    assert set(pred) <= set(y)
    np.testing.assert_array_equal(fitted.classes_, ["benign", "malignant", "naevus"])
    assert 0 <= fitted.score(X, y) <= 1


def test_fitted_attributes(fitted):
    assert fitted.image_shape_ == (16, 16, 3)
    assert fitted.image_size_ == 16 and fitted.crop_size_ == 4
    assert fitted.n_iter_ == 2
    stages = [r["stage"] for r in fitted.history_]
    assert stages == ["guidance", "diffusion", "diffusion"]
    assert all(np.isfinite(r["guidance_loss"]) for r in fitted.history_)
    assert fitted.history_[-1]["mmd_loss"] > 0  # dual guidance trains the MMD paths


def test_integer_labels_grayscale_and_float_images():
    rng = np.random.default_rng(1)
    X = rng.random((12, 20, 20))
    y = np.array([3, 7] * 6)
    clf = tiny(max_epochs=1).fit(X, y)
    assert clf.image_shape_ == (20, 20, 1)
    assert set(clf.predict(X)) <= {3, 7}
    assert clf.predict(X).dtype.kind == "i"


def test_predictions_are_reproducible_with_random_state(images):
    X, y = images
    p1 = tiny().fit(X, y).predict_proba(X)
    p2 = tiny().fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    p3 = tiny(random_state=1).fit(X, y).predict_proba(X)
    assert not np.allclose(p1, p3)


def test_fit_leaves_the_global_torch_rng_alone(images):
    X, y = images
    torch.manual_seed(123)
    before = torch.get_rng_state()
    tiny(max_epochs=1).fit(X, y)
    assert torch.equal(before, torch.get_rng_state())


def test_predictions_do_not_depend_on_order_or_batch(images, fitted):
    X, _ = images
    full = fitted.predict_proba(X)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(fitted.predict_proba(X[order]), full[order], atol=1e-5)
    pieces = np.vstack(
        [fitted.predict_proba(X[i : i + 5]) for i in range(0, len(X), 5)]
    )
    np.testing.assert_allclose(pieces, full, atol=1e-5)


def test_ddpm_sampler_and_step_count(images, fitted):
    X, _ = images
    clf = clone(fitted).set_params(sampler="ddpm")
    clf.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    assert clf._n_head_evaluations() == 100
    proba = clf.predict_proba(X[:4])
    np.testing.assert_allclose(proba.sum(1), 1.0)
    fitted_steps = fitted._n_head_evaluations()
    assert fitted_steps == 10


def test_zero_mmd_weight_trains_the_fused_path_alone(images):
    X, y = images
    clf = tiny(mmd_weight=0.0, max_epochs=1).fit(X, y)
    assert clf.history_[-1]["mmd_loss"] == 0.0
    record = clf.history_[-1]
    assert record["diffusion_loss"] == pytest.approx(record["denoiser_loss"])
    assert clf.predict(X).shape == (len(X),)


def test_prior_probabilities(images, fitted):
    X, _ = images
    for granularity in ("fused", "global", "local"):
        proba = fitted.predict_prior_proba(X, granularity=granularity)
        assert proba.shape == (len(X), 3)
        np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="granularity"):
        fitted.predict_prior_proba(X, granularity="medium")


def test_pickle_and_joblib_round_trip(images, fitted):
    X, _ = images
    expected = fitted.predict_proba(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), expected)
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(joblib.load(buffer).predict_proba(X), expected)


def test_pickled_state_holds_only_cpu_tensors(fitted):
    state = fitted.__getstate__()
    for name in ("guidance_model_", "denoiser_"):
        assert all(p.device.type == "cpu" for p in state[name].state_dict().values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_fitted_on_cuda_unpickles_on_cpu(images):
    X, y = images
    clf = tiny(device="cuda").fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    for name in ("guidance_model_", "denoiser_"):
        assert all(p.device.type == "cpu" for p in getattr(restored, name).parameters())
    restored.set_params(device="cpu")
    assert restored.predict(X).shape == (len(X),)


def test_verbose_shows_progress_and_silent_by_default(images, capsys):
    X, y = images
    tiny(max_epochs=1, guidance_epochs=0).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    tiny(max_epochs=1, guidance_epochs=1, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    assert "DiffMIC" in err and "loss=" in err and "2/2" in err


def test_clone_gridsearch_cross_val_and_pipeline(images):
    X, y = images
    base = tiny(max_epochs=1)
    cloned = clone(base)
    assert cloned.get_params() == base.get_params()

    search = GridSearchCV(base, {"mmd_weight": [0.1, 0.5]}, cv=2).fit(X, y)
    assert search.best_params_["mmd_weight"] in (0.1, 0.5)
    assert len(search.cv_results_["mean_test_score"]) == 2

    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    scores = cross_val_score(base, X, y, cv=cv)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))

    pipe = make_pipeline(FunctionTransformer(lambda a: a / 255.0), base).fit(X, y)
    assert set(pipe.predict(X)) <= set(y)


def test_soft_voting_averages_the_fits_of_several_seeds(images):
    # A seed ensemble (the user guide's "Averaging fits"): scikit-learn's
    # soft vote over DiffMIC fits that differ only in their random_state.
    X, y = images
    members = [(f"seed{s}", tiny(max_epochs=1, random_state=s)) for s in (0, 1)]
    vote = VotingClassifier(members, voting="soft").fit(X, y)
    fitted = [member.predict_proba(X) for member in vote.estimators_]
    assert not np.allclose(fitted[0], fitted[1])  # two different fits
    np.testing.assert_allclose(vote.predict_proba(X), np.mean(fitted, axis=0))
    assert set(vote.predict(X)) <= set(y)


def test_center_correction_removes_the_training_rows_mean_correction(images):
    X, y = images
    clf = tiny(max_epochs=2).fit(X, y)
    # What fit measured: the mean of log y_0 - log p over its training rows
    # (all of X: no validation hold-out), centred over the classes.
    raw = clf.predict_proba(X)
    lean = (np.log(raw) - np.log(clf.predict_prior_proba(X))).mean(axis=0)
    np.testing.assert_allclose(clf.correction_offset_, lean - lean.mean(), atol=1e-6)
    assert np.abs(clf.correction_offset_).max() > 1e-4  # something to remove
    # At prediction, switched by set_params without a refit.
    centred = clf.set_params(center_correction=True).predict_proba(X)
    logits = np.log(raw) - clf.correction_offset_
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(centred, expected, atol=1e-9)
    # Its mean correction over the training rows is then nil.
    rest = (np.log(centred) - np.log(clf.predict_prior_proba(X))).mean(axis=0)
    np.testing.assert_allclose(rest - rest.mean(), 0, atol=1e-6)
    clf.set_params(center_correction=False)
    np.testing.assert_array_equal(clf.predict_proba(X), raw)
    # Validated epochs score uncentred (the offset comes after training),
    # and a second fit measures its own offset.
    held = tiny(max_epochs=2, validation_fraction=0.25, center_correction=True)
    held.fit(X, y)
    assert "val_macro_f1" in held.history_[-1]
    first = held.correction_offset_.copy()
    held.set_params(random_state=5).fit(X, y)
    assert not np.allclose(held.correction_offset_, first)


def test_invalid_parameters_are_named():
    X = np.zeros((4, 16, 16), dtype=np.uint8)
    y = [0, 1, 0, 1]
    with pytest.raises(InvalidParameterError, match="sampler"):
        DiffMICClassifier(sampler="euler").fit(X, y)
    with pytest.raises(InvalidParameterError, match="mmd_weight"):
        DiffMICClassifier(mmd_weight=-1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="prediction_type"):
        DiffMICClassifier(prediction_type="score").fit(X, y)
    with pytest.raises(InvalidParameterError, match="denoiser_init"):
        DiffMICClassifier(denoiser_init="imagenet").fit(X, y)
    with pytest.raises(ValueError, match="Unknown timm backbone"):
        tiny(backbone="no_such_net").fit(X, y)
    with pytest.raises(FileNotFoundError, match="weights file"):
        tiny(pretrained="/nonexistent/weights.pth").fit(X, y)


def test_pretrained_weights_from_a_local_file(tmp_path, images):
    import timm

    X, y = images
    source = timm.create_model("test_resnet")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    clf = tiny(
        pretrained=str(path),
        max_epochs=1,
        guidance_epochs=0,
        learning_rate=1e-12,
        guidance_learning_rate=1e-12,
    ).fit(X, y)
    # With a vanishing learning rate the encoders still hold the file's weights
    # (the denoiser's through its EMA of nearly constant weights).
    expected = source.state_dict()["conv1.0.weight"]
    dcg = clf.guidance_model_
    for encoder in (clf.denoiser_.encoder, dcg.local_encoder, dcg.global_encoder):
        loaded = encoder.state_dict()["conv1.0.weight"]
        torch.testing.assert_close(loaded, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(
        tiny(max_epochs=1).fit(X, y).denoiser_.encoder.state_dict()["conv1.0.weight"],
        expected,
    )


def test_class_weight_weighs_the_guidance_loss_as_expected(monkeypatch):
    """On an imbalanced toy set, "balanced" weighs the rare class up in the CE."""
    import skdiffmic._training as training

    seen = []
    real = training.classification_loss

    def spy(logits, target, weight=None, **kwargs):
        seen.append(None if weight is None else weight.cpu().numpy().copy())
        return real(logits, target, weight, **kwargs)

    monkeypatch.setattr(training, "classification_loss", spy)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    y = np.array(["common"] * 15 + ["rare"] * 5)
    tiny(max_epochs=1, class_weight="balanced").fit(X, y)
    # n / (n_classes * count): 20 / (2 * 15) and 20 / (2 * 5).
    np.testing.assert_allclose(seen[0], [20 / 30, 2.0], rtol=1e-6)
    seen.clear()
    tiny(max_epochs=1, class_weight={"rare": 5.0}).fit(X, y)
    np.testing.assert_allclose(seen[0], [1.0, 5.0])
    seen.clear()
    tiny(max_epochs=1).fit(X, y)
    assert seen[0] is None


def test_weighted_mse_is_a_class_weighted_mean():
    from skdiffmic._training import row_weights, weighted_mean

    def _weighted_mse(pred, target, weights):
        return weighted_mean((pred - target).pow(2).mean(-1), weights)

    pred, target = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [2.0, 2.0], [0, 0]])
    labels = torch.tensor([0, 1, 1])
    weights = row_weights(labels, torch.tensor([3.0, 1.0]))
    expected = (3 * 1.0 + 1 * 4.0 + 1 * 0.0) / 5
    assert _weighted_mse(pred, target, weights).item() == pytest.approx(expected)
    assert _weighted_mse(pred, target, None).item() == pytest.approx(5 / 3)
    assert row_weights(labels, None) is None


def test_many_chains_per_image(images, fitted):
    X, _ = images
    samples = fitted.sample_proba(X[:5], n_samples=7)
    assert samples.shape == (5, 7, 3)
    np.testing.assert_allclose(samples.sum(-1), 1.0)
    # Reproducible, and independent of the batch an image comes in.
    np.testing.assert_array_equal(samples, fitted.sample_proba(X[:5], n_samples=7))
    np.testing.assert_allclose(
        fitted.sample_proba(X[3:4], n_samples=7)[0], samples[3], atol=1e-6
    )
    # The chains differ (they start from different noise) ...
    assert np.ptp(samples, axis=1).max() > 0
    default = fitted.n_samples
    try:
        # ... the first chain is the single-chain prediction ...
        one = fitted.set_params(n_samples=1).predict_proba(X[:5])
        np.testing.assert_allclose(samples[:, 0], one, atol=1e-6)
        # ... and predict_proba averages the chains.
        several = fitted.set_params(n_samples=7)
        proba = several.predict_proba(X[:5])
        np.testing.assert_allclose(proba, samples.mean(1), atol=1e-6)
        np.testing.assert_array_equal(
            several.predict(X[:5]), fitted.classes_[proba.argmax(1)]
        )
    finally:
        fitted.set_params(n_samples=default)


def test_stochastic_and_deterministic_ddim_and_ddpm_chains(images, fitted):
    X, _ = images
    saved = {k: fitted.get_params()[k] for k in ("eta", "sampler")}
    try:
        for params in ({"eta": 1.0}, {"eta": 0.0}, {"sampler": "ddpm"}):
            fitted.set_params(**params)
            samples = fitted.sample_proba(X[:3], n_samples=4)
            assert samples.shape == (3, 4, 3)
            np.testing.assert_array_equal(samples, fitted.sample_proba(X[:3], 4))
    finally:
        fitted.set_params(**saved)


@pytest.mark.parametrize("kind", ["sample", "logit_residual"])
def test_an_untrained_residual_head_returns_the_prior_exactly(images, kind):
    # The "sample" head outputs y_0 - p, the "logit_residual" head a
    # correction of log p; both start at zero: until they have learnt
    # something, every reverse chain ends at the prior.
    X, y = images
    fresh = tiny(prediction_type=kind, max_epochs=1).fit(X, y)
    torch.nn.init.zeros_(fresh.denoiser_.out.weight)
    torch.nn.init.zeros_(fresh.denoiser_.out.bias)
    prior = fresh.predict_prior_proba(X)
    for settings in (
        {"n_samples": 1, "eta": 0.0},
        {"eta": 1.0, "n_samples": 3},
        {"sampler": "ddpm", "n_samples": 1},
    ):
        fresh.set_params(**settings)
        y0 = fresh._denoise(X)
        np.testing.assert_allclose(
            y0, np.repeat(prior[:, None], y0.shape[1], 1), atol=1e-5
        )
        np.testing.assert_array_equal(fresh.predict(X), fresh.classes_[prior.argmax(1)])
    if kind == "logit_residual":
        # Its y_0 is a probability vector: at T = 1 predict_proba returns it.
        np.testing.assert_allclose(fresh.predict_proba(X), prior, atol=1e-5)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_every_prediction_type_fits_and_predicts(images, kind):
    X, y = images
    clf = tiny(
        prediction_type=kind,
        max_epochs=1,
        denoiser_init="guidance",
    ).fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert np.isfinite(clf.history_[-1]["diffusion_loss"])


def test_denoiser_init_copies_the_trained_global_encoder(images, monkeypatch):
    # "guidance": at the first diffusion epoch the denoiser's encoder holds the
    # DCG global encoder's weights (the raw weights, before the step updates).
    import skdiffmic._training as training

    copies = []
    original = training.init_from_guidance

    def spy(denoiser, guidance):
        n = original(denoiser, guidance)
        source = guidance.global_encoder.state_dict()
        target = denoiser.encoder.state_dict()
        copies.append((n, all(torch.equal(source[k], target[k]) for k in source)))
        return n

    monkeypatch.setattr(training, "init_from_guidance", spy)
    X, y = images
    tiny(denoiser_init="guidance", max_epochs=2).fit(X, y)
    assert len(copies) == 2  # the trained denoiser and its moving average
    assert all(n > 0 and same for n, same in copies)
    copies.clear()
    tiny(denoiser_init="scratch", max_epochs=2).fit(X, y)
    assert copies == []


def test_prediction_type_is_fixed_at_fit(images):
    # The denoiser's output means what it was trained to mean: changing
    # prediction_type afterwards changes nothing, and a warm start refuses it.
    X, y = images
    clf = tiny(prediction_type="sample", max_epochs=1).fit(X, y)
    proba = clf.predict_proba(X)
    clf.set_params(prediction_type="epsilon")
    assert clf.prediction_type_ == "sample"
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    with pytest.raises(ValueError, match="prediction_type"):
        clf.set_params(warm_start=True).fit(X, y)


def test_shared_denoiser_encoder_reads_the_guidance_features(images, tmp_path):
    X, y = images
    clf = tiny(denoiser_init="shared").fit(X, y)
    denoiser = clf.denoiser_
    # No CNN of its own: nothing but linear layers, norms and embeddings, fed
    # with the DCG global encoder's CAM-stage channels.
    assert denoiser.reads_guidance
    assert not any(p.dim() == 4 for p in denoiser.parameters())
    assert denoiser.project.in_features == clf.guidance_model_.feature_dim
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(
        proba, tiny(denoiser_init="shared").fit(X, y).predict_proba(X)
    )
    frame = clf.predict_uncertainty(X[:6], n_samples=4)
    assert np.all(np.isfinite(frame["feature_distance"]))
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    assert loaded.denoiser_.reads_guidance
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)


def test_cut_local_encoder_stops_at_the_last_stage_a_window_fills(images, tmp_path):
    from skdiffmic._backbones import cam_stage

    X, y = images
    clf = tiny(local_encoder="cut").fit(X, y)
    local = clf.guidance_model_.local_encoder
    _, reduction, channels = cam_stage("test_resnet", clf.crop_size_, min_cells=1)
    assert reduction <= clf.crop_size_ < 2 * reduction
    assert local.feature_info.channels()[-1] == channels
    assert clf.guidance_model_.attention.V.in_features == channels
    full = tiny().fit(X, y).guidance_model_
    assert full.attention.V.in_features != channels
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1)
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    assert loaded.local_encoder == "cut"
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
