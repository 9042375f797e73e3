"""Saving a fitted DiffMICClassifier in a format that cannot run code on load.

One ``.safetensors`` file: every tensor of the guidance model and the denoiser
(and the tabular mode's feature statistics), plus a JSON document in the
file's metadata with the format version, the estimator's parameters, its
classes and its fitted attributes. Loading parses JSON and raw tensors only;
nothing is unpickled. The networks are rebuilt from the parameters and the
tensors are loaded strictly: a missing, extra or mis-shaped tensor is an
error.
"""

from __future__ import annotations

import json
import os
from numbers import Integral

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._diffusion import NoiseSchedule
from ._networks import build_networks
from ._uncertainty import FeatureDensity

__all__ = ["FORMAT_VERSION", "load_estimator", "save_estimator"]

FORMAT = "skdiffmic.DiffMICClassifier"
FORMAT_VERSION = 9
# Version 1 files (no feature statistics) still load; predict_uncertainty then
# asks for a refit. Version 4 added the crop_saliency parameter, version 5
# local_encoder and image_cache, version 6 prior_folds, version 7 multi-label
# models (multilabel_ and label_names_; older files are single-label) and
# prior_noise and prior_snapshot, version 8 guidance_schedule, version 9
# center_correction and correction_offset_ (older models predict without it).
_READABLE = (1, 2, 3, 4, 5, 6, 7, 8, 9)
_ATTRIBUTES = (
    "tabular_",
    "multilabel_",
    "prediction_type_",
    "image_shape_",
    "image_size_",
    "crop_size_",
    "n_features_in_",
    "sampling_seed_",
    "n_iter_",
    "best_epoch_",
    "temperature_",
    "history_",
)
_ARRAYS = ("feature_mean_", "feature_scale_", "correction_offset_")
_MODULES = ("guidance_model_", "denoiser_")
_DENSITY = "feature_density_"


def _jsonable(value, name):
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, name) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"Cannot save {name}={value!r}: only numbers, strings, lists and dicts are "
        "stored (set random_state to an int or None before saving)."
    )


def save_estimator(estimator, path) -> None:
    """Write a fitted estimator to ``path`` (see the module docstring)."""
    classes = estimator.classes_
    if classes.dtype.kind not in "biufUO" or (
        classes.dtype.kind == "O" and not all(isinstance(c, str) for c in classes)
    ):
        raise TypeError(
            f"Cannot save classes of dtype {classes.dtype}: labels must be numbers "
            "or strings."
        )
    params = estimator.get_params(deep=False)
    if not isinstance(params.get("random_state"), (Integral, type(None))):
        # A RandomState instance is not data; the fitted seeds are what
        # predictions depend on, and they are saved.
        params["random_state"] = None
    if isinstance(params.get("class_weight"), dict):
        # JSON object keys are strings; keep the labels' own types as pairs.
        params["class_weight"] = {
            "pairs": [
                [_jsonable(k, "class_weight"), float(v)]
                for k, v in params["class_weight"].items()
            ]
        }
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "params": {k: _jsonable(v, k) for k, v in params.items()},
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "classes_dtype": "object" if classes.dtype.kind == "O" else classes.dtype.str,
        "attributes": {
            name: _jsonable(getattr(estimator, name), name)
            for name in _ATTRIBUTES
            if hasattr(estimator, name)
        },
    }
    if hasattr(estimator, "feature_names_in_"):
        document["feature_names_in_"] = [str(n) for n in estimator.feature_names_in_]
    if hasattr(estimator, "label_names_"):
        # A DataFrame's column names (strings) or the column indices.
        document["label_names_"] = [
            n.item() if hasattr(n, "item") else str(n) for n in estimator.label_names_
        ]
    tensors = {}
    for name in _MODULES:
        for key, value in getattr(estimator, name).state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    for name in _ARRAYS:
        if getattr(estimator, name, None) is not None:
            tensors[name] = torch.from_numpy(np.asarray(getattr(estimator, name)))
    if hasattr(estimator, "feature_density_"):
        for key, value in estimator.feature_density_.arrays().items():
            tensors[f"{_DENSITY}.{key}"] = torch.from_numpy(np.ascontiguousarray(value))
    save_file(tensors, os.fspath(path), metadata={"skdiffmic": json.dumps(document)})


def _read(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"{path!r} is not a readable skdiffmic model file (truncated or "
            f"corrupt?): {exc}"
        ) from None
    try:
        document = json.loads(metadata["skdiffmic"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(
            f"{path!r} is a safetensors file but not a saved skdiffmic model."
        ) from None
    if document.get("format") != FORMAT:
        raise ValueError(f"{path!r} holds {document.get('format')!r}, not {FORMAT}.")
    if document.get("version") not in _READABLE:
        raise ValueError(
            f"{path!r} has format version {document.get('version')!r}; this "
            f"version of skdiffmic reads versions {list(_READABLE)}."
        )
    return document, tensors


# The parameters each format version added, with the values that the models of
# older formats (which had no such parameter) were trained with: before format
# 3 the paper's training (the denoiser predicts the noise), before format 4 the
# windows chosen on the summed CAMs.
_ADDED_IN = {
    3: {
        "prediction_type": "epsilon",
        "clip_sample": False,
        "focal_weight": 0.0,
        "denoiser_init": "scratch",
    },
    4: {"crop_saliency": "sum"},
    5: {"local_encoder": "full", "image_cache": None},
    6: {"prior_folds": None},
    7: {"prior_noise": 0.0, "prior_snapshot": False},
    8: {"guidance_schedule": "constant"},
    9: {"center_correction": False},
}


def load_estimator(cls, path):
    """Rebuild a fitted ``cls`` from a file written by :func:`save_estimator`."""
    document, tensors = _read(path)
    params = document["params"]
    for version, added in _ADDED_IN.items():
        if document["version"] < version:
            for name, value in added.items():
                params.setdefault(name, value)
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["pairs"]}
    estimator = cls(**params)
    for name, value in document["attributes"].items():
        if name == "image_shape_" and value is not None:
            value = tuple(value)
        setattr(estimator, name, value)
    if not hasattr(estimator, "prediction_type_"):  # formats 1 and 2
        estimator.prediction_type_ = estimator.prediction_type
    dtype = document["classes_dtype"]
    estimator.classes_ = np.array(
        document["classes"], dtype=object if dtype == "object" else np.dtype(dtype)
    )
    if "feature_names_in_" in document:
        estimator.feature_names_in_ = np.array(document["feature_names_in_"], object)
    if "label_names_" in document:
        names = document["label_names_"]
        strings = any(isinstance(n, str) for n in names)
        estimator.label_names_ = np.array(names, dtype=object if strings else None)
    estimator.multilabel_ = bool(document["attributes"].get("multilabel_", False))
    for name in _ARRAYS:
        if name in tensors:
            setattr(estimator, name, tensors.pop(name).numpy())
    density = {
        key[len(_DENSITY) + 1 :]: tensors.pop(key).numpy()
        for key in list(tensors)
        if key.startswith(f"{_DENSITY}.")
    }
    if density:
        try:
            estimator.feature_density_ = FeatureDensity(**density)
        except TypeError:
            raise ValueError(
                f"The feature statistics in {os.fspath(path)!r} are incomplete: "
                f"{sorted(density)}."
            ) from None
    tabular = bool(estimator.tabular_)
    guidance_model, denoiser = build_networks(
        tabular=tabular,
        seed=0,
        n_classes=len(estimator.classes_),
        n_inputs=estimator.n_features_in_ if tabular else estimator.image_shape_[2],
        hidden_dim=estimator.hidden_dim,
        n_timesteps=estimator.n_timesteps,
        backbone=estimator.backbone,
        image_size=estimator.image_size_,
        crop_size=estimator.crop_size_,
        n_crops=estimator.n_crops,
        crop_saliency=estimator.crop_saliency,
        pretrained=False,
        shared_encoder=estimator.denoiser_init == "shared",
        local_encoder=estimator.local_encoder,
        multilabel=estimator.multilabel_,
    )
    for name, module in (("guidance_model_", guidance_model), ("denoiser_", denoiser)):
        prefix = f"{name}."
        state = {
            k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
        }
        if document["version"] < 5:
            # Before format 5 an EfficientNet-style global encoder kept the
            # blocks after its CAM stage (unused); the network has them no more.
            expected = module.state_dict()
            state = {
                k: v
                for k, v in state.items()
                if k in expected or not k.startswith("global_encoder.blocks.")
            }
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"The tensors of {name} in {os.fspath(path)!r} do not match the "
                f"network its parameters describe: {exc}"
            ) from None
        setattr(estimator, name, module.eval())
    leftover = [k for k in tensors if not k.startswith(_MODULES)]
    if leftover:
        raise ValueError(f"Unexpected tensors in the file: {leftover[:5]}.")
    estimator.schedule_ = NoiseSchedule.create(
        estimator.beta_schedule, estimator.n_timesteps
    )
    return estimator
