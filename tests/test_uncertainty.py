"""predict_uncertainty, its statistics, and the calibration metrics."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import brier_score_loss

from skdiffmic import DiffMICClassifier
from skdiffmic._uncertainty import (
    FeatureDensity,
    chain_statistics,
    paired_t_test,
    shrunk_precision,
)
from skdiffmic.datasets import make_lesions
from skdiffmic.metrics import calibration_bins, expected_calibration_error
from tests.conftest import tiny


@pytest.fixture(scope="module")
def lesion_model():
    X, y = make_lesions(100, image_size=16, random_state=0)
    clf = tiny(max_epochs=3, validation_fraction=0.25, eta=1.0).fit(X[:80], y[:80])
    return clf, X[80:], y[80:]


def test_noise_images_are_flagged_confident_less_often_than_clean_ones(lesion_model):
    clf, X_clean, _ = lesion_model
    noise = np.random.default_rng(0).integers(0, 256, X_clean.shape, dtype=np.uint8)
    clean = clf.predict_uncertainty(X_clean)
    noisy = clf.predict_uncertainty(noise)
    assert noisy["confident"].mean() < clean["confident"].mean()
    # The typicality test is what catches them: noise lies far from the
    # training features, and no reference image is as far.
    assert noisy["feature_distance"].min() > clean["feature_distance"].median()
    assert (noisy["ood_p_value"] <= 0.05).mean() > 0.9
    assert (clean["ood_p_value"] > 0.05).mean() > 0.8


def test_uncertainty_frame(lesion_model):
    clf, X, _ = lesion_model
    frame = clf.predict_uncertainty(X, n_samples=16, alpha=0.1)
    assert list(frame.columns) == [
        "prediction",
        "probability",
        "entropy",
        "interval_width",
        "p_value",
        "feature_distance",
        "ood_p_value",
        "confident",
    ]
    assert len(frame) == len(X) and frame["confident"].dtype == bool
    samples = clf.sample_proba(X, n_samples=16)
    mean = samples.mean(1)
    np.testing.assert_array_equal(frame["prediction"], clf.classes_[mean.argmax(1)])
    np.testing.assert_allclose(frame["probability"], mean.max(1))
    assert np.all(frame["entropy"].between(0, np.log(len(clf.classes_)) + 1e-12))
    assert np.all(frame["interval_width"].between(0, 1))
    np.testing.assert_array_equal(
        frame["confident"], (frame["p_value"] < 0.1) & (frame["ood_p_value"] > 0.1)
    )
    # Reproducible, and the same p-values as scipy's paired t-test.
    pd.testing.assert_frame_equal(
        frame, clf.predict_uncertainty(X, n_samples=16, alpha=0.1)
    )
    # The t-test is on the chains' y0, which give the samples at the
    # fitted temperature.
    data, device = clf._prepare(X)
    y0 = clf._denoise_rows(data, device, clf._inference_networks(), 16).y0
    np.testing.assert_allclose(clf._readout().chain_proba(y0), samples)
    order = np.argsort(-mean, 1)
    rows = np.arange(len(X))
    expected = stats.ttest_rel(
        y0[rows, :, order[:, 0]], y0[rows, :, order[:, 1]], axis=1
    ).pvalue
    np.testing.assert_allclose(frame["p_value"], expected, rtol=1e-6)


def test_uncertainty_keeps_a_pandas_index(lesion_model, tmp_path):
    from PIL import Image

    clf, X, _ = lesion_model
    paths = []
    for i, image in enumerate(X[:4]):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    series = pd.Series(paths, index=["a", "b", "c", "d"])
    frame = clf.predict_uncertainty(series, n_samples=4)
    assert list(frame.index) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(
        frame["p_value"], clf.predict_uncertainty(X[:4], n_samples=4)["p_value"]
    )


def test_uncertainty_rejects_bad_arguments(lesion_model):
    clf, X, _ = lesion_model
    with pytest.raises(ValueError, match="n_samples must be an int >= 2"):
        clf.predict_uncertainty(X, n_samples=1)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        clf.predict_uncertainty(X, alpha=1.0)
    with pytest.warns(UserWarning, match="Only 5 reference images"):
        tiny(max_epochs=1).fit(X[:5], [0, 1, 0, 1, 0]).predict_uncertainty(X[:2])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        tiny().predict_uncertainty(X)


def test_feature_density_survives_save_and_load(lesion_model, tmp_path):
    clf, X, _ = lesion_model
    clf.save(tmp_path / "m.safetensors")
    loaded = DiffMICClassifier.load(tmp_path / "m.safetensors")
    pd.testing.assert_frame_equal(
        loaded.predict_uncertainty(X, n_samples=4),
        clf.predict_uncertainty(X, n_samples=4),
    )


def test_without_validation_the_reference_is_cross_fitted(images, fitted):
    # No hold-out: the reference distances are the training rows', each under
    # a density fitted without it, not the (far too small) in-sample ones.
    X, y = images
    density = fitted.feature_density_
    assert len(density.reference) == len(X)
    features = fitted._denoise_rows(
        *fitted._prepare(X), fitted._inference_networks(), with_features=True
    ).statistics
    codes = np.searchsorted(fitted.classes_, y)
    crossed = FeatureDensity.cross_fitted_distances(
        features, codes, 3, seed=fitted.sampling_seed_ % (2**32)
    )
    np.testing.assert_allclose(density.reference, np.sort(crossed), rtol=1e-6)
    in_sample = density.distance(features)
    assert np.median(crossed) > np.median(in_sample)


@pytest.mark.parametrize(
    "n, d, rank",
    [(40, 300, 40), (300, 40, 40), (50, 50, 50), (60, 200, 10), (30, 1, 1)],
)
def test_shrunk_precision_is_ledoit_wolf_pseudo_inverted(n, d, rank):
    # The Gram-matrix route gives scikit-learn's Ledoit-Wolf covariance,
    # pseudo-inverted, for fewer rows than features, more, as many, and rows
    # of low rank (the class-centred features of a small image set).
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(n + d)
    X = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) * rng.gamma(1, 1, d)
    X -= X.mean(axis=0)
    expected = np.linalg.pinv(
        LedoitWolf(assume_centered=True).fit(X).covariance_, hermitian=True
    )
    np.testing.assert_allclose(
        shrunk_precision(X), expected, rtol=1e-6, atol=1e-8 * np.abs(expected).max()
    )


def test_cross_fitting_copes_with_a_class_of_one_image():
    features = np.random.default_rng(0).normal(size=(6, 3))
    codes = np.array([0, 0, 0, 0, 0, 1])
    out = FeatureDensity.cross_fitted_distances(features, codes, 2)
    assert out.shape == (6,) and np.all(np.isfinite(out))


def test_paired_t_test_matches_scipy_and_handles_constant_differences():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 30)), rng.random((5, 30))
    np.testing.assert_allclose(
        paired_t_test(a, b), stats.ttest_rel(a, b, axis=1).pvalue, rtol=1e-10
    )
    same = np.ones((2, 10))
    np.testing.assert_array_equal(paired_t_test(same, same * [[0.5], [1.0]]), [0, 1])


def test_chain_statistics_on_known_samples():
    # Image 0: every chain says class 1 with 0.9. Image 1: the chains split.
    samples = np.array(
        [
            [[0.05, 0.9, 0.05]] * 4,
            [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.75, 0.15, 0.1], [0.2, 0.7, 0.1]],
        ]
    )
    out = chain_statistics(samples, np.log(samples))
    np.testing.assert_array_equal(out["top"], [1, 0])
    np.testing.assert_allclose(out["probability"], [0.9, 0.4625])
    expected = -(0.9 * np.log(0.9) + 2 * 0.05 * np.log(0.05))
    np.testing.assert_allclose(out["entropy"][0], expected)
    assert out["interval_width"][0] == 0 and out["interval_width"][1] > 0.5
    assert out["p_value"][0] == 0 and out["p_value"][1] > 0.5


def test_feature_density_distance_and_conformal_p_value():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    codes = np.repeat([0, 1], 200)
    features = centres[codes] + rng.normal(size=(400, 2)) * [1.0, 3.0]
    density = FeatureDensity.fit(features, codes, 2)
    # The Mahalanobis distance of the shared covariance (about diag(1, 9)).
    np.testing.assert_allclose(density.distance([[0, 3], [10, 0]]), [1, 0], atol=0.1)
    density.reference = np.sort(density.distance(features))
    p = density.p_value(density.distance([[0.0, 0.0], [5.0, 40.0]]))
    assert p[0] > 0.9 and p[1] == 1 / 401
    # (1 + #{reference >= d}) / (1 + n): a reference point's own p-value.
    d = density.reference[99]
    assert density.p_value(np.array([d]))[0] == (1 + 400 - 99) / 401


def test_expected_calibration_error():
    y = np.array([0, 1, 1, 0])
    # Confidence 0.8 everywhere, 3 of 4 right: ECE = |0.75 - 0.8|.
    proba = np.array([[0.8, 0.2], [0.2, 0.8], [0.2, 0.8], [0.2, 0.8]])
    assert expected_calibration_error(y, proba) == pytest.approx(0.05)
    # Perfectly calibrated: 0.5 confidence, half right.
    half = np.full((4, 2), 0.5)
    assert expected_calibration_error(y, half) == pytest.approx(0.0)
    conf, acc, count = calibration_bins(y, proba, n_bins=5)
    assert count.tolist() == [0, 0, 0, 4, 0]  # 0.8 is the upper edge of bin 3
    assert acc[3] == 0.75 and np.isnan(acc[0])
    labels = np.array(["a", "b"])
    assert expected_calibration_error(labels[y], proba, labels=labels) == pytest.approx(
        0.05
    )
    with pytest.raises(ValueError, match="columns"):
        expected_calibration_error(y, np.ones((4, 3)) / 3)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(y, proba, n_bins=0)


def test_brier_score_of_scikit_learn_is_the_multiclass_one():
    # The benchmark uses scikit-learn's Brier score: the mean squared distance
    # to the one-hot label, summed over the classes.
    y = np.array([0, 2])
    proba = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    assert brier_score_loss(y, proba, labels=[0, 1, 2]) == pytest.approx(0.375 / 2)


def test_uncertainty_in_the_tabular_mode():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 1, (60, 4)), rng.normal(2, 1, (60, 4))])
    y = np.repeat(["a", "b"], 60)
    clf = tiny(max_epochs=5, validation_fraction=0.25).fit(X, y)
    frame = clf.predict_uncertainty(X[::10], n_samples=8)
    assert len(frame) == 12 and set(frame["prediction"]) <= {"a", "b"}
    # Features far outside the training range fail the typicality test.
    far = clf.predict_uncertainty(X[:5] * 50, n_samples=8)
    assert (far["ood_p_value"] < frame["ood_p_value"].min()).all()
    assert not far["confident"].any()


def test_a_class_without_rows_has_no_mean_to_be_near():
    # In a cross-fitting fold a class may have no rows: it must not leave a
    # mean at the origin that far-out rows would be measured against.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 3)) + 100.0
    codes = np.arange(20) % 2
    density = FeatureDensity.fit(features, codes, 3)
    assert np.isnan(density.means[2]).all()
    both = FeatureDensity.fit(features, codes, 2)
    np.testing.assert_allclose(density.distance(-features), both.distance(-features))
