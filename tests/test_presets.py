"""skdiffmic.presets: named configurations, the defaults among them."""

import numpy as np
import pytest
import torch

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.baselines import TimmClassifier

BUDGET = dict(
    image_size=16,
    hidden_dim=16,
    n_timesteps=50,
    guidance_epochs=1,
    max_epochs=1,
    batch_size=8,
    random_state=0,
)


def test_the_defaults_are_the_fine_tuning_preset():
    assert (
        DiffMICClassifier().get_params()
        == DiffMICClassifier(**presets.FINE_TUNE).get_params()
    )
    # The CNN baseline starts from the same backbone and weights.
    cnn = TimmClassifier().get_params()
    assert (cnn["backbone"], cnn["pretrained"]) == ("tf_efficientnet_lite0", True)


def test_presets_hold_configurations_not_budgets():
    budget = {"image_size", "max_epochs", "guidance_epochs", "batch_size"}
    params = set(DiffMICClassifier().get_params())
    for name, preset in presets.PRESETS.items():
        assert set(preset) <= params, name
        assert not budget & set(preset), name
    assert presets.PAPER["prediction_type"] == "epsilon"
    assert presets.PAPER["hidden_dim"] == 6144
    assert presets.PAPER["guidance_learning_rate"] == 2e-4
    assert presets.PAPER["center_correction"] is False


def test_presets_are_read_only_and_get_gives_a_copy():
    with pytest.raises(TypeError):
        presets.FINE_TUNE["hidden_dim"] = 1
    copy = presets.get("fine_tune")
    copy["hidden_dim"] = 1
    assert presets.FINE_TUNE["hidden_dim"] == 512
    with pytest.raises(ValueError, match="Unknown preset 'best'"):
        presets.get("best")


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_fits_and_predicts_at_a_tiny_size(name):
    X = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    y = np.arange(16) % 2
    params = dict(presets.PRESETS[name], **BUDGET)
    if name == "fine_tune":  # the real ImageNet lite0, offline
        params["n_crops"] = 2
    else:
        params["backbone"] = "test_resnet"
    clf = DiffMICClassifier(**params).fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert clf.prediction_type_ == presets.PRESETS[name]["prediction_type"]
    # Each preset's networks: the denoiser has a CNN of its own unless shared.
    shared = presets.PRESETS[name]["denoiser_init"] == "shared"
    assert isinstance(clf.denoiser_.encoder, torch.nn.Identity) == shared
