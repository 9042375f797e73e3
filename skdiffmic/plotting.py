"""Figures of a fitted model's explanations (needs matplotlib).

matplotlib is not a dependency of skdiffmic; install it with the
``benchmark`` or ``docs`` extra (``pip install "skdiffmic[benchmark]"``).
"""

from __future__ import annotations

import numpy as np

from ._explain import class_maps

__all__ = ["plot_explanation"]

_BARS = (
    ("prior_global", "global prior", "#9ecae1"),
    ("prior_local", "local prior", "#4292c6"),
    ("prior_fused", "fused prior", "#08519c"),
    ("proba", "DiffMIC", "#fd8d3c"),
)
_WINDOW_COLOUR = "#00e5ff"


def _matplotlib():
    try:
        import matplotlib
        import matplotlib.patches
        import matplotlib.patheffects
    except ImportError as exc:
        raise ImportError(
            "skdiffmic.plotting needs matplotlib; install it with the benchmark "
            'or docs extra: pip install "skdiffmic[benchmark]".'
        ) from exc
    return matplotlib


def _one_row(X, index):
    """``X`` cut down to the row ``index`` (arrays, sequences, pandas)."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index must be an int; got {type(index).__name__}.")
    n = len(X)
    if not -n <= index < n:
        raise IndexError(f"index {index} is out of range for {n} images.")
    i = int(index) % n
    if hasattr(X, "iloc"):
        return X.iloc[[i]]
    if isinstance(X, (list, tuple)):
        return [X[i]]
    return np.asarray(X)[i : i + 1]


def _axes(ax):
    """The image and bar-chart axes for ``ax`` (None, one Axes or a pair)."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig, (image_ax, bar_ax) = plt.subplots(
            1, 2, figsize=(8.5, 4), gridspec_kw={"width_ratios": [1.25, 1]}
        )
        return fig, image_ax, bar_ax
    if isinstance(ax, (list, tuple, np.ndarray)):
        if len(ax) != 2:
            raise ValueError(
                f"ax must be None, one Axes or a pair of Axes; got {len(ax)} axes."
            )
        image_ax, bar_ax = ax
        return image_ax.figure, image_ax, bar_ax
    # One Axes: the bar chart goes in an inset on its right-hand side.
    return ax.figure, ax, ax.inset_axes([1.08, 0.1, 0.75, 0.8])


def _draw_image(ax, explanation, heat, matplotlib):
    image = explanation.images[0]
    if image.shape[-1] >= 3:
        ax.imshow(np.clip(image[..., :3], 0, 1), interpolation="nearest")
    else:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    overlay = ax.imshow(
        heat,
        cmap="inferno",
        vmin=0,
        vmax=1,
        alpha=0.45,
        interpolation="bilinear",
    )
    outline = [matplotlib.patheffects.withStroke(linewidth=2.5, foreground="black")]
    attention = explanation.attention[0]
    for k, ((row, col, height, width), weight) in enumerate(
        zip(explanation.windows[0], attention), start=1
    ):
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (col - 0.5, row - 0.5),
                width,
                height,
                fill=False,
                edgecolor=_WINDOW_COLOUR,
                linewidth=0.75 + 6.0 * float(weight),
                gid=f"window-{k}",
            )
        )
        ax.text(
            col,
            row,
            str(k),
            color="white",
            fontsize=8,
            fontweight="bold",
            ha="left",
            va="top",
            path_effects=outline,
        )
    weights = "  ".join(f"{k}: {w:.2f}" for k, w in enumerate(attention, start=1))
    ax.set_xlabel(f"attention  {weights}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return overlay


def _draw_bars(ax, explanation, classes):
    n_classes = len(classes)
    positions = np.arange(n_classes)
    height = 0.8 / len(_BARS)
    for j, (key, label, colour) in enumerate(_BARS):
        ax.barh(
            positions - 0.4 + (j + 0.5) * height,
            explanation[key][0],
            height=height,
            color=colour,
            label=label,
        )
    ax.set_yticks(positions, [str(c) for c in classes])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.legend(
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=2,
        frameon=False,
    )


def plot_explanation(clf, X, index, ax=None, *, overlay="saliency"):
    """Draw one image's explanation: saliency, windows, attention, probabilities.

    The image as the network sees it (centre-cropped and resized), with the
    saliency map (or the predicted class's CAM) over it; the ``n_crops``
    windows of the local prior, numbered in the order they were chosen, each
    drawn with a line width growing with its attention weight (the weights
    are listed under the image); and a bar chart of the global, local and fused prior
    probabilities and DiffMIC's
    :meth:`~skdiffmic.DiffMICClassifier.predict_proba` for every class. See
    :meth:`~skdiffmic.DiffMICClassifier.explain` for the quantities and
    :doc:`/user_guide/explanations` for what they can and cannot show.

    Parameters
    ----------
    clf : DiffMICClassifier
        A fitted estimator (image mode).
    X : array-like, list of paths, pandas Series or DataFrame
        Images, as for :meth:`~skdiffmic.DiffMICClassifier.fit`. Only the
        image at ``index`` is explained.
    index : int
        Position of the image in ``X`` (negative counts from the end).
    ax : matplotlib Axes, pair of Axes or None, default=None
        Where to draw. ``None`` makes a new figure with two axes side by
        side; a pair ``(image_ax, bar_ax)`` draws the image in the first and
        the bar chart in the second; one Axes draws the image in it and the
        bar chart in an inset axes to its right.
    overlay : {"saliency", "cam"}, default="saliency"
        The map drawn over the image: ``"saliency"``, the map the windows are
        chosen on (all classes' CAMs, min-max normalised and summed);
        ``"cam"``, the class activation map of the class DiffMIC predicts,
        upsampled bilinearly and min-max scaled. With two classes the two
        CAMs are close to mirror images, so their normalised sum can be
        nearly flat where the predicted class's CAM still shows where its
        evidence is (see :doc:`/user_guide/explanations`).

    Returns
    -------
    fig : matplotlib Figure
        The figure drawn in.
    axes : tuple of (Axes, Axes)
        ``(image_ax, bar_ax)``: the image with its map and windows
        (its windows are the ``Rectangle`` patches of the axes), and the bar
        chart.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If ``overlay`` is not one of the two maps.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skdiffmic import DiffMICClassifier
    >>> from skdiffmic.plotting import plot_explanation
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(20, 32, 32, 3), dtype=np.uint8)
    >>> y = np.array(["benign", "malignant"] * 10)
    >>> clf = DiffMICClassifier(backbone="test_resnet", pretrained=False,
    ...                         hidden_dim=32, max_epochs=1, guidance_epochs=1,
    ...                         batch_size=10, random_state=0).fit(X, y)
    >>> fig, (image_ax, bar_ax) = plot_explanation(clf, X, 0)
    >>> len(image_ax.patches)  # one rectangle per window
    6
    """
    if overlay not in ("saliency", "cam"):
        raise ValueError(f'overlay must be "saliency" or "cam"; got {overlay!r}.')
    matplotlib = _matplotlib()
    explanation = clf.explain(_one_row(X, index))
    classes = clf.classes_
    top = int(np.argmax(explanation.proba[0]))
    if overlay == "saliency":
        heat, label = explanation.saliency[0], "saliency"
    else:
        size = explanation.saliency.shape[1:]
        heat = class_maps(explanation.cams, [top], size)[0]
        label = f"CAM of {classes[top]}"
    fig, image_ax, bar_ax = _axes(ax)
    image = _draw_image(image_ax, explanation, heat, matplotlib)
    fig.colorbar(image, ax=image_ax, fraction=0.046, pad=0.02, label=label)
    image_ax.set_title(
        f"DiffMIC: {classes[top]} ({explanation.proba[0, top]:.2f})", fontsize=10
    )
    _draw_bars(bar_ax, explanation, classes)
    return fig, (image_ax, bar_ax)
