"""Every kind of bad input gets a clear error, raised before any training starts."""

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image
from sklearn.exceptions import NotFittedError

import skdiffmic._classifier
from tests.conftest import tiny

Y4 = np.array([0, 1, 0, 1])


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a fit gets as far as building or training the networks."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was rejected")

    monkeypatch.setattr(skdiffmic._networks, "build_networks", refuse)
    monkeypatch.setattr(skdiffmic._classifier, "fit_diffmic", refuse)


def _rgb(n=4, size=16):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), np.uint8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_pixels(no_training, bad):
    X = np.zeros((4, 16, 16, 3))
    X[2, 3, 3, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or infinity \(first at image 2\)"):
        tiny().fit(X, Y4)


@pytest.mark.parametrize(
    "X", [np.zeros((0, 16, 16, 3)), np.zeros((0, 16, 16)), [], np.zeros((0, 5))]
)
def test_empty_X(no_training, X):
    with pytest.raises(ValueError, match="0 sample"):
        tiny().fit(X, [])


def test_X_y_length_mismatch(no_training):
    with pytest.raises(ValueError, match="inconsistent numbers of samples: 3 in X"):
        tiny().fit(np.zeros((3, 16, 16)), Y4)


def test_a_single_class(no_training):
    with pytest.raises(ValueError, match=r"at least 2 classes; y has 1 class \('a'\)"):
        tiny().fit(_rgb(), ["a"] * 4)


def test_y_with_nan(no_training):
    with pytest.raises(ValueError, match="y contains NaN"):
        tiny().fit(_rgb(), [0.0, 1.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="missing values"):
        tiny().fit(_rgb(), np.array(["a", None, "b", "a"], dtype=object))


def test_y_none(no_training):
    with pytest.raises(ValueError, match="requires y to be passed"):
        tiny().fit(_rgb(), None)


def test_1d_X(no_training):
    with pytest.raises(ValueError, match="got a 1-D X"):
        tiny().fit(np.zeros(4), Y4)


def test_5d_X(no_training):
    with pytest.raises(ValueError, match="5 dimension"):
        tiny().fit(np.zeros((4, 2, 16, 16, 3)), Y4)


def test_channels_first_array(no_training):
    with pytest.raises(ValueError, match="channels-last.*np.moveaxis"):
        tiny().fit(np.zeros((4, 3, 16, 16)), Y4)


def test_wrong_channel_count_at_predict(fitted):
    with pytest.raises(ValueError, match="1 channel.*fitted on images with 3"):
        fitted.predict(np.zeros((2, 16, 16)))


def test_images_smaller_than_the_network_minimum(no_training):
    with pytest.raises(ValueError, match="6 px a side.*at least 8 px"):
        tiny().fit(np.zeros((4, 6, 6, 3)), Y4)


def test_crop_size_larger_than_the_image(no_training):
    with pytest.raises(ValueError, match="crop_size=20 is larger"):
        tiny(crop_size=20).fit(_rgb(), Y4)


def test_a_path_that_does_not_exist(no_training, tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(_rgb(1)[0]).save(good)
    missing = tmp_path / "missing.png"
    with pytest.raises(ValueError, match=r"X\[1\]: Image file not found.*missing"):
        tiny().fit([good, missing, good, good], Y4)


def test_a_file_that_is_not_an_image(no_training, tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(_rgb(1)[0]).save(good)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"X\[2\]: Not a readable image.*notes"):
        tiny().fit([good, good, text, good], Y4)


def test_a_single_path_string(no_training, tmp_path):
    with pytest.raises(TypeError, match="single path"):
        tiny().fit(str(tmp_path / "a.png"), Y4)


def test_paths_mixed_with_other_values(no_training, tmp_path):
    with pytest.raises(TypeError, match=r"mixes file paths.*X\[1\] is int"):
        tiny().fit(["a.png", 3, "b.png", "c.png"], Y4)


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        tiny().predict(_rgb())
    with pytest.raises(NotFittedError):
        tiny().predict_proba(_rgb())


@pytest.mark.parametrize("dtype", [object, str])
def test_object_or_string_arrays(no_training, dtype):
    with pytest.raises(TypeError, match="dtype"):
        tiny().fit(np.full((4, 16, 16, 3), "a", dtype=dtype), Y4)
    with pytest.raises(TypeError, match="dtype"):
        tiny().fit(np.full((4, 16, 16), "a", dtype=dtype), Y4)


def test_string_feature_matrix(no_training):
    with pytest.raises(TypeError, match="must be numeric"):
        tiny().fit(np.full((4, 3), "a"), Y4)


@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_sparse_matrices(no_training, fmt):
    X = sp.random(4, 10, density=0.5, format=fmt, random_state=0)
    with pytest.raises(TypeError, match="Sparse data is not supported"):
        tiny().fit(X, Y4)


def test_flattened_rows_that_do_not_fit_image_shape(no_training):
    with pytest.raises(ValueError, match="cannot be reshaped to image_shape"):
        tiny(image_shape=(16, 16, 3)).fit(np.zeros((4, 100)), Y4)
    with pytest.raises(ValueError, match="image_shape must be"):
        tiny(image_shape=(16, -1)).fit(np.zeros((4, 100)), Y4)


def test_bad_augment_options(no_training):
    with pytest.raises(ValueError, match="Unknown augment option"):
        tiny(augment={"shear": 3}).fit(_rgb(), Y4)
    with pytest.raises(ValueError, match="rotation"):
        tiny(augment={"rotation": 400}).fit(_rgb(), Y4)


def test_mode_mismatch_at_predict(fitted, tmp_path):
    with pytest.raises(ValueError, match="fitted on images; got a 2-D X"):
        fitted.predict(np.zeros((2, 16 * 16 * 3)))
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    tabular = tiny(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="fitted on feature vectors"):
        tabular.predict(_rgb())
    with pytest.raises(ValueError, match="X has 4 features, but"):
        tabular.predict(np.zeros((2, 4)))


# Inputs that are handled (not refused), in a documented way.


def test_another_image_size_at_predict_is_cropped_and_resized(fitted):
    import torch

    from skdiffmic._inputs import square_resize

    big = np.random.default_rng(1).integers(0, 256, (3, 24, 30, 3), np.uint8)
    same = square_resize(torch.from_numpy(big).permute(0, 3, 1, 2).float() / 255, 16)
    same = same.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(
        fitted.predict_proba(big), fitted.predict_proba(same), atol=1e-6
    )


def test_alpha_channels_of_files_are_dropped(fitted, tmp_path):
    X = _rgb(3)
    rgb, rgba = [], []
    for i, image in enumerate(X):
        alpha = np.full(image.shape[:2] + (1,), 100, np.uint8)
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        Image.fromarray(np.concatenate([image, alpha], -1), "RGBA").save(
            tmp_path / f"{i}a.png"
        )
        rgb.append(tmp_path / f"{i}.png")
        rgba.append(tmp_path / f"{i}a.png")
    expected = fitted.predict_proba(X)
    np.testing.assert_allclose(fitted.predict_proba(rgba), expected, atol=1e-6)
    np.testing.assert_allclose(fitted.predict_proba(rgb), expected, atol=1e-6)


def test_grayscale_and_rgb_files_mixed_are_read_as_rgb(tmp_path):
    X = _rgb(4)
    gray = X[..., 0]
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(gray[i] if i % 2 else X[i]).save(path)
        paths.append(path)
    clf = tiny(max_epochs=1).fit(paths, Y4)
    assert clf.image_shape_ == (16, 16, 3)
    replicated = np.repeat(gray[1:2, ..., None], 3, axis=-1)
    np.testing.assert_allclose(
        clf.predict_proba(paths[1:2]), clf.predict_proba(replicated), atol=1e-6
    )


BOUNDS = {
    "image_size": 4,
    "n_crops": 0,
    "n_timesteps": 1,
    "n_inference_steps": 0,
    "mmd_weight": -0.5,
    "hidden_dim": 0,
    "max_epochs": 0,
    "guidance_epochs": -1,
    "batch_size": 1,
    "learning_rate": 0.0,
    "guidance_learning_rate": -1e-3,
    "ema_decay": 1.0,
    "beta_schedule": "quadratic",
    "sampler": "euler",
}


@pytest.mark.parametrize(
    "name", sorted(skdiffmic._classifier.DiffMICClassifier._parameter_constraints)
)
def test_every_parameter_is_validated(no_training, name):
    from sklearn.utils._param_validation import InvalidParameterError

    values = [object()] + ([BOUNDS[name]] if name in BOUNDS else [])
    for value in values:
        with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
            tiny(**{name: value}).fit(_rgb(), Y4)


def test_constraints_cover_every_parameter():
    from skdiffmic import DiffMICClassifier
    from skdiffmic.baselines import TimmClassifier

    for cls in (DiffMICClassifier, TimmClassifier):
        assert set(cls._parameter_constraints) == set(cls().get_params())


def test_more_ddim_steps_than_timesteps_is_refused_before_training(no_training):
    # diffusers' schedulers refuse it too; it used to be clamped silently.
    with pytest.raises(ValueError, match="n_inference_steps=20 is larger than"):
        tiny(n_timesteps=10, n_inference_steps=20).fit(_rgb(), Y4)
    # The full DDPM chain ignores n_inference_steps: its fit goes on (as far
    # as the fixture lets it).
    with pytest.raises(AssertionError, match="training started"):
        tiny(n_timesteps=10, n_inference_steps=20, sampler="ddpm").fit(_rgb(), Y4)


def test_more_ddim_steps_than_timesteps_is_refused_at_prediction():
    clf = tiny(n_timesteps=10, max_epochs=1).fit(_rgb(), Y4)
    clf.set_params(n_inference_steps=11)
    with pytest.raises(ValueError, match="n_inference_steps=11 is larger than"):
        clf.predict_proba(_rgb())
    clf.set_params(n_inference_steps=10)
    assert clf.predict_proba(_rgb()).shape == (len(Y4), 2)
