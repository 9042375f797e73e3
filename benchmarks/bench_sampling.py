"""Where does DiffMIC's accuracy come from? Samplers, EMA and training length.

On one stratified train / held-out split, fits DiffMIC for each number of
diffusion epochs in ``--epochs``, once with the EMA weights (the default
``ema_decay``) and once with the raw weights (``ema_decay=0``: the training
run is otherwise identical, so the two differ only in the weights used to
predict). Each fit is evaluated with DDIM at 5, 10 and 20 steps and with the
full DDPM chain, and against its DCG prior. Prints accuracy and prediction
time per image.

    python benchmarks/bench_sampling.py                       # Br35H, 64 px
    python benchmarks/bench_sampling.py --dataset lesions --epochs 10 25
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier
from skdiffmic.datasets import load_br35h, make_lesions, read_images

SAMPLERS = [("ddim", 5), ("ddim", 10), ("ddim", 20), ("ddpm", None)]


def load(name: str, n: int, size: int, seed: int):
    if name == "lesions":
        return make_lesions(n, image_size=size, random_state=seed)
    paths, y = load_br35h(return_X_y=True)
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n, stratify=y, random_state=seed
    )
    keep = np.sort(keep)
    return read_images(paths[keep], size=size), y[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["br35h", "lesions"], default="br35h")
    parser.add_argument("--n-images", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--guidance-epochs", type=int, default=4)
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--hidden-dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--prediction-type",
        default="epsilon",
        choices=["epsilon", "sample", "logit_residual", "v_prediction"],
        help="the denoiser's target (the tables in docs/benchmarks.md: epsilon)",
    )
    args = parser.parse_args()

    X, y = load(args.dataset, args.n_images, args.image_size, args.seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=1 / 3, stratify=y, random_state=args.seed
    )
    print(
        f"{args.dataset}: {len(y_train)} train / {len(y_test)} held-out images, "
        f"{args.backbone} at {args.image_size} px, {os.cpu_count()} CPU(s)",
        flush=True,
    )
    rows = []
    for epochs in args.epochs:
        for weights, decay in (("EMA", 0.9999), ("raw", 0.0)):
            clf = DiffMICClassifier(
                backbone=args.backbone,
                image_size=args.image_size,
                hidden_dim=args.hidden_dim,
                guidance_epochs=args.guidance_epochs,
                max_epochs=epochs,
                ema_decay=decay,
                prediction_type=args.prediction_type,
                denoiser_init="scratch",  # as when the tables were measured
                crop_saliency="sum",  # likewise
                random_state=args.seed,
            )
            start = time.perf_counter()
            clf.fit(X_train, y_train)
            print(
                f"  fitted {epochs} epochs ({weights}) in "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
            if weights == "EMA":
                start = time.perf_counter()
                prior = clf.classes_[clf.predict_prior_proba(X_test).argmax(1)]
                ms = 1000 * (time.perf_counter() - start) / len(y_test)
                rows.append((epochs, "-", "DCG prior", np.mean(prior == y_test), ms))
            for sampler, steps in SAMPLERS:
                clf.set_params(sampler=sampler, n_inference_steps=steps or 10)
                start = time.perf_counter()
                pred = clf.predict(X_test)
                ms = 1000 * (time.perf_counter() - start) / len(y_test)
                name = f"DDIM {steps}" if steps else f"DDPM {clf.n_timesteps}"
                rows.append((epochs, weights, name, np.mean(pred == y_test), ms))

    print("\n| diffusion epochs | weights | sampler | accuracy | predict ms/image |")
    print("|---|---|---|---|---|")
    for epochs, weights, name, acc, ms in rows:
        print(f"| {epochs} | {weights} | {name} | {acc:.3f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
