"""Test-time augmentation: ``tta=True`` averages the 8 symmetries of the square."""

import numpy as np
import pytest
import torch

from skdiffmic._batching import N_VIEWS, dihedral
from skdiffmic.baselines import TimmClassifier

from .conftest import tiny


def views_of(X):
    """The 8 symmetries of each (n, H, W, C) image, as :func:`dihedral` orders
    them on network inputs (n, C, H, W)."""
    out = []
    for view in range(N_VIEWS):
        v = np.rot90(X, view % 4, axes=(1, 2))
        out.append(np.ascontiguousarray(v[:, :, ::-1] if view >= 4 else v))
    return out


def test_dihedral_gives_the_8_distinct_symmetries():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    outs = [dihedral(x, v) for v in range(N_VIEWS)]
    assert torch.equal(outs[0], x)
    assert len({o.numpy().tobytes() for o in outs}) == N_VIEWS
    # Matches the array-side views used below.
    arrays = views_of(x.permute(0, 2, 3, 1).numpy())
    for o, a in zip(outs, arrays):
        np.testing.assert_array_equal(o.permute(0, 2, 3, 1).numpy(), a)
    features = torch.ones(2, 5)
    assert dihedral(features, 3) is features


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"] * 8)
    return X, y


def test_cnn_tta_is_the_mean_over_the_views(data):
    X, y = data
    cnn = TimmClassifier(
        "test_resnet", pretrained=False, max_epochs=1, batch_size=8, random_state=0
    ).fit(X, y)
    plain = [cnn.predict_proba(v) for v in views_of(X[:6])]
    cnn.set_params(tta=True)
    averaged = cnn.predict_proba(X[:6])
    np.testing.assert_allclose(averaged, np.mean(plain, axis=0), atol=1e-6)
    assert not np.allclose(averaged, plain[0], atol=1e-4)
    np.testing.assert_array_equal(cnn.predict(X[:6]), cnn.classes_[averaged.argmax(1)])


def test_diffmic_tta_averages_the_views_with_the_rows_own_noise(data):
    X, y = data
    clf = tiny().fit(X, y)
    prior = [clf.predict_prior_proba(v) for v in views_of(X[:6])]
    plain = clf.predict_proba(X[:6])
    clf.set_params(tta=True)
    np.testing.assert_allclose(
        clf.predict_prior_proba(X[:6]), np.mean(prior, axis=0), atol=1e-6
    )
    averaged = clf.predict_proba(X[:6])
    np.testing.assert_allclose(averaged.sum(1), 1.0)
    assert not np.allclose(averaged, plain, atol=1e-4)
    # An image the symmetries leave unchanged gives the same network input in
    # every view, and its chains keep their noise: tta changes nothing.
    square = np.zeros((2, 16, 16, 3), np.uint8)
    square[:, 4:12, 4:12] = [200, 90, 40]
    square[1, 7:9, 7:9] = 255
    with_tta = clf.predict_proba(square)
    clf.set_params(tta=False)
    np.testing.assert_allclose(with_tta, clf.predict_proba(square), atol=1e-6)


def test_tta_is_ignored_in_the_tabular_mode():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = tiny().fit(X, y)
    plain = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.set_params(tta=True).predict_proba(X), plain)
