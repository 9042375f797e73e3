import numpy as np
import pytest
import torch

from skdiffmic._guidance import (
    DCGModel,
    GatedAttention,
    crop_maps,
    cut_crops,
    normalised_cams,
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


def _mirror_cams():
    """Two-class CAMs that are exact mirror images, the lesion at (1, 5)."""
    lesion = torch.zeros(1, 8, 8)
    lesion[0, 1, 5] = 4.0
    lesion += 0.1 * torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
    return torch.stack([-lesion, lesion], 1)  # (1, 2, 8, 8): class 1 = lesion


def test_summed_mirror_cams_are_flat_and_the_other_modes_are_not():
    cam = _mirror_cams()
    torch.testing.assert_close(
        crop_maps(cam, torch.zeros(1, 2), "sum"), torch.ones(1, 1, 8, 8)
    )
    # Predicted lesion: the weighted map peaks on the lesion.
    predicted = crop_maps(cam, torch.tensor([[-3.0, 3.0]]), "predicted")
    assert predicted.shape == (1, 1, 8, 8)
    assert divmod(int(predicted.flatten().argmax()), 8) == (1, 5)
    # Weights p0, p1 give p0 + (p1 - p0) * n1: the prediction sets the sign.
    n1 = (cam[:, 1] - cam[:, 1].amin()) / (cam[:, 1].amax() - cam[:, 1].amin())
    p = torch.tensor([[-3.0, 3.0]]).softmax(-1)
    torch.testing.assert_close(predicted[:, 0], p[:, 0] + (p[:, 1] - p[:, 0]) * n1)


def test_per_class_maps_go_most_probable_class_first():
    cam = torch.randn(2, 3, 5, 5)
    logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, -1.0, 0.0]])
    maps = crop_maps(cam, logits, "per_class")
    assert maps.shape == (2, 3, 5, 5)
    norm = normalised_cams(cam)
    torch.testing.assert_close(norm.sum(1), saliency_map(cam))
    for b, order in enumerate(([1, 2, 0], [0, 2, 1])):
        torch.testing.assert_close(maps[b], norm[b, order])
    with pytest.raises(ValueError, match="crop_saliency"):
        crop_maps(cam, logits, "mean")


def test_select_windows_takes_the_maps_in_turn_and_masks_all_of_them():
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 0, 6:8, 0:2] = 1.0  # map 0's hot spot
    maps[0, 0, 0:2, 6:8] = 0.9  # map 0's second
    maps[0, 1, 6:8, 0:2] = 0.8  # map 1 prefers map 0's first spot ...
    maps[0, 1, 1:3, 1:3] = 0.5  # ... which is masked, so it takes this one
    (r1, c1), (r2, c2), (r3, c3) = select_windows(maps, (32, 32), 8, 3)[0].tolist()
    assert 20 <= r1 <= 24 and 0 <= c1 <= 4  # map 0
    assert 0 <= r2 <= 8 and 0 <= c2 <= 8  # map 1, not map 0's spot again
    assert 0 <= r3 <= 4 and 20 <= c3 <= 24  # map 0 again, its second spot


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


@pytest.mark.parametrize("mode", ["sum", "predicted", "per_class"])
def test_dcg_model_reports_the_map_of_its_first_window(mode):
    torch.manual_seed(0)
    model = DCGModel(
        "test_resnet",
        n_classes=3,
        in_chans=1,
        image_size=32,
        crop_size=8,
        n_crops=4,
        crop_saliency=mode,
    ).eval()
    with torch.no_grad():
        out, details = model(torch.randn(2, 1, 32, 32), return_details=True)
    expected = crop_maps(details["cam"], out.global_, mode)[:, 0]
    torch.testing.assert_close(details["saliency"], expected)
    first = select_windows(expected, (32, 32), 8, 1)[:, 0]
    torch.testing.assert_close(details["corners"][:, 0], first)


def test_dcg_model_rejects_an_unknown_crop_saliency():
    with pytest.raises(ValueError, match="crop_saliency"):
        DCGModel(
            "test_resnet",
            n_classes=2,
            in_chans=1,
            image_size=16,
            crop_size=4,
            n_crops=2,
            crop_saliency="max",
        )


def test_dcg_model_trains_both_branches():
    model = DCGModel(
        "test_resnet", n_classes=2, in_chans=3, image_size=16, crop_size=4, n_crops=2
    )
    out = model(torch.randn(4, 3, 16, 16))
    out.fused.sum().backward()
    assert model.cam_head.weight.grad is not None
    assert model.local_head.weight.grad is not None
    assert any(p.grad is not None for p in model.local_encoder.parameters())
