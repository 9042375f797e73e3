"""The model card's pieces: data summaries, presets, weights, Markdown."""

import numpy as np
import pytest

from skdiffmic import DiffMICClassifier, presets
from skdiffmic._card import (
    _configuration,
    _starting_weights,
    card_markdown,
    data_summary,
)
from skdiffmic._inputs import ArrayImages, PathImages


class _Fitted:
    def __init__(self, classes, label_names=None):
        self.classes_ = np.asarray(classes)
        self.multilabel_ = label_names is not None
        if label_names is not None:
            self.label_names_ = np.asarray(label_names, dtype=object)


def test_summaries_of_arrays_files_and_multilabel_targets(tmp_path):
    from PIL import Image

    X = np.zeros((5, 8, 6, 3), dtype=np.uint8)
    summary = data_summary(
        ArrayImages(X), np.array([0, 1, 1, 0, 1]), _Fitted(["a", "b"])
    )
    assert summary["class_counts"] == {"a": 2, "b": 3}
    assert summary["image_shapes"] == [[8, 6, 3]]
    X[0, 0, 0, 0] = 1  # one changed value changes the fingerprint
    other = data_summary(ArrayImages(X), np.array([0, 1, 1, 0, 1]), _Fitted(["a", "b"]))
    assert other["sha256"]["value"] != summary["sha256"]["value"]
    paths = []
    for k, size in enumerate([(10, 7), (10, 7), (4, 4)]):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(paths[-1])
    Y = np.array([[1, 0], [np.nan, 1], [0, 0]])
    summary = data_summary(PathImages(paths), Y, _Fitted([0, 1], ["edema", "mass"]))
    assert summary["image_sizes"][0] == {"width": 10, "height": 7, "count": 2}
    assert summary["n_image_sizes"] == 2 and summary["channels"] == 1
    assert summary["label_counts"]["edema"] == {
        "positive": 1,
        "negative": 1,
        "unknown": 1,
    }


def test_the_preset_is_detected_or_named():
    defaults = DiffMICClassifier().get_params()
    assert _configuration(defaults, None)["preset"] == "fine_tune"
    paper = {**defaults, **presets.PAPER}
    assert _configuration(paper, None)["preset"] == "paper"
    custom = _configuration({**paper, "hidden_dim": 64}, None)
    assert custom["preset"] == "custom" and custom["based_on"] == "paper"
    assert custom["changed_from_preset"] == {"hidden_dim": 64}
    named = _configuration({**paper, "hidden_dim": 64}, "scratch")
    assert named["preset"] == "custom" and named["based_on"] == "scratch"
    assert named["changed_from_preset"]["prediction_type"] == "epsilon"


@pytest.mark.parametrize(
    "pretrained, licence",
    [(True, "Apache-2.0"), (False, None), ("/weights.safetensors", "unknown")],
)
def test_starting_weights_and_their_licence(pretrained, licence):
    weights = _starting_weights(
        {"backbone": "tf_efficientnet_lite0", "pretrained": pretrained}, False
    )
    assert weights["licence"] == licence


def test_markdown_of_a_card_without_training_data():
    card = {
        "model": {
            "estimator": "E",
            "task": "classification",
            "input": "images",
            "classes": ["a", "b"],
        },
        "training_data": None,
        "intended_use": "Research.",
        "limitations": ["Few."],
        "configuration": {"preset": "paper", "params": {"hidden_dim": 6144}},
        "starting_weights": {
            "backbone": "resnet18",
            "source": "random",
            "licence": None,
        },
        "training": {
            "guidance_epochs": 1,
            "diffusion_epochs": 2,
            "max_epochs": 2,
            "best_epoch": 2,
            "validation": None,
        },
        "software": {"skdiffmic": "0"},
    }
    text = card_markdown(card)
    assert "Not recorded" in text and "| hidden_dim | `6144` |" in text
    assert "- Classes: a, b" in text and "Validation: none" in text
