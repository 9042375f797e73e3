import doctest
import pickle

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils._param_validation import InvalidParameterError

import skdiffmic.baselines
from skdiffmic.baselines import TimmClassifier
from skdiffmic.datasets import make_lesions

TINY = dict(
    backbone="test_resnet", pretrained=False, max_epochs=2, batch_size=8, random_state=0
)


def tiny(**overrides):
    """A TimmClassifier small enough for a 2-core CPU test suite."""
    return TimmClassifier(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    y = np.array(["benign", "malignant", "naevus"] * 8)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return tiny().fit(X, y)


def test_fit_predict_shapes_labels_and_attributes(data, fitted):
    X, y = data
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert np.all(proba >= 0)
    pred = fitted.predict(X)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(1)])
    np.testing.assert_array_equal(fitted.classes_, ["benign", "malignant", "naevus"])
    assert set(pred) <= set(y)
    assert 0 <= fitted.score(X, y) <= 1

    assert fitted.image_shape_ == (16, 16, 3) and fitted.image_size_ == 16
    assert fitted.tabular_ is False and fitted.n_iter_ == 2
    assert [r["epoch"] for r in fitted.history_] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["time"] > 0 for r in fitted.history_)
    assert fitted.model_.get_classifier().out_features == 3
    assert not fitted.model_.training


def test_integer_labels_grayscale_and_image_size():
    rng = np.random.default_rng(1)
    X = rng.random((10, 20, 24))
    y = np.array([3, 7] * 5)
    clf = tiny(max_epochs=1, image_size=12).fit(X, y)
    assert clf.image_shape_ == (20, 24, 1) and clf.image_size_ == 12
    pred = clf.predict(rng.random((3, 30, 30)))  # another size is resized
    assert pred.dtype.kind == "i" and set(pred) <= {3, 7}


def test_predictions_do_not_depend_on_batch_or_order(data, fitted):
    X, _ = data
    full = fitted.predict_proba(X)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(fitted.predict_proba(X[order]), full[order], atol=1e-6)
    pieces = np.vstack([fitted.predict_proba(X[i : i + 5]) for i in range(0, 24, 5)])
    np.testing.assert_allclose(pieces, full, atol=1e-6)


def test_reproducible_and_leaves_the_global_torch_rng_alone(data, fitted):
    X, y = data
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = tiny().fit(X, y)
    assert torch.equal(before, torch.get_rng_state())
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    other = tiny(random_state=1).fit(X, y)
    assert not np.allclose(other.predict_proba(X), fitted.predict_proba(X))


def test_file_paths_give_the_same_model_and_predictions(tmp_path, data, fitted):
    X, y = data
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    expected = fitted.predict_proba(X)
    np.testing.assert_array_equal(fitted.predict_proba(paths), expected)
    from_files = tiny().fit(paths, y)
    assert from_files.image_shape_ == (16, 16, 3)
    np.testing.assert_array_equal(from_files.predict_proba(X), expected)


def test_flattened_images_need_image_shape(data):
    X, y = data
    flat = X.reshape(len(X), -1)
    with pytest.raises(ValueError, match="image_shape"):
        tiny().fit(flat, y)
    clf = tiny(max_epochs=1, image_shape=(16, 16, 3)).fit(flat, y)
    assert clf.n_features_in_ == 16 * 16 * 3
    np.testing.assert_array_equal(
        clf.predict_proba(flat), tiny(max_epochs=1).fit(X, y).predict_proba(X)
    )
    with pytest.raises(ValueError, match="image_shape"):
        tiny(max_epochs=1).fit(X, y).predict(flat)


def test_clone_and_cross_val_score(data):
    X, y = data
    base = tiny(max_epochs=1)
    cloned = clone(base)
    assert cloned.get_params() == base.get_params()
    assert not hasattr(cloned, "model_")
    scores = cross_val_score(base, X, y, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_pickle_round_trip(data, fitted):
    X, _ = data
    state = fitted.__getstate__()
    assert all(t.device.type == "cpu" for t in state["model_"].state_dict().values())
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_fitted_on_cuda_unpickles_on_cpu(data):
    X, y = data
    clf = tiny(device="cuda").fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    assert all(p.device.type == "cpu" for p in restored.model_.parameters())
    restored.set_params(device="cpu")
    assert restored.predict(X).shape == (len(X),)


def test_verbose_shows_progress_and_silent_by_default(data, capsys):
    X, y = data
    tiny(max_epochs=1).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    tiny(max_epochs=2, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    assert "TimmClassifier" in err and "loss=" in err and "2/2" in err


def test_invalid_parameters_are_named():
    X = np.zeros((4, 16, 16), dtype=np.uint8)
    y = [0, 1, 0, 1]
    for name, value in [
        ("learning_rate", 0),
        ("weight_decay", -1.0),
        ("max_epochs", 0),
        ("batch_size", 1),
        ("image_size", 4),
    ]:
        with pytest.raises(InvalidParameterError, match=name):
            TimmClassifier(**{name: value}).fit(X, y)
    with pytest.raises(ValueError, match="Unknown timm backbone"):
        tiny(backbone="no_such_net").fit(X, y)
    with pytest.raises(FileNotFoundError, match="weights file"):
        tiny(pretrained="/nonexistent/weights.pth").fit(X, y)
    with pytest.raises(ValueError, match="at least 8 px"):
        tiny().fit(np.zeros((4, 6, 6), dtype=np.uint8), y)


def test_pretrained_weights_from_a_local_file(tmp_path, data):
    X, y = data
    source = timm.create_model("test_resnet")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    clf = tiny(pretrained=str(path), max_epochs=1, learning_rate=1e-12).fit(X, y)
    expected = source.state_dict()["conv1.0.weight"]
    loaded = clf.model_.state_dict()["conv1.0.weight"]
    torch.testing.assert_close(loaded, expected, atol=1e-6, rtol=0)
    assert clf.model_.get_classifier().out_features == 3  # a fresh head for y


def test_learns_a_local_structure():
    X, y = make_lesions(200, image_size=32, random_state=0)
    clf = TimmClassifier(
        "test_resnet",
        pretrained=False,
        augment=False,
        max_epochs=6,
        batch_size=16,
        learning_rate=1e-3,
        random_state=0,
    ).fit(X[:150], y[:150])
    assert clf.history_[-1]["loss"] < clf.history_[0]["loss"]
    assert np.mean(clf.predict(X[150:]) == y[150:]) >= 0.8


def test_docstring_example_runs():
    result = doctest.testmod(skdiffmic.baselines)
    assert result.attempted > 0 and result.failed == 0


def test_fresh_head_starts_small_whatever_the_backbone_family():
    """EfficientNet's own head init draws U(+-1/sqrt(n_classes)); ours is PyTorch's."""
    from skdiffmic.baselines import _create_classifier

    model = _create_classifier(
        "tf_efficientnet_lite0", n_classes=2, in_chans=3, pretrained=False, seed=0
    )
    head = model.get_classifier()
    weight = head.weight.detach()
    bound = 1 / head.in_features**0.5  # PyTorch's Linear default
    assert float(weight.abs().max()) <= bound
    assert float(weight.std()) > 0.25 * bound  # drawn, not zeroed


def test_class_weight_and_balanced_sampling_as_diffmic_has_them(monkeypatch):
    # The CNN baseline gets DiffMIC's imbalance options, with the same meaning.
    seen, orders = [], []
    real_ce = skdiffmic.baselines.classification_loss
    real_order = skdiffmic.baselines.epoch_order

    def spy_ce(logits, target, weight=None, **kwargs):
        seen.append(None if weight is None else weight.cpu().numpy().copy())
        return real_ce(logits, target, weight, **kwargs)

    def spy_order(n, batch_size, generator, sample_weight=None):
        order = real_order(n, batch_size, generator, sample_weight)
        orders.append((order, sample_weight))
        return order

    monkeypatch.setattr(skdiffmic.baselines, "classification_loss", spy_ce)
    monkeypatch.setattr(skdiffmic.baselines, "epoch_order", spy_order)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    y = np.array(["common"] * 15 + ["rare"] * 5)
    tiny(max_epochs=1, class_weight="balanced").fit(X, y)
    np.testing.assert_allclose(seen[0], [20 / 30, 2.0], rtol=1e-6)
    assert orders[-1][1] is None
    seen.clear()
    tiny(max_epochs=1, class_weight={"rare": 5.0}).fit(X, y)
    np.testing.assert_allclose(seen[0], [1.0, 5.0])
    seen.clear()
    tiny(max_epochs=4, balanced_sampling=True).fit(X, y)
    assert seen[0] is None
    drawn = np.concatenate([order for order, _ in orders[-4:]])
    weights = orders[-1][1].numpy()
    np.testing.assert_allclose(weights[:15], 1 / 15)
    np.testing.assert_allclose(weights[15:], 1 / 5)
    # Drawn about equally by class (the rare rows are a quarter of the data).
    assert 0.35 < np.mean(drawn >= 15) < 0.65
