"""timm backbone factory: feature maps, pooled features, local weights, data config."""

from __future__ import annotations

import os
from functools import lru_cache

import timm
import torch
from torch import nn

__all__ = [
    "create_pooled_encoder",
    "create_feature_encoder",
    "normalization_stats",
    "check_backbone",
    "check_pretrained",
]


def check_backbone(name: str) -> None:
    """Raise a clear ``ValueError`` for an unknown timm model name."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ValueError(f"Unknown timm backbone {name!r}.{hint}")


def check_pretrained(pretrained) -> None:
    """``pretrained`` must be False/None or the path of an existing weights file."""
    if pretrained in (False, None):
        return
    if pretrained is True:
        raise ValueError(
            "pretrained=True would download weights, which needs the network; pass "
            "the path of a local weights file (.pth, .bin or .safetensors) instead."
        )
    if not os.path.isfile(os.fspath(pretrained)):
        raise FileNotFoundError(f"Pretrained weights file not found: {pretrained!r}.")


def _create(name: str, in_chans: int, pretrained, **kwargs) -> nn.Module:
    if pretrained in (False, None):
        return timm.create_model(name, pretrained=False, in_chans=in_chans, **kwargs)
    # timm reads the checkpoint from a local file instead of a hub when the
    # pretrained config names one; it drops the classifier and adapts the
    # first convolution to ``in_chans`` itself.
    return timm.create_model(
        name,
        pretrained=True,
        pretrained_cfg_overlay={"file": os.fspath(pretrained)},
        in_chans=in_chans,
        **kwargs,
    )


@lru_cache(maxsize=64)
def _feature_info(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(reductions, channels) of every feature stage of a timm model."""
    with torch.random.fork_rng(devices=[]):
        model = timm.create_model(name, pretrained=False, features_only=True)
    return tuple(model.feature_info.reduction()), tuple(model.feature_info.channels())


def cam_stage(name: str, image_size: int, min_cells: int = 4) -> tuple[int, int, int]:
    """The deepest feature stage keeping ``>= min_cells`` cells a side.

    Returns ``(stage index, reduction, channels)``. A 224 px ResNet gives the
    final 7x7 stage (the reference's); a 32 px image gets the stride-8 stage
    (4x4 cells) so that the saliency map still has a spatial layout.
    """
    reductions, channels = _feature_info(name)
    best = 0
    for i, r in enumerate(reductions):
        if image_size // r >= min_cells:
            best = i
    return best, reductions[best], channels[best]


def create_feature_encoder(
    name: str, *, in_chans: int, image_size: int, pretrained=False
) -> tuple[nn.Module, int, int]:
    """A timm ``features_only`` network cut at the CAM stage for ``image_size``.

    Returns ``(module, channels, reduction)``; the module maps ``(B, C, H, W)`` to
    a list holding one feature map of shape ``(B, channels, H/r, W/r)``.
    """
    stage, reduction, chans = cam_stage(name, image_size)
    model = _create(
        name, in_chans, pretrained, features_only=True, out_indices=(stage,)
    )
    return model, chans, reduction


def create_pooled_encoder(name: str, *, in_chans: int, pretrained=False):
    """A timm network with its classifier removed: ``(B, C, H, W) -> (B, F)``.

    Returns ``(module, F)``.
    """
    model = _create(name, in_chans, pretrained, num_classes=0)
    return model, int(model.num_features)


@lru_cache(maxsize=64)
def normalization_stats(name: str, in_chans: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std from the backbone's timm data config.

    Three channels use the config as is; any other count uses the mean of the
    three values for every channel (what timm's first-conv adaptation assumes).
    """
    cfg = timm.get_pretrained_cfg(name)
    mean = tuple(getattr(cfg, "mean", None) or (0.485, 0.456, 0.406))
    std = tuple(getattr(cfg, "std", None) or (0.229, 0.224, 0.225))
    if in_chans == len(mean):
        return mean, std
    m, s = sum(mean) / len(mean), sum(std) / len(std)
    return (m,) * in_chans, (s,) * in_chans
