"""Building the networks: the denoiser's start and its copy from the guidance model."""

import pytest
import torch

from skdiffmic._networks import build_networks, init_from_guidance
from tests.conftest import image_networks


@pytest.mark.parametrize("backbone", ["test_resnet", "convnext_atto"])
def test_init_from_guidance_copies_every_tensor_of_the_global_encoder(backbone):
    # timm's feature wrappers rename modules (convnext: stem.0 -> stem_0);
    # the copy must still find every tensor.
    guidance, denoiser = image_networks(backbone)
    n_source = len(guidance.global_encoder.state_dict())
    assert init_from_guidance(denoiser, guidance) == n_source
    copied = list(denoiser.encoder.state_dict().values())
    for value in guidance.global_encoder.state_dict().values():
        assert any(v.shape == value.shape and torch.equal(v, value) for v in copied)


def test_zero_output_starts_the_sample_head_at_zero():
    _, denoiser = build_networks(
        tabular=True,
        seed=0,
        n_classes=3,
        n_inputs=4,
        hidden_dim=8,
        n_timesteps=10,
        zero_output=True,
    )
    assert torch.count_nonzero(denoiser.out.weight) == 0
    assert torch.count_nonzero(denoiser.out.bias) == 0
    # ... while the image features enter the product at full strength.
    assert torch.all(denoiser.feature_norm.weight == 1)
    _, paper = build_networks(
        tabular=True, seed=0, n_classes=3, n_inputs=4, hidden_dim=8, n_timesteps=10
    )
    assert torch.count_nonzero(paper.out.weight) > 0
    assert torch.all(paper.feature_norm.weight == 0)
