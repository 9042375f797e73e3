"""Where does DiffMIC's accuracy come from? Samplers, EMA and training length.

On one stratified train / held-out split, fits DiffMIC for each number of
diffusion epochs in ``--epochs``, once with the EMA weights (the default
``ema_decay``) and once with the raw weights (``ema_decay=0``: the training
run is otherwise identical, so the two differ only in the weights used to
predict). Each fit is evaluated with DDIM at 5, 10 and 20 steps and with the
full DDPM chain, and against its DCG prior. Prints accuracy and prediction
time per image. The model is ``presets.PAPER`` (noise prediction, the
denoiser's encoder from scratch, windows on the summed CAMs) on
``resnet10t`` with ``hidden_dim=512``; ``--prediction-type`` changes its
target.

    python -m benchmarks.bench_sampling                       # Br35H, 64 px
    python -m benchmarks.bench_sampling --dataset lesions --epochs 10 25
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import make_lesions

from ._common import load_br35h_subset, parser, timed

SAMPLERS = [("ddim", 5), ("ddim", 10), ("ddim", 20), ("ddpm", None)]


def load(name: str, n: int, size: int, seed: int):
    if name == "lesions":
        return make_lesions(n, image_size=size, random_state=seed)
    return load_br35h_subset(n, size, seed)


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--dataset", choices=["br35h", "lesions"], default="br35h")
    parse.add_argument("--n-images", type=int, default=600)
    parse.add_argument("--image-size", type=int, default=64)
    parse.add_argument("--backbone", default="resnet10t")
    parse.add_argument("--guidance-epochs", type=int, default=4)
    parse.add_argument("--epochs", type=int, nargs="+", default=[10, 30])
    parse.add_argument("--hidden-dim", type=int, default=512)
    parse.add_argument("--seed", type=int, default=0)
    parse.add_argument(
        "--prediction-type",
        default=presets.PAPER["prediction_type"],
        choices=["epsilon", "sample", "logit_residual", "v_prediction"],
        help="the denoiser's target (default: the paper's, as in the tables)",
    )
    args = parse.parse_args(argv)

    X, y = load(args.dataset, args.n_images, args.image_size, args.seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=1 / 3, stratify=y, random_state=args.seed
    )
    print(
        f"{args.dataset}: {len(y_train)} train / {len(y_test)} held-out images, "
        f"{args.backbone} at {args.image_size} px, {os.cpu_count()} CPU(s)",
        flush=True,
    )
    config = dict(
        presets.PAPER,
        backbone=args.backbone,
        hidden_dim=args.hidden_dim,
        prediction_type=args.prediction_type,
    )
    rows = []
    for epochs in args.epochs:
        for weights, decay in (("EMA", 0.9999), ("raw", 0.0)):
            clf = DiffMICClassifier(
                **config,
                image_size=args.image_size,
                guidance_epochs=args.guidance_epochs,
                max_epochs=epochs,
                ema_decay=decay,
                random_state=args.seed,
            )
            _, seconds = timed(clf.fit, X_train, y_train)
            print(f"  {epochs} epochs ({weights}): {seconds:.0f} s", flush=True)
            if weights == "EMA":
                proba, seconds = timed(clf.predict_prior_proba, X_test)
                prior = clf.classes_[proba.argmax(1)]
                ms = 1000 * seconds / len(y_test)
                rows.append((epochs, "-", "DCG prior", np.mean(prior == y_test), ms))
            for sampler, steps in SAMPLERS:
                clf.set_params(sampler=sampler, n_inference_steps=steps or 10)
                pred, seconds = timed(clf.predict, X_test)
                ms = 1000 * seconds / len(y_test)
                name = f"DDIM {steps}" if steps else f"DDPM {clf.n_timesteps}"
                rows.append((epochs, weights, name, np.mean(pred == y_test), ms))

    print("\n| diffusion epochs | weights | sampler | accuracy | predict ms/image |")
    print("|---|---|---|---|---|")
    for epochs, weights, name, acc, ms in rows:
        print(f"| {epochs} | {weights} | {name} | {acc:.3f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
