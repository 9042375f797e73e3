"""TimmFeatures: frozen backbone features, the linear probe's transformer."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks

from skdiffmic.baselines import TimmFeatures
from skdiffmic.datasets import make_lesions


def tiny(**params):
    return TimmFeatures(
        "test_resnet", **{"pretrained": False, "batch_size": 4, **params}
    )


def _rgb(n=10, size=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# scikit-learn's checks that do not feed feature matrices (the transformer
# takes images; the data checks' 2-D arrays of any width are not images).
API_CHECKS = (
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_no_attributes_set_in_init",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_valid_tag_types",
    "check_estimator_tags_renamed",
    "check_mixin_order",
)


@pytest.mark.parametrize("name", API_CHECKS)
def test_scikit_learn_api_checks(name):
    getattr(estimator_checks, name)(type(tiny()).__name__, tiny())


def test_features_are_the_frozen_pooled_backbone():
    X = _rgb()
    features = tiny().fit(X)
    out = features.transform(X)
    assert out.shape == (10, features.n_features_out_) and out.dtype == np.float32
    assert not any(p.requires_grad for p in features.model_.parameters())
    # The backbone's own pooled output of the estimators' preprocessing.
    data, device = features._prepare(X)
    x = next(iter(features._batches(data, device))).x
    with torch.no_grad():
        expected = features.model_(x).numpy()
    np.testing.assert_allclose(out[:4], expected, rtol=1e-5, atol=1e-6)
    names = features.get_feature_names_out()
    assert len(names) == features.n_features_out_ and names[0] == "timmfeatures0"


def test_fit_learns_nothing_and_rows_do_not_depend_on_their_batch():
    X = _rgb(12)
    a = tiny().fit(X[:3]).transform(X)
    b = tiny(batch_size=5).fit(X).transform(X[::-1])[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tiny().fit_transform(X), tiny().fit(X).transform(X))


def test_paths_give_the_arrays_features(tmp_path):
    X = _rgb(6)
    paths = []
    for i, image in enumerate(X):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    np.testing.assert_array_equal(
        tiny().fit(paths).transform(paths), tiny().fit(X).transform(X)
    )


def test_pickle_clone_and_unfitted():
    X = _rgb(6)
    features = tiny().fit(X)
    again = pickle.loads(pickle.dumps(features))
    np.testing.assert_array_equal(again.transform(X), features.transform(X))
    assert not hasattr(clone(features), "model_")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        tiny().transform(X)


def test_bad_input_is_refused_before_any_network_is_built():
    with pytest.raises(ValueError, match="needs images"):
        tiny().fit(np.zeros((4, 10)))
    with pytest.raises(ValueError, match="Unknown timm backbone"):
        TimmFeatures("no_such_net", pretrained=False).fit(_rgb(2))


def test_the_imagenet_features_are_offline_and_the_probe_learns(no_network):
    # The offline lite0 ImageNet weights: a probe on them beats one on the same
    # network's random weights (0.99 against 0.85 when this was written).
    X, y = make_lesions(150, image_size=64, n_classes=2, random_state=0)

    def probe(pretrained):
        steps = (TimmFeatures(pretrained=pretrained), StandardScaler())
        model = make_pipeline(*steps, LogisticRegression(max_iter=1000))
        return cross_val_score(model, X, y, cv=3, scoring="accuracy").mean()

    imagenet, random = probe(True), probe(False)
    assert imagenet > 0.9 and imagenet > random + 0.05
