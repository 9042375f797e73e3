"""Where the time of a fit and a prediction goes: DiffMIC beside the plain CNN.

One fold of the main job (``examples/benchmark.py``): the same 600-image
stratified Br35H subset, its first 3-fold split (400 training, 200 test
images), ``tf_efficientnet_lite0`` from ImageNet at 64 px, DCG 2 + 6 diffusion
epochs for DiffMIC and 8 epochs for the CNN (:class:`~skdiffmic.baselines.
TimmClassifier`), DiffMIC at ``presets.FINE_TUNE`` (``--set`` overrides any
parameter). ``--full`` uses the main job's ``--full`` budget instead (224 px,
15 + 100 epochs), on 1,200 images or as many images and epochs as you give it.

Each model is fitted once and predicts the test images once, with the
package's stage recorder timing: decoding, augmentation,
the DCG model's global branch, window choice and local branch, the backward
passes, the denoiser's encoder, the label head, the optimisers, the EMA, the
validation, the calibration (typicality density) and, at prediction, the noise
draws and the reverse chain. Prints one table per phase (seconds and share of
the phase), the totals and the DiffMIC / CNN ratios.

Timings on a 2-core CPU are only meaningful on an otherwise idle machine.

    python -m benchmarks.bench_cost                       # the main job's settings
    python -m benchmarks.bench_cost --paths               # decode files every epoch
    python -m benchmarks.bench_cost --set hidden_dim=6144 denoiser_init=guidance
    python -m benchmarks.bench_cost --full --n-images 1200 --epochs 5 20
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import pandas as pd
import torch

from ._common import (
    add_set_argument,
    br35h_folds,
    main_job_models,
    main_job_settings,
    parse_settings,
    parser,
    record_stages,
    scores,
    stage,
)

# One fold of the main job: --full on 1,200 images instead of all of them,
# --quick on 48.
N_IMAGES = {"default": 600, "full": 1200, "quick": 48}


def profile(model, X_train, y_train, X_test, y_test):
    """Fit and predict under the stage recorder; per-phase stage seconds."""
    phases, totals = {}, {}
    with record_stages() as times:
        start = time.perf_counter()
        with stage("other"):
            model.fit(X_train, y_train)
        totals["fit"] = time.perf_counter() - start
    phases["fit"] = dict(times.seconds)
    with record_stages() as times:
        start = time.perf_counter()
        with stage("other"):
            proba = model.predict_proba(X_test)
        totals["predict"] = time.perf_counter() - start
    phases["predict"] = dict(times.seconds)
    return phases, totals, scores(y_test, proba, model.classes_)


def stage_table(phases: dict, totals: dict, phase: str) -> pd.DataFrame:
    """One row per stage (its path without the outer ``other``)."""
    rows = []
    for model, by_phase in phases.items():
        for path, seconds in by_phase[phase].items():
            name = path.removeprefix("other/").removeprefix("other") or "(rest)"
            rows.append({"stage": name, "model": model, "seconds": seconds})
    table = pd.DataFrame(rows).pivot_table(
        index="stage", columns="model", values="seconds", aggfunc="sum"
    )
    table = table.reindex(columns=list(phases))
    return table.sort_values(list(phases)[0], ascending=False)


def markdown(table: pd.DataFrame, totals: dict, phase: str) -> str:
    models = list(table.columns)
    head = "| stage | " + " | ".join(f"{m} (s) | share" for m in models) + " |"
    lines = [head, "|---|" + "---|---|" * len(models)]
    for name, row in table.iterrows():
        cells = []
        for m in models:
            value = row[m]
            if np.isnan(value):
                cells += ["", ""]
            else:
                cells += [f"{value:.2f}", f"{100 * value / totals[m][phase]:.0f}%"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = []
    for m in models:
        cells += [f"**{totals[m][phase]:.2f}**", "100%"]
    lines.append("| **total** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parse = parser(__doc__)
    mode = parse.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the --full budget")
    mode.add_argument("--quick", action="store_true", help="a seconds-long run")
    parse.add_argument("--n-images", type=int)
    parse.add_argument("--image-size", type=int)
    parse.add_argument("--epochs", type=int, nargs=2, metavar=("GUIDANCE", "DIFF"))
    parse.add_argument(
        "--paths", action="store_true", help="fit on file paths (decode per epoch)"
    )
    add_set_argument(parse)
    parse.add_argument("--no-cnn", action="store_true", help="skip the CNN")
    parse.add_argument("--device", default="auto")
    args = parse.parse_args(argv)
    mode = "full" if args.full else "quick" if args.quick else "default"
    s = main_job_settings(mode, n_images=N_IMAGES[mode])
    if args.n_images is not None:
        s["n_images"] = args.n_images
    if args.image_size is not None:
        s["image_size"] = args.image_size
    if args.epochs is not None:
        s["guidance_epochs"], s["max_epochs"] = args.epochs
    diffmic, cnn = main_job_models(s, device=args.device, random_state=1)
    overrides = parse_settings(args.set)
    diffmic.set_params(**overrides)
    p = diffmic.get_params()
    models = {"DiffMIC": diffmic}
    if not args.no_cnn:
        models["CNN"] = cnn
    g, d = p["guidance_epochs"], p["max_epochs"]
    X_tr, y_tr, X_te, y_te = br35h_folds(
        s["n_images"], s["image_size"], paths=args.paths
    )[0]
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(
        f"Br35H, {len(y_tr)} training / {len(y_te)} test images "
        f"({'file paths' if args.paths else 'decoded arrays'}), {p['backbone']} at "
        f"{p['image_size']} px, DiffMIC {g} + {d} epochs (CNN {g + d}), "
        f"presets.FINE_TUNE with overrides {overrides or 'none'}; "
        f"{platform.machine()}, {os.cpu_count()} CPU(s), {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n",
        flush=True,
    )
    phases, totals, fit_scores = {}, {}, {}
    for name, model in models.items():
        phases[name], totals[name], fit_scores[name] = profile(
            model, X_tr, y_tr, X_te, y_te
        )
        print(
            f"{name}: fit {totals[name]['fit']:.1f} s, predict "
            f"{1000 * totals[name]['predict'] / len(y_te):.2f} ms/image, macro-F1 "
            f"{fit_scores[name]['macro_f1']:.3f}, "
            f"ROC AUC {fit_scores[name]['roc_auc']:.3f}",
            flush=True,
        )
    for phase in ("fit", "predict"):
        print(f"\n### {phase}\n")
        print(markdown(stage_table(phases, totals, phase), totals, phase))
    if "CNN" in totals:
        fit = totals["DiffMIC"]["fit"] / totals["CNN"]["fit"]
        predict = totals["DiffMIC"]["predict"] / totals["CNN"]["predict"]
        print(f"\nDiffMIC / CNN: fit {fit:.2f}x, predict {predict:.2f}x")


if __name__ == "__main__":
    main()
