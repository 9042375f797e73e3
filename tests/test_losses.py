import pytest
import torch

from skdiffmic._losses import gaussian_mmd


def _sample(n=64, d=3, shift=0.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


def test_mmd_is_zero_for_identical_samples():
    x = _sample()
    assert abs(gaussian_mmd(x, x).item()) < 1e-6


def test_mmd_is_small_for_two_draws_of_one_distribution_and_large_when_shifted():
    same = gaussian_mmd(_sample(seed=0), _sample(seed=1)).item()
    shifted = gaussian_mmd(_sample(seed=0), _sample(seed=1, shift=2.0)).item()
    assert shifted > 0.2
    assert shifted > 10 * same


def test_mmd_grows_with_the_shift_and_is_symmetric():
    x = _sample(seed=0)
    values = [gaussian_mmd(x, _sample(seed=1, shift=s)).item() for s in (0.5, 1, 2)]
    assert values[0] < values[1] < values[2]
    y = _sample(seed=1, shift=1.0)
    assert gaussian_mmd(x, y).item() == pytest.approx(gaussian_mmd(y, x).item())


def test_mmd_is_differentiable():
    x = _sample()
    y = _sample(seed=1, shift=1.0).requires_grad_(True)
    gaussian_mmd(x, y).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_mmd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="Expected"):
        gaussian_mmd(torch.zeros(4, 2), torch.zeros(4, 3))
