"""Row sources: arrays, image files, Series / DataFrames of paths, augmentation."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skdiffmic._inputs import Augment, PathImages, as_paths, row_seeds, square_resize
from tests.conftest import tiny


def _write(tmp_path, X, fmt="png"):
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / f"img{i:03d}.{fmt}"
        Image.fromarray(image.squeeze()).save(path)
        paths.append(path)
    return paths


def test_fit_and_predict_on_paths_equal_fit_and_predict_on_the_array(tmp_path, images):
    X, y = images
    paths = _write(tmp_path, X)
    from_array = tiny().fit(X, y)
    from_files = tiny().fit([str(p) for p in paths], y)
    np.testing.assert_allclose(
        from_files.predict_proba(paths), from_array.predict_proba(X), atol=1e-6
    )
    np.testing.assert_array_equal(from_files.predict(paths), from_array.predict(X))
    assert from_files.image_shape_ == from_array.image_shape_ == (16, 16, 3)


def test_series_and_one_column_dataframe_of_paths(tmp_path, images, fitted):
    X, _ = images
    paths = [str(p) for p in _write(tmp_path, X[:5])]
    expected = fitted.predict_proba(X[:5])
    for container in (
        pd.Series(paths),
        pd.DataFrame({"path": paths}),
        np.array(paths),
        np.array(paths, dtype=object)[:, None],
        tuple(paths),
    ):
        np.testing.assert_allclose(fitted.predict_proba(container), expected, atol=1e-6)


def test_as_paths_leaves_other_inputs_alone():
    assert as_paths(np.zeros((3, 4))) is None
    assert as_paths(pd.DataFrame({"a": [1.0, 2.0]})) is None
    assert as_paths([[1, 2], [3, 4]]) is None


def test_files_of_varying_sizes_and_modes(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(20, 30), (40, 24), (18, 18), (64, 50)]):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8))
        image = image.convert(["RGB", "L", "P", "RGBA"][i])
        path = tmp_path / f"{i}.png"
        image.save(path)
        paths.append(path)
    source = PathImages(paths)
    assert source.channels == 3 and source.shape == (None, None, 3)
    assert list(source.shorter_sides()) == [20, 24, 18, 50]
    source.size = 16
    batch = source.load([3, 0])
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    clf = tiny(max_epochs=1).fit(paths, [0, 1, 0, 1])
    # The median shorter side (22 px) sets the network input.
    assert clf.image_size_ == 22 and clf.image_shape_ == (None, None, 3)
    assert clf.predict(paths).shape == (4,)


def test_uint16_grayscale_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 65536, (4, 16, 16), dtype=np.uint16)
    paths = _write(tmp_path, X)
    source = PathImages(paths, size=16)
    assert source.channels == 1
    np.testing.assert_allclose(
        source.load([2])[0, 0].numpy(), X[2] / 65535.0, rtol=0, atol=1e-7
    )


def test_row_seeds_depend_on_the_row_only():
    rows = torch.rand(5, 3, 4, 4)
    seeds = row_seeds(rows, 7)
    assert row_seeds(rows[[4, 2]], 7) == [seeds[4], seeds[2]]
    assert len(set(seeds)) == 5
    assert row_seeds(rows, 8) != seeds


def test_square_resize_crops_the_centre():
    batch = torch.zeros(1, 1, 4, 8)
    batch[..., 2:6] = 1.0
    np.testing.assert_array_equal(
        square_resize(batch, None).numpy(), np.ones((1, 1, 4, 4))
    )


def test_augment_flips_and_rotates_reproducibly():
    batch = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    flips = Augment(hflip=True, vflip=False, rotation=0)
    out = flips(batch, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], batch[i]) or torch.equal(out[i], batch[i].flip(-1))
    rotate = Augment(hflip=False, vflip=False, rotation=30)
    a = rotate(batch, torch.Generator().manual_seed(1))
    b = rotate(batch, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, batch)
    # A rotation moves pixels but keeps the centre where it was.
    assert torch.allclose(
        a[:, :, 3:5, 3:5].mean(), batch[:, :, 3:5, 3:5].mean(), rtol=0.05
    )
    assert Augment(False, False, 0)(batch, torch.Generator()).equal(batch)


@pytest.mark.parametrize("augment", [False, {"hflip": True}, True])
def test_augment_parameter_is_training_only(images, augment):
    X, y = images
    clf = tiny(augment=augment, max_epochs=1).fit(X, y)
    # Prediction never augments: the same input twice gives the same output.
    np.testing.assert_array_equal(clf.predict_proba(X[:4]), clf.predict_proba(X[:4]))


@pytest.mark.parametrize("where", ["memory", "directory"])
def test_image_cache_decodes_each_file_once_and_changes_nothing(
    tmp_path, images, monkeypatch, where
):
    import skdiffmic._inputs as inputs

    X, y = images
    paths = [str(p) for p in _write(tmp_path, X)]
    cache = "memory" if where == "memory" else str(tmp_path / "cache")
    reads = []
    real_read = inputs.read_image

    def counting_read(path, *args, **kwargs):
        reads.append(path)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(inputs, "read_image", counting_read)
    plain = tiny().fit(paths, y)
    n_plain = len(reads)
    reads.clear()
    cached = tiny(image_cache=cache).fit(paths, y)
    # Guidance + diffusion epochs and the calibration pass read every file
    # again without a cache; with one, each file is decoded once.
    assert n_plain >= 3 * len(paths)
    assert sorted(reads) == sorted(paths)
    # The cached images are the decoded ones: the same weights and outputs.
    np.testing.assert_array_equal(
        cached.predict_proba(paths), plain.predict_proba(paths)
    )
    if where == "directory":
        assert len(list((tmp_path / "cache").glob("images-*.npy"))) >= 1
        # Another fit on the same files reads the directory, decoding nothing.
        reads.clear()
        tiny(image_cache=cache).fit(paths, y)
        assert reads == []


def test_image_cache_directory_is_keyed_by_the_files_and_size(tmp_path, images):
    X, _ = images
    paths = [str(p) for p in _write(tmp_path, X[:4])]
    key = PathImages(paths, size=16).cache_key()
    assert PathImages(paths, size=16).cache_key() == key
    assert PathImages(paths, size=8).cache_key() != key
    assert PathImages(paths[::-1], size=16).cache_key() != key
    Image.fromarray(X[5]).save(paths[0])  # the file changes on disk
    assert PathImages(paths, size=16).cache_key() != key


def test_image_cache_is_validated(images):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = images
    with pytest.raises(InvalidParameterError, match="image_cache"):
        tiny(image_cache=3).fit(X, y)


def test_image_cache_rows_repeat_and_half_written_rows_are_decoded_again(
    tmp_path, images
):
    X, _ = images
    paths = [str(p) for p in _write(tmp_path, X[:6])]
    plain = PathImages(paths, size=16)
    cached = PathImages(paths, size=16, cache=str(tmp_path / "cache"))
    expected = plain.load([3, 1, 3, 5])
    torch.testing.assert_close(cached.load([3, 1, 3, 5]), expected, rtol=0, atol=0)
    # A row that another process left half written (NaN after its first
    # pixels) reads as missing: it is decoded again, not returned as it is.
    cached.cache.images[1, :, 8:, :] = np.nan
    again = PathImages(paths, size=16, cache=str(tmp_path / "cache"))
    torch.testing.assert_close(again.load([1, 3]), plain.load([1, 3]), rtol=0, atol=0)
    assert not np.isnan(again.cache.images[1]).any()
