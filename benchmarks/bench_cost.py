"""Where the time of a fit and a prediction goes: DiffMIC beside the plain CNN.

One fold of the main job (``examples/benchmark.py``): the same 600-image
stratified Br35H subset, its first 3-fold split (400 training, 200 test
images), ``tf_efficientnet_lite0`` from ImageNet at 64 px, DCG 2 + 6 diffusion
epochs for DiffMIC and 8 epochs for the CNN (:class:`~skdiffmic.baselines.
TimmClassifier`), and the main job's DiffMIC settings (``hidden_dim=512``,
``denoiser_init="shared"``, ``local_encoder="cut"``; ``--set`` overrides any
parameter). ``--full`` uses the main job's ``--full`` settings instead (224 px,
``hidden_dim=6144``, the denoiser's own encoder), on as many images and epochs
as you give it.

Each model is fitted once and predicts the test images once, with the stages
of :mod:`skdiffmic._profiling` recording their wall time: decoding, augmentation,
the DCG model's global branch, window choice and local branch, the backward
passes, the denoiser's encoder, the label head, the optimisers, the EMA, the
validation, the calibration (typicality density) and, at prediction, the noise
draws and the reverse chain. Prints one table per phase (seconds and share of
the phase), the totals and the DiffMIC / CNN ratios.

Timings on a 2-core CPU are only meaningful on an otherwise idle machine.

    python benchmarks/bench_cost.py                       # the main job's settings
    python benchmarks/bench_cost.py --paths               # decode files every epoch
    python benchmarks/bench_cost.py --set hidden_dim=6144 denoiser_init=guidance
    python benchmarks/bench_cost.py --full --n-images 1200 --epochs 5 20
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from skdiffmic._profiling import record_stages, timed
from skdiffmic.datasets import load_br35h, read_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from benchmark import SETTINGS, make_models, parse_settings  # noqa: E402

# The main job's settings (examples/benchmark.py), on one fold: --full on
# 1,200 images instead of all of them, --quick on 48.
N_IMAGES = {"default": 600, "full": 1200, "quick": 48}


def load(n_images: int, image_size: int, paths: bool, seed: int = 0):
    """The main job's stratified subset and its first fold."""
    files, y = load_br35h(return_X_y=True)
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n_images, stratify=y, random_state=seed
    )
    keep = np.sort(keep)
    files, y = files[keep], y[keep]
    X = files if paths else read_images(files, size=image_size)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    train, test = next(folds.split(np.zeros(len(y)), y))
    return X[train], X[test], y[train], y[test]


def profile(model, X_train, y_train, X_test, y_test):
    """Fit and predict under the stage recorder; per-phase stage seconds."""
    phases, totals = {}, {}
    with record_stages() as times:
        start = time.perf_counter()
        with timed("other"):
            model.fit(X_train, y_train)
        totals["fit"] = time.perf_counter() - start
    phases["fit"] = dict(times.seconds)
    with record_stages() as times:
        start = time.perf_counter()
        with timed("other"):
            proba = model.predict_proba(X_test)
        totals["predict"] = time.perf_counter() - start
    phases["predict"] = dict(times.seconds)
    scores = {
        "macro_f1": f1_score(y_test, model.classes_[proba.argmax(1)], average="macro"),
        "roc_auc": roc_auc_score(y_test, proba[:, 1]),
    }
    return phases, totals, scores


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
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the --full settings")
    mode.add_argument("--quick", action="store_true", help="a seconds-long run")
    parser.add_argument("--n-images", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--epochs", type=int, nargs=2, metavar=("GUIDANCE", "DIFF"))
    parser.add_argument(
        "--paths", action="store_true", help="fit on file paths (decode per epoch)"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="DiffMICClassifier parameters to override",
    )
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    mode = "full" if args.full else "quick" if args.quick else "default"
    s = dict(SETTINGS[mode], n_images=N_IMAGES[mode])
    if args.n_images is not None:
        s["n_images"] = args.n_images
    if args.image_size is not None:
        s["image_size"] = args.image_size
    if args.epochs is not None:
        s["guidance_epochs"], s["max_epochs"] = args.epochs
    diffmic, cnn = make_models(s, device=args.device, random_state=1)
    overrides = parse_settings(args.set)
    diffmic.set_params(**overrides)
    models = {"DiffMIC": diffmic}
    if not args.no_cnn:
        models["CNN"] = cnn
    g, d, backbone = s["guidance_epochs"], s["max_epochs"], s["backbone"]
    X_tr, X_te, y_tr, y_te = load(s["n_images"], s["image_size"], args.paths)
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(
        f"Br35H, {len(y_tr)} training / {len(y_te)} test images "
        f"({'file paths' if args.paths else 'decoded arrays'}), {backbone} at "
        f"{s['image_size']} px, DiffMIC {g} + {d} epochs (CNN {g + d}), "
        f"hidden_dim={s['hidden_dim']}, denoiser_init={s['denoiser_init']!r}, "
        f"local_encoder={s['local_encoder']!r}, overrides {overrides or 'none'}; "
        f"{platform.machine()}, {os.cpu_count()} CPU(s), {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads\n",
        flush=True,
    )
    phases, totals, scores = {}, {}, {}
    for name, model in models.items():
        phases[name], totals[name], scores[name] = profile(
            model, X_tr, y_tr, X_te, y_te
        )
        print(
            f"{name}: fit {totals[name]['fit']:.1f} s, predict "
            f"{1000 * totals[name]['predict'] / len(y_te):.2f} ms/image, macro-F1 "
            f"{scores[name]['macro_f1']:.3f}, ROC AUC {scores[name]['roc_auc']:.3f}",
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
