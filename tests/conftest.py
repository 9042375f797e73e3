import os

# Before scipy is imported: lets scikit-learn's array-API input check run in
# tests/test_common.py instead of skipping itself.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# Converted ImageNet weights go to a cache of the test run's own, never the
# user's (skdiffmic.weights.cache_dir reads this on every call).
if "SKDIFFMIC_HOME" not in os.environ:
    import tempfile

    os.environ["SKDIFFMIC_HOME"] = tempfile.mkdtemp(prefix="skdiffmic-tests-")

import numpy as np
import pytest

from skdiffmic import DiffMICClassifier, presets
from skdiffmic._networks import build_networks

# The tests' models train from scratch (SCRATCH) on timm's tiny test network.
TINY = dict(
    presets.SCRATCH,
    backbone="test_resnet",
    hidden_dim=32,
    n_timesteps=100,
    max_epochs=2,
    guidance_epochs=1,
    batch_size=8,
    random_state=0,
)


def tiny(**overrides):
    """A DiffMICClassifier small enough for a 2-core CPU test suite."""
    return DiffMICClassifier(**{**TINY, **overrides})


def image_networks(backbone, pretrained=False):
    """The guidance model and denoiser for 32 px RGB images, 2 classes, small."""
    return build_networks(
        tabular=False,
        seed=0,
        n_classes=2,
        n_inputs=3,
        hidden_dim=8,
        n_timesteps=10,
        backbone=backbone,
        image_size=32,
        crop_size=8,
        n_crops=2,
        pretrained=pretrained,
    )


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a network connection fails at once."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    y = np.array(["benign", "malignant", "naevus"] * 8)
    return X, y


@pytest.fixture(scope="session")
def fitted(images):
    X, y = images
    return tiny().fit(X, y)


@pytest.fixture(scope="session")
def trained():
    """DiffMIC fitted on 300 ``make_lesions`` images; the 100 held out.

    The learning test's settings (test_learning.py), shared with the
    pointing game of test_explain.py so that the model is fitted once.
    """
    from skdiffmic.datasets import make_lesions

    X, y = make_lesions(400, image_size=32, n_classes=2, random_state=0)
    clf = (
        DiffMICClassifier(**presets.SCRATCH)
        .set_params(
            backbone="test_resnet",
            hidden_dim=64,
            guidance_epochs=6,
            max_epochs=25,
            batch_size=32,
            augment=False,
            random_state=0,
        )
        .fit(X[:300], y[:300])
    )
    return clf, X[300:], y[300:]
