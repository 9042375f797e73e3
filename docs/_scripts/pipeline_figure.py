"""Draw the DiffMIC pipeline figure of the user guide with matplotlib.

``conf.py`` calls :func:`draw_pipeline` when the build starts; run this file
directly to write the figure elsewhere (``python pipeline_figure.py out.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# One colour per part of the method.
GUIDANCE = "#dbe9f6"  # the DCG guidance model and its priors
TRAIN = "#fde9d9"  # the forward process and the training loss
DENOISE = "#e2f0d9"  # the conditional denoiser
PREDICT = "#ede3f5"  # the reverse chain and the probabilities
EDGE = "#404040"


def _box(ax, x, y, w, h, text, colour, *, size=10.5, weight="normal"):
    """A rounded box with centred text; returns its (x, y, w, h)."""
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.9",
            facecolor=colour,
            edgecolor=EDGE,
            linewidth=1.1,
        )
    )
    ax.text(
        x + w / 2,
        y + h / 2,
        text,
        ha="center",
        va="center",
        fontsize=size,
        fontweight=weight,
        linespacing=1.45,
    )
    return x, y, w, h


def _arrow(ax, start, end, *, dashed=False, rad=0.0, text=None):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=14,
            linewidth=1.2,
            color=EDGE,
            linestyle=(0, (4, 3)) if dashed else "-",
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=2,
            shrinkB=2,
        )
    )
    if text:
        mid_x, mid_y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if abs(end[0] - start[0]) > abs(end[1] - start[1]):  # horizontal: above
            ax.text(mid_x, mid_y + 1.2, text, fontsize=10, ha="center", va="bottom")
        else:  # vertical: to the right
            ax.text(mid_x + 1.0, mid_y, text, fontsize=10, ha="left", va="center")


def _right(box):
    x, y, w, h = box
    return x + w, y + h / 2


def _left(box):
    x, y, w, h = box
    return x, y + h / 2


def _top(box, frac=0.5):
    x, y, w, h = box
    return x + w * frac, y + h


def _bottom(box, frac=0.5):
    x, y, w, h = box
    return x + w * frac, y


def draw_pipeline(path) -> Path:
    """Draw the figure to ``path`` (the format follows the file extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"svg.hashsalt": "skdiffmic", "font.family": "DejaVu Sans"})
    fig, ax = plt.subplots(figsize=(14, 7.8))
    ax.set_xlim(0, 140)
    ax.set_ylim(0, 78)
    ax.axis("off")

    for y, title in (
        (75.5, "1. Priors (DCG model)"),
        (46.5, "2. Training: fit"),
        (20.5, "3. Prediction: predict_proba"),
    ):
        ax.text(1, y, title, fontsize=12.5, fontweight="bold", va="center")

    # 1. Priors.
    image = _box(ax, 1, 56, 15, 11, "image $x$", "white", size=11.5)
    glob = _box(
        ax,
        22,
        62,
        48,
        9.5,
        "global branch: CNN $\\rightarrow$ class activation maps\n"
        "$\\rightarrow$ mean of each map $=$ global prior $\\hat y_g$",
        GUIDANCE,
    )
    local = _box(
        ax,
        22,
        51.5,
        48,
        9.5,
        "local branch: $K$ most salient windows $\\rightarrow$ CNN\n"
        "$\\rightarrow$ gated attention $=$ local prior $\\hat y_l$",
        GUIDANCE,
    )
    _box(
        ax,
        78,
        57,
        26,
        9.5,
        "fused prior\n$\\hat y = (\\hat y_g + \\hat y_l)\\,/\\,2$",
        GUIDANCE,
    )
    _arrow(ax, _right(image), _left(glob), rad=-0.15)
    _arrow(ax, _right(image), _left(local), rad=0.15)
    _arrow(ax, _right(glob), (78, 63.5), rad=-0.1)
    _arrow(ax, _right(local), (78, 59.5), rad=0.1)
    ax.text(
        107,
        61.75,
        "trained with cross-entropy;\nthe softmax of each prior\n"
        "is the mean $p$ of the\nforward process",
        fontsize=10,
        va="center",
        color=EDGE,
    )

    # 2. Training.
    label = _box(ax, 1, 30.5, 15, 9, "label $y_0$ of $x$\n(one-hot)", "white")
    forward = _box(
        ax,
        22,
        28,
        48,
        14,
        "forward diffusion of the label\n"
        "$y_t = \\sqrt{\\bar\\alpha_t}\\,y_0 + (1 - \\sqrt{\\bar\\alpha_t})\\,p"
        " + \\sqrt{1 - \\bar\\alpha_t}\\,\\epsilon$\n"
        "$p \\in \\{\\hat y, \\hat y_g, \\hat y_l\\}$, one shared noise $\\epsilon$",
        TRAIN,
    )
    denoiser = _box(
        ax,
        78,
        28,
        26,
        14,
        "conditional denoiser\n$\\epsilon_\\theta(x, y_t, p, t)$:\n"
        "image code $\\odot$ label path",
        DENOISE,
    )
    loss = _box(
        ax,
        110,
        28,
        29,
        14,
        "loss: MSE on the\nfused path $+\\ \\lambda\\,\\times$\n"
        "MMD on the global\nand local paths",
        TRAIN,
        size=10,
    )
    _arrow(ax, _right(label), _left(forward))
    _arrow(ax, _bottom(local), _top(forward), text="$p$: each prior")
    _arrow(ax, _right(forward), _left(denoiser), text="$y_t$, $p$, $t$")
    _arrow(ax, _right(denoiser), _left(loss), text="$\\epsilon_\\theta$")

    # 3. Prediction.
    start = _box(
        ax,
        1,
        3,
        23,
        12,
        "start at the fused prior\n$y_T \\sim \\mathcal{N}(\\hat y, I)$",
        PREDICT,
    )
    reverse = _box(
        ax,
        32,
        3,
        72,
        12,
        "reverse chain from $y_T$ to $y_0$: n_inference_steps DDIM steps\n"
        "(or the full DDPM chain) on the denoiser's label head;\n"
        "each image is encoded once, whatever the number of steps",
        PREDICT,
    )
    proba = _box(
        ax,
        110,
        3,
        29,
        12,
        "predict_proba:\nsoftmax$(y_0\\,/\\,\\tau)$, mean\nover n_samples chains",
        PREDICT,
        size=10,
    )
    _arrow(ax, _right(start), _left(reverse))
    _arrow(ax, _right(reverse), _left(proba), text="$y_0$")
    _arrow(
        ax, _bottom(denoiser), (91, 15), dashed=True, text="trained $\\epsilon_\\theta$"
    )

    fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(draw_pipeline(sys.argv[1] if len(sys.argv) > 1 else "pipeline.png"))
