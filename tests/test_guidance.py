import numpy as np
import pytest
import torch

from skdiffmic._guidance import (
    DCGModel,
    GatedAttention,
    cut_crops,
    saliency_map,
    select_windows,
    top_t_aggregate,
)


def test_top_t_aggregation():
    cam = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    torch.testing.assert_close(top_t_aggregate(cam, 1.0), cam.mean((2, 3)))
    torch.testing.assert_close(top_t_aggregate(cam, 1e-6), cam.amax((2, 3)))
    top_quarter = cam.flatten(2).topk(4, dim=-1).values.mean(-1)
    torch.testing.assert_close(top_t_aggregate(cam, 0.25), top_quarter)


def test_saliency_map_normalises_each_class():
    cam = torch.randn(2, 3, 5, 5) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1)
    sal = saliency_map(cam)
    assert sal.shape == (2, 5, 5)
    assert sal.min() >= 0 and sal.max() <= 3 + 1e-6
    # Per-class scale does not matter after min-max normalisation.
    torch.testing.assert_close(sal, saliency_map(cam * 7 + 3))


def test_select_windows_finds_the_hot_spots_in_order():
    sal = torch.zeros(1, 8, 8)
    sal[0, 6:8, 0:2] = 1.0  # hottest
    sal[0, 1:3, 4:6] = 0.5  # second
    corners = select_windows(sal, (32, 32), crop_size=8, n_crops=2)
    assert corners.shape == (1, 2, 2)
    (r1, c1), (r2, c2) = corners[0].tolist()
    # Cell (6..8, 0..2) of an 8x8 map is pixels 24..32, 0..8 of a 32 px image.
    assert 20 <= r1 <= 24 and 0 <= c1 <= 4
    assert 0 <= r2 <= 8 and 12 <= c2 <= 20


def test_select_windows_does_not_pick_the_same_window_twice():
    sal = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    corners = select_windows(sal, (16, 16), crop_size=4, n_crops=4)
    for b in range(3):
        assert len({tuple(c) for c in corners[b].tolist()}) == 4


def test_select_windows_rejects_crops_larger_than_the_image():
    with pytest.raises(ValueError, match="larger than the image"):
        select_windows(torch.rand(1, 4, 4), (16, 16), crop_size=20, n_crops=1)


def test_cut_crops_matches_slicing_on_all_channels():
    images = torch.randn(2, 3, 10, 12)
    corners = torch.tensor([[[0, 0], [5, 7]], [[2, 3], [6, 8]]])
    crops = cut_crops(images, corners, 4)
    assert crops.shape == (2, 2, 3, 4, 4)
    for b in range(2):
        for k in range(2):
            r, c = corners[b, k].tolist()
            torch.testing.assert_close(crops[b, k], images[b, :, r : r + 4, c : c + 4])


def test_gated_attention_weights_are_a_distribution():
    pool = GatedAttention(8, 4)
    h = torch.randn(3, 5, 8)
    z, a = pool(h)
    assert z.shape == (3, 8) and a.shape == (3, 5)
    torch.testing.assert_close(a.sum(1), torch.ones(3))
    torch.testing.assert_close(z, (a.unsqueeze(-1) * h).sum(1))


def test_dcg_model_outputs_and_fused_prior():
    torch.manual_seed(0)
    model = DCGModel(
        "test_resnet", n_classes=3, in_chans=1, image_size=32, crop_size=8, n_crops=4
    ).eval()
    with torch.no_grad():
        out, details = model(torch.randn(2, 1, 32, 32), return_details=True)
    assert out.fused.shape == out.global_.shape == out.local.shape == (2, 3)
    torch.testing.assert_close(out.fused, (out.global_ + out.local) / 2)
    assert details["cam"].shape[-1] >= 4  # a real spatial saliency map at 32 px
    assert details["corners"].shape == (2, 4, 2)
    assert np.all(details["corners"].numpy() <= 32 - 8)


def test_dcg_model_trains_both_branches():
    model = DCGModel(
        "test_resnet", n_classes=2, in_chans=3, image_size=16, crop_size=4, n_crops=2
    )
    out = model(torch.randn(4, 3, 16, 16))
    out.fused.sum().backward()
    assert model.cam_head.weight.grad is not None
    assert model.local_head.weight.grad is not None
    assert any(p.grad is not None for p in model.local_encoder.parameters())
