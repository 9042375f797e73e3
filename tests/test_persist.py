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
        (dict(version=99), "format version 99"),
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


def _save_as_older_format(clf, path, version, removed_params):
    """Save ``clf``, then rewrite the file as format ``version`` would have
    stored it: without the parameters that format did not have."""
    clf.save(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["skdiffmic"])
    for name in removed_params:
        del document["params"][name]
    document["version"] = version
    save_file(
        load_file(str(path)), str(path), metadata={"skdiffmic": json.dumps(document)}
    )


def test_a_version_3_file_chooses_its_windows_on_the_summed_cams(tmp_path):
    # Format 3 had no crop_saliency: its models chose windows on the summed
    # CAMs, and load as "sum" whatever the current default is.
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    clf = tiny(crop_saliency="sum").fit(X, y)
    path = tmp_path / "m.safetensors"
    _save_as_older_format(
        clf,
        path,
        3,
        ["crop_saliency", "local_encoder", "image_cache", "prior_folds"],
    )
    loaded = DiffMICClassifier.load(path)
    assert loaded.crop_saliency == "sum" and loaded.prior_folds is None
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_version_4_file_encodes_its_windows_with_the_full_network(tmp_path):
    # Format 4 had no local_encoder: its models ran the whole backbone on the
    # windows, and load as "full" whatever the current default is.
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    clf = tiny(local_encoder="full").fit(X, y)
    path = tmp_path / "m.safetensors"
    _save_as_older_format(clf, path, 4, ["local_encoder", "image_cache", "prior_folds"])
    loaded = DiffMICClassifier.load(path)
    assert loaded.local_encoder == "full" and loaded.image_cache is None
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_crop_saliency_is_saved(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    clf = tiny(crop_saliency="per_class").fit(X, y)
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    assert loaded.crop_saliency == "per_class"
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_version_2_file_is_read_as_the_paper_configuration(tmp_path):
    # Format 2 had no prediction_type (its models predicted the noise): its
    # files load as epsilon models and predict as they did when saved.
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    clf = tiny(prediction_type="epsilon", crop_saliency="sum").fit(X, y)
    path = tmp_path / "m.safetensors"
    removed = [
        "prediction_type",
        "clip_sample",
        "focal_weight",
        "denoiser_init",
        "clip_sample_range",
        "crop_saliency",
        "local_encoder",
        "image_cache",
    ]
    _save_as_older_format(clf, path, 2, removed)
    loaded = DiffMICClassifier.load(path)
    assert loaded.prediction_type == "epsilon" and loaded.clip_sample is False
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_version_4_efficientnet_file_with_the_unused_deep_blocks_loads(tmp_path):
    # Before format 5 an EfficientNet global encoder cut at its CAM stage kept
    # (and saved) the deeper blocks it never ran; they are dropped on loading,
    # and only from files of those versions.
    X = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    y = np.arange(16) % 2
    clf = tiny(backbone="tf_efficientnet_lite0", max_epochs=1, n_crops=2).fit(X, y)
    assert len(clf.guidance_model_.global_encoder.blocks) < 7
    path = tmp_path / "m.safetensors"
    _save_as_older_format(clf, path, 4, ["local_encoder", "image_cache", "prior_folds"])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    tensors["guidance_model_.global_encoder.blocks.6.0.conv_pw.weight"] = torch.ones(
        1152, 192, 1, 1
    )
    save_file(tensors, str(path), metadata=metadata)
    loaded = DiffMICClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    _rewrite(path, version=5)
    with pytest.raises(ValueError, match="do not match"):
        DiffMICClassifier.load(path)


def test_the_correction_offset_is_saved_and_older_files_predict_without_it(
    tmp_path,
):
    X = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 3
    clf = tiny(center_correction=True).fit(X, y)
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.correction_offset_, clf.correction_offset_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # Format 8 had neither the parameter nor the offset: its models load
    # uncentred, and refuse centring clearly.
    path = tmp_path / "old.safetensors"
    _save_as_older_format(clf, path, 8, ["center_correction"])
    tensors = load_file(str(path))
    del tensors["correction_offset_"]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, str(path), metadata=metadata)
    old = DiffMICClassifier.load(path)
    assert old.center_correction is False and not hasattr(old, "correction_offset_")
    uncentred = clf.set_params(center_correction=False).predict_proba(X)
    np.testing.assert_array_equal(old.predict_proba(X), uncentred)
    with pytest.raises(ValueError, match="Refit it"):
        old.set_params(center_correction=True).predict_proba(X)
