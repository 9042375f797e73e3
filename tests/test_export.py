"""ONNX export: the graph gives the estimator's probabilities without it."""

import json

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
    return tiny(max_epochs=1, n_samples=2, eta=1.0).fit(X, labels), X


def test_the_exported_graph_gives_the_estimators_probabilities(fitted, tmp_path):
    clf, X = fitted
    path = to_onnx(clf, tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    exported = OnnxClassifier(path, batch_size=7)  # batches unlike the estimator's
    np.testing.assert_allclose(
        exported.predict_proba(X), clf.predict_proba(X), atol=1e-5, rtol=0
    )
    np.testing.assert_array_equal(exported.predict(X), clf.predict(X))
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
    assert json.loads(json.dumps(exported.metadata_["params"]))["max_epochs"] == 1
