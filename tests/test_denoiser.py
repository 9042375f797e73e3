import torch

from skdiffmic._backbones import create_pooled_encoder
from skdiffmic._denoiser import ConditionalDenoiser, ConditionalLinear


def test_conditional_linear_scales_by_a_per_timestep_gain():
    layer = ConditionalLinear(3, 4, n_timesteps=10)
    x = torch.randn(2, 3)
    t = torch.tensor([1, 7])
    expected = layer.embed.weight[t] * layer.lin(x)
    torch.testing.assert_close(layer(x, t), expected)
    assert not torch.allclose(
        layer(x, torch.tensor([1, 1])), layer(x, torch.tensor([7, 7]))
    )


def _denoiser():
    torch.manual_seed(0)
    encoder, feat_dim = create_pooled_encoder("test_resnet", in_chans=3)
    return ConditionalDenoiser(
        encoder, feat_dim, n_classes=3, hidden_dim=16, n_timesteps=50
    )


def test_head_on_shared_features_equals_the_full_forward():
    model = _denoiser().eval()
    x = torch.randn(4, 3, 16, 16)
    y_t, prior = torch.randn(4, 3), torch.rand(4, 3).softmax(-1)
    t = torch.tensor([0, 10, 20, 49])
    with torch.no_grad():
        features = model.encode(x)
        torch.testing.assert_close(
            model.head(features, y_t, prior, t), model(x, y_t, prior, t)
        )
        assert model.head(features, y_t, prior, 5).shape == (4, 3)


def test_image_modulation_starts_at_zero():
    model = _denoiser().eval()
    y_t, prior = torch.randn(2, 3), torch.rand(2, 3).softmax(-1)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), torch.ones(2, 16))
        torch.testing.assert_close(model(x, y_t, prior, 3), model(x + 1, y_t, prior, 3))


def test_output_depends_on_image_label_prior_and_time():
    model = _denoiser().eval()
    torch.nn.init.ones_(model.feature_norm.weight)  # as once training has grown it
    x = torch.randn(2, 3, 16, 16)
    y_t, prior = torch.randn(2, 3), torch.rand(2, 3).softmax(-1)
    t = torch.tensor([3, 3])
    with torch.no_grad():
        base = model(x, y_t, prior, t)
        for changed in (
            model(x + 1, y_t, prior, t),
            model(x, y_t + 1, prior, t),
            model(x, y_t, prior.flip(-1), t),
            model(x, y_t, prior, torch.tensor([40, 40])),
        ):
            assert not torch.allclose(base, changed)
