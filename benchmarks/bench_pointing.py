"""Does DiffMIC's explanation point at the evidence? The pointing game.

On ``make_lesions`` the class lives only in a small striped patch, whose
position is known (``return_patches=True``). A model is fitted at
``presets.SCRATCH`` on a small budget (400 images of 32 px, 2 classes, the
first 300 for training, ``test_resnet`` with ``hidden_dim=64``, 6 guidance
and 25 diffusion epochs, no augmentation) and
:meth:`~skdiffmic.DiffMICClassifier.explain` is run on the 100 held-out
images. Printed, per seed and on average:

- the share of images whose highest-attention window overlaps the patch,
  against chance: the share of all window positions that overlap it (a
  window placed uniformly at random);
- the same for the first window the greedy selection chose (the most
  salient one);
- the share whose saliency maximum lies inside the patch, against chance:
  the patch's share of the image;
- the same for the maximum of the CAM of the class DiffMIC predicts
  (upsampled bilinearly like the saliency map);
- the held-out accuracy of DiffMIC, its fused prior and its local prior.

    python -m benchmarks.bench_pointing                  # seed 0
    python -m benchmarks.bench_pointing --seeds 0 1 2 3 4
    python -m benchmarks.bench_pointing --crop-saliency sum
"""

from __future__ import annotations

import time

import numpy as np
import torch

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import make_lesions

from ._common import parser, pointing_chance, pointing_game

ROWS = (
    ("highest-attention window overlaps the patch", "attention", "window"),
    ("first (most salient) window overlaps the patch", "first_window", "window"),
    ("saliency maximum inside the patch", "saliency", "saliency"),
    ("predicted class's CAM maximum inside the patch", "cam", "saliency"),
)


def run(seed: int, args) -> dict:
    X, y, patches = make_lesions(
        args.n_images,
        image_size=args.image_size,
        n_classes=2,
        random_state=seed,
        return_patches=True,
    )
    n_train = args.n_train
    start = time.perf_counter()
    config = dict(
        presets.SCRATCH,
        backbone="test_resnet",
        hidden_dim=64,
        crop_saliency=args.crop_saliency,
    )
    clf = DiffMICClassifier(
        **config,
        guidance_epochs=args.guidance_epochs,
        max_epochs=args.max_epochs,
        batch_size=32,
        augment=False,
        device=args.device,
        random_state=seed,
    ).fit(X[:n_train], y[:n_train])
    fit_time = time.perf_counter() - start
    # The patches are in image pixels: the network input must be the image.
    assert clf.image_size_ == args.image_size
    explanation = clf.explain(X[n_train:])
    boxes = patches[n_train:]
    hits = pointing_game(explanation, boxes)
    chance = pointing_chance(boxes, clf.image_size_, clf.crop_size_)
    accuracy = np.mean(clf.predict(X[n_train:]) == y[n_train:])
    prior = np.mean(explanation.prior_fused.argmax(1) == y[n_train:])
    local = np.mean(explanation.prior_local.argmax(1) == y[n_train:])
    result = {key: float(np.mean(value)) for key, value in hits.items()}
    result.update({f"chance_{k}": float(np.mean(v)) for k, v in chance.items()})
    result.update(accuracy=accuracy, prior=prior, local=local, fit_time=fit_time)
    return result


def table(results: dict) -> str:
    seeds = list(results)
    head = "| measure | " + " | ".join(f"seed {s}" for s in seeds)
    head += " | mean | chance |" if len(seeds) > 1 else " | chance |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for label, key, chance_key in ROWS:
        values = [results[s][key] for s in seeds]
        cells = [f"{v:.2f}" for v in values]
        if len(seeds) > 1:
            cells.append(f"{np.mean(values):.2f}")
        chance = np.mean([results[s][f"chance_{chance_key}"] for s in seeds])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {chance:.3f} |")
    for label, key in (
        ("DiffMIC accuracy", "accuracy"),
        ("fused prior", "prior"),
        ("local prior", "local"),
    ):
        values = [results[s][key] for s in seeds]
        cells = [f"{v:.2f}" for v in values]
        if len(seeds) > 1:
            cells.append(f"{np.mean(values):.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--seeds", type=int, nargs="+", default=[0])
    parse.add_argument("--n-images", type=int, default=400)
    parse.add_argument("--n-train", type=int, default=300)
    parse.add_argument("--image-size", type=int, default=32)
    parse.add_argument("--guidance-epochs", type=int, default=6)
    parse.add_argument("--max-epochs", type=int, default=25)
    parse.add_argument("--device", default="cpu")
    parse.add_argument("--threads", type=int, default=None)
    parse.add_argument(
        "--crop-saliency",
        choices=["per_class", "sum", "predicted"],
        default=presets.SCRATCH["crop_saliency"],
        help="the map the windows are chosen on (default: the preset's)",
    )
    args = parse.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for seed in args.seeds:
        results[seed] = run(seed, args)
        print(f"seed {seed}: fitted in {results[seed]['fit_time']:.0f} s", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
