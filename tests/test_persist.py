"""save / load: a safetensors + JSON format that never unpickles anything."""

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from skdiffmic import DiffMICClassifier
from tests.conftest import tiny


def test_round_trip_gives_identical_predictions(tmp_path, images, fitted):
    X, _ = images
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    loaded = DiffMICClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(
        loaded.predict_prior_proba(X), fitted.predict_prior_proba(X)
    )
    assert loaded.get_params() == fitted.get_params()
    assert loaded.history_ == fitted.history_
    assert loaded.classes_.tolist() == fitted.classes_.tolist()
    assert loaded.image_shape_ == fitted.image_shape_


def test_round_trip_of_the_tabular_mode_with_integer_labels(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), np.arange(30) % 3 + 10
    clf = tiny(max_epochs=1, random_state=np.random.RandomState(0)).fit(X, y)
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert loaded.n_features_in_ == 4 and loaded.random_state is None


def test_loading_never_unpickles(tmp_path, fitted, monkeypatch):
    fitted.save(tmp_path / "m.safetensors")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    DiffMICClassifier.load(tmp_path / "m.safetensors")


def test_truncated_file_is_refused(tmp_path, fitted):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        DiffMICClassifier.load(path)


def _rewrite(path, *, drop=None, reshape=None, version=None):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = torch.zeros(3, 3)
    if version is not None:
        document = json.loads(metadata["skdiffmic"])
        document["version"] = version
        metadata = {"skdiffmic": json.dumps(document)}
    save_file(tensors, str(path), metadata=metadata)


def test_missing_or_mis_shaped_tensors_and_unknown_versions_are_refused(
    tmp_path, fitted
):
    path = tmp_path / "m.safetensors"
    key = "denoiser_.out.weight"
    for change, match in (
        (dict(drop=key), "Missing key"),
        (dict(reshape=key), "size mismatch"),
        (dict(version=99), "format 99.*refit the model"),
    ):
        fitted.save(path)
        _rewrite(path, **change)
        with pytest.raises(ValueError, match=match):
            DiffMICClassifier.load(path)


def test_other_files_are_refused(tmp_path):
    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a saved skdiffmic model"):
        DiffMICClassifier.load(other)
    with pytest.raises(FileNotFoundError):
        DiffMICClassifier.load(tmp_path / "missing.safetensors")


def test_save_needs_a_fitted_model(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        tiny().save(tmp_path / "m.safetensors")


def test_class_weight_dict_keeps_its_label_types(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    clf = tiny(max_epochs=1, class_weight={0: 2.0, 1: 0.5}).fit(X, y)
    clf.save(tmp_path / "m.safetensors")
    assert DiffMICClassifier.load(tmp_path / "m.safetensors").class_weight == {
        0: 2.0,
        1: 0.5,
    }


def test_files_of_the_unreleased_formats_ask_for_a_refit(tmp_path, fitted):
    # The format before the reset (version 9) held the same tensors but no
    # network spec: it is refused, not guessed at.
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["skdiffmic"])
    del document["spec"]
    document["version"] = 9
    save_file(
        load_file(str(path)), str(path), metadata={"skdiffmic": json.dumps(document)}
    )
    with pytest.raises(ValueError, match="format 9.*refit the model and save"):
        DiffMICClassifier.load(path)


def test_a_spec_that_disagrees_with_the_parameters_is_refused(tmp_path, fitted):
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["skdiffmic"])
    assert document["spec"]["n_classes"] == len(fitted.classes_)
    document["spec"]["hidden_dim"] += 1
    save_file(
        load_file(str(path)), str(path), metadata={"skdiffmic": json.dumps(document)}
    )
    with pytest.raises(ValueError, match="differ from those its parameters build"):
        DiffMICClassifier.load(path)


def test_crop_saliency_is_saved(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    clf = tiny(crop_saliency="sum").fit(X, y)
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    assert loaded.crop_saliency == "sum"
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_the_correction_offset_is_saved(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 3
    clf = tiny(center_correction=True).fit(X, y)
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.correction_offset_, clf.correction_offset_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    uncentred = clf.set_params(center_correction=False).predict_proba(X)
    loaded.set_params(center_correction=False)
    np.testing.assert_array_equal(loaded.predict_proba(X), uncentred)


def _document(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["skdiffmic"])


def test_the_model_card_is_saved_loaded_and_kept(tmp_path, images, fitted):
    import skdiffmic

    X, _ = images
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    card = _document(path)["card"]
    data = card["training_data"]
    assert data["n_samples"] == 24 and data["input"] == "image array"
    assert data["class_counts"] == {"benign": 8, "malignant": 8, "naevus": 8}
    assert data["image_shapes"] == [[16, 16, 3]] and len(data["sha256"]["value"]) == 64
    assert card["configuration"]["preset"] == "custom"
    assert card["configuration"]["based_on"] == "scratch"
    assert card["configuration"]["changed_from_preset"] == {
        "backbone": "test_resnet",
        "hidden_dim": 32,
    }
    assert card["starting_weights"]["licence"] is None
    assert card["training"]["validation"] is None  # no hold-out
    assert card["software"]["skdiffmic"] == skdiffmic.__version__
    assert card["software"]["torch"] == torch.__version__
    assert "not for diagnosis" in card["intended_use"]
    loaded = DiffMICClassifier.load(path)
    assert loaded.card_ == card and loaded.training_data_ == fitted.training_data_
    loaded.save(tmp_path / "again.safetensors")
    assert _document(tmp_path / "again.safetensors")["card"] == card


def test_files_without_a_card_load_and_predict_the_same(tmp_path, images, fitted):
    X, _ = images
    path = tmp_path / "m.safetensors"
    fitted.save(path)
    document = _document(path)
    del document["card"], document["attributes"]["training_data_"]
    save_file(
        load_file(str(path)), str(path), metadata={"skdiffmic": json.dumps(document)}
    )
    loaded = DiffMICClassifier.load(path)
    assert loaded.card_ is None and not hasattr(loaded, "training_data_")
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
