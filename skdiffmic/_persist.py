"""Saving a fitted DiffMICClassifier in a format that cannot run code on load.

One ``.safetensors`` file: every tensor of the guidance model and the denoiser
(and the tabular mode's feature statistics), plus a JSON document in the
file's metadata with the format version, the estimator's parameters, its
classes, its fitted attributes and its model card (:mod:`skdiffmic._card`;
``card_`` on the loaded model, None for files saved before cards). Loading
parses JSON and raw tensors only; nothing is unpickled. The networks are
rebuilt from the parameters and the tensors are loaded strictly: a missing,
extra or mis-shaped tensor is an error. The card is never read to predict.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from numbers import Integral

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._card import model_card
from ._diffusion import NoiseSchedule
from ._networks import NetworkSpec
from ._uncertainty import FeatureDensity

__all__ = ["FORMAT_VERSION", "load_estimator", "save_estimator"]

FORMAT = "skdiffmic.DiffMICClassifier"
# One version until the format changes after a release; files of the
# unreleased formats before it are refused with a request to refit.
FORMAT_VERSION = 1
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
    "training_data_",
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


def save_estimator(estimator, path, *, preset=None) -> None:
    """Write a fitted estimator to ``path`` (see the module docstring).

    ``preset`` names the preset its parameters started from, for the card
    (default: the one a loaded card names, else the one they match).
    """
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
    params = {k: _jsonable(v, k) for k, v in params.items()}
    if preset is None and getattr(estimator, "card_", None):
        preset = estimator.card_["configuration"].get("based_on")
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "params": params,
        "spec": _jsonable(asdict(NetworkSpec.of(estimator)), "spec"),
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "classes_dtype": "object" if classes.dtype.kind == "O" else classes.dtype.str,
        "attributes": {
            name: _jsonable(getattr(estimator, name), name)
            for name in _ATTRIBUTES
            if hasattr(estimator, name)
        },
    }
    document["card"] = _jsonable(model_card(estimator, params, preset), "card")
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
    if document.get("version") != FORMAT_VERSION or "spec" not in document:
        raise ValueError(
            f"{path!r} was saved by an earlier, unreleased skdiffmic (format "
            f"{document.get('version')!r}), which this version cannot read; refit "
            "the model and save it again."
        )
    return document, tensors


def load_estimator(cls, path):
    """Rebuild a fitted ``cls`` from a file written by :func:`save_estimator`."""
    document, tensors = _read(path)
    params = document["params"]
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["pairs"]}
    estimator = cls(**params)
    for name, value in document["attributes"].items():
        if name == "image_shape_" and value is not None:
            value = tuple(value)
        setattr(estimator, name, value)
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
    estimator.card_ = document.get("card")
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
    spec = NetworkSpec.of(estimator)
    if asdict(spec) != document["spec"]:
        raise ValueError(
            f"The networks described in {os.fspath(path)!r} differ from those its "
            "parameters build; the file was edited or written by another version."
        )
    guidance_model, denoiser = spec.build()
    for name, module in (("guidance_model_", guidance_model), ("denoiser_", denoiser)):
        prefix = f"{name}."
        state = {
            k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
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
