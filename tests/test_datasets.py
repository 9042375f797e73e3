import numpy as np
import pytest

from skdiffmic.datasets import make_lesions


def test_make_lesions_shapes_balance_and_determinism():
    X, y = make_lesions(30, image_size=24, n_classes=3, random_state=0)
    assert X.shape == (30, 24, 24, 3) and X.dtype == np.uint8
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [10, 10, 10]
    X2, y2 = make_lesions(30, image_size=24, n_classes=3, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make_lesions(30, image_size=24, n_classes=3, random_state=1)
    assert not np.array_equal(X, X3)


def test_make_lesions_global_colour_does_not_give_the_class_away():
    X, y = make_lesions(600, image_size=32, n_classes=2, random_state=0)
    means = X.reshape(len(X), -1, 3).mean(1)
    gap = np.abs(means[y == 0].mean(0) - means[y == 1].mean(0))
    spread = means.std(0)
    assert np.all(gap < 0.25 * spread)


def test_make_lesions_classes_differ_locally():
    # Class 0 (horizontal stripes) varies down the rows, class 1 along the columns.
    X, y = make_lesions(200, image_size=32, n_classes=2, random_state=0)
    gray = X.astype(float).mean(-1)
    row_var = np.abs(np.diff(gray, axis=1)).mean((1, 2))
    col_var = np.abs(np.diff(gray, axis=2)).mean((1, 2))
    ratio = col_var / row_var
    assert ratio[y == 0].mean() < ratio[y == 1].mean()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"image_size": 8}, "image_size"),
        ({"n_classes": 1}, "n_classes"),
        ({"patch_size": 30}, "patch_size"),
    ],
)
def test_make_lesions_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_lesions(**{"n_samples": 10, **kwargs})


def test_make_lesions_returns_where_the_patch_is():
    X, y = make_lesions(20, image_size=32, random_state=0)
    X2, y2, patches = make_lesions(
        20, image_size=32, random_state=0, return_patches=True
    )
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert patches.shape == (20, 4) and patches.dtype == np.int64
    assert np.all(patches[:, 2:] == 6)  # max(5, 32 // 5)
    # Without noise, the stripes change exactly the pixels of the patch.
    plain, *_ = make_lesions(20, contrast=0, noise=0, random_state=0)
    striped, _, boxes = make_lesions(20, noise=0, random_state=0, return_patches=True)
    np.testing.assert_array_equal(boxes, patches)
    changed = np.any(plain != striped, axis=-1)
    for mask, (row, col, h, w) in zip(changed, boxes):
        inside = np.zeros_like(mask)
        inside[row : row + h, col : col + w] = True
        assert mask[inside].mean() > 0.5 and not mask[~inside].any()
