"""Robustness: DiffMIC, its DCG prior and a CNN on clean and corrupted images.

Each model is scored on clean images and under each corruption of the set's
list, at the severities asked for (1 to 5).

``--dataset dermamnist`` (7 skin-lesion classes, 67% naevi; ``--data`` names
a MedMNIST ``.npz``), under the MedMNIST-C corruptions that the
``medmnistc`` package defines for it:

* ``--split trainval`` (default): fit on a stratified ``--n-train`` of the
  official train split, score on the whole official val split;
* ``--split cv``: stratified k-fold CV inside train + val (``--n-images``
  of them, 2,100 by default, ``--folds`` folds).

The official test split is never read.

``--dataset br35h`` (brain MRI, tumour yes / no): the main job's 600 images
and 3-fold split (``--split trainval`` is its first fold), under the
artefacts a brain-MRI reader meets, simulated by ``torchio`` on each slice
as a one-slice volume: Rician-like noise (low signal, fast sequences),
blur (low resolution, partial volume), a bias field (coil inhomogeneity),
motion and ghosting (patient movement), k-space spikes and a gamma change of
contrast (other scanners and sequences). The images are made grey (they are
grey scans stored in mixed colour modes), for training and test alike.

Every model gets the main job's settings (``examples/benchmark.py``:
DiffMIC at ``presets.FINE_TUNE``, ``tf_efficientnet_lite0`` from ImageNet at
64 px, 2 + 6 epochs, the CNN 8 epochs, the same augmentation); ``--set``
overrides DiffMIC's parameters and
``--cnn-set`` the CNN's. ``--chains`` adds DiffMIC rows scored with other
prediction settings of the same fit (``n_samples`` chains, ``eta``): what
the reverse chain itself contributes under corruption.
``--train-corruption FRACTION`` trains both models on images of which that
fraction is corrupted (one random corruption at a random severity each,
drawn once): corruption-aware training, the same for both.
``--logit-adjust`` adds each model with post-hoc logit adjustment for the
imbalance (``softmax(log p - log pi)``, ``pi`` the training classes'
frequencies; tau = 1, not tuned).

The corruptions act at the resolution MedMNIST-C defines them for (224 px):
each image is resized to 224 px (bilinear; Br35H is decoded at 224 px),
corrupted, and resized to the networks' 64 px (antialiased). Clean and
training images go through the same resizes, so the only difference is the
corruption. MedMNIST-C's motion blur is left out: its ImageMagick call does
not run under NumPy 2.

Prints, for each model: macro-F1, balanced accuracy, macro ROC AUC and
log-loss on clean images; the mean over corruptions at each severity and
its relative drop from clean; and a table of macro-F1 per corruption. Then
what DiffMIC's ``predict_uncertainty`` reports on clean and corrupted
images (``--uncertainty-chains`` chains): mean entropy and chain interval
width, the share of images its t-test is sure of, the share its typicality
test flags as atypical, the share it calls confident, and the accuracy on
those. Writes ``results.csv`` (one row per fold, model, corruption and
severity) and ``uncertainty.csv`` to ``--out``.

DermaMNIST needs ``pip install --no-deps medmnistc`` (its pinned
dependencies would downgrade scikit-image; what it imports is already
installed with the ``benchmark`` extra); Br35H needs ``pip install
torchio``. ::

    python -m benchmarks.bench_robustness --data dermamnist_trainval.npz
    python -m benchmarks.bench_robustness --dataset br35h --split cv
    python -m benchmarks.bench_robustness --data FILE --severities 1 2 3 4 5
    python -m benchmarks.bench_robustness --data FILE --split cv --n-images 2100
    python -m benchmarks.bench_robustness --data FILE --chains "16 1.0" \
        --set balanced_sampling=True --cnn-set balanced_sampling=True
"""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pandas as pd

from ._common import (
    MAIN_JOB,
    METRICS,
    add_run_arguments,
    data_parser,
    fit_models,
    parse_checked,
    parse_settings,
    predictions,
    prepare,
    scores,
    splits,
    timed_run,
)

SKIPPED = ("motion_blur",)


class MRIArtefact:
    """A ``torchio`` MRI artefact at five severities, on a 2-D slice.

    ``apply(image, severity)`` follows medmnistc's convention (a PIL image,
    a severity index from 0 to 4) and returns a grey uint8 RGB array.
    ``make(level)`` builds the transform of one severity; with
    ``keep_mean`` the result is scaled back to the slice's mean intensity
    (a bias field multiplies the image by a smooth field whose mean is not
    one).
    """

    def __init__(self, make, levels, keep_mean=False):
        self.make, self.levels, self.keep_mean = make, levels, keep_mean

    def apply(self, image, severity):
        import torch
        import torchio as tio

        x = torch.from_numpy(np.asarray(image.convert("L"), np.float32) / 255)
        volume = tio.ScalarImage(tensor=x[None, :, :, None])
        out = self.make(self.levels[severity])(volume).data[0, :, :, 0]
        if self.keep_mean:
            out = out * (x.mean() / out.mean().clamp_min(1e-6))
        out = (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        return np.repeat(out[..., None], 3, axis=-1)


def mri_artefacts() -> dict:
    """Brain-MRI artefacts (``torchio``) at five severities each."""
    try:
        import torchio as tio
    except ImportError as exc:
        raise SystemExit(f"{exc}: Br35H needs `pip install torchio`") from None

    def fixed(value):
        return (value, value)

    return {
        "noise": MRIArtefact(
            lambda s: tio.RandomNoise(std=fixed(s)), [0.02, 0.04, 0.06, 0.09, 0.12]
        ),
        "blur": MRIArtefact(
            lambda s: tio.RandomBlur(std=fixed(s)), [0.5, 1.0, 1.5, 2.0, 3.0]
        ),
        "bias_field": MRIArtefact(
            lambda s: tio.RandomBiasField(coefficients=fixed(s)),
            [0.1, 0.2, 0.3, 0.4, 0.5],
            keep_mean=True,
        ),
        "motion": MRIArtefact(
            lambda s: tio.RandomMotion(
                degrees=fixed(s), translation=fixed(s), num_transforms=2
            ),
            [2, 4, 6, 8, 10],
        ),
        "ghosting": MRIArtefact(
            lambda s: tio.RandomGhosting(
                num_ghosts=fixed(s[0]), intensity=fixed(s[1]), axes=(0, 1)
            ),
            [(2, 0.2), (4, 0.4), (6, 0.6), (8, 0.8), (10, 1.0)],
        ),
        "spike": MRIArtefact(
            lambda s: tio.RandomSpike(num_spikes=1, intensity=fixed(s)),
            [0.1, 0.2, 0.3, 0.5, 0.7],
        ),
        "gamma": MRIArtefact(
            lambda s: tio.RandomGamma(log_gamma=fixed(s)), [0.1, 0.2, 0.3, 0.4, 0.5]
        ),
    }


def corruptions(dataset: str = "dermamnist") -> dict:
    """The corruptions of ``dataset``, by name: MedMNIST-C's (less
    ``SKIPPED``) for a MedMNIST set, :func:`mri_artefacts` for Br35H."""
    if dataset == "br35h":
        return mri_artefacts()
    try:
        import wand.image  # noqa: F401
    except ImportError:
        # medmnistc's filter module imports Wand (ImageMagick) for motion
        # blur alone, which is skipped: let the module import without it.
        wand = types.ModuleType("wand")
        wand.image = types.SimpleNamespace(Image=object)
        wand.api = types.SimpleNamespace(library=None)
        sys.modules.update({"wand": wand, "wand.image": wand.image})
        sys.modules["wand.api"] = wand.api
    try:
        from medmnistc.corruptions.registry import CORRUPTIONS_DS
    except ImportError as exc:
        raise SystemExit(
            f"{exc}: this benchmark needs `pip install --no-deps medmnistc`"
        ) from None
    return {k: v for k, v in CORRUPTIONS_DS[dataset].items() if k not in SKIPPED}


def corrupt_some(images, image_size, table, fraction, seed):
    """Training images, a ``fraction`` of them (drawn once) each under one
    corruption of ``table`` at a severity from 1 to 5, all drawn at random:
    corruption-aware training, the same for every model."""
    rng = np.random.default_rng(seed)
    out = prepare(images, image_size)
    chosen = np.flatnonzero(rng.random(len(images)) < fraction)
    names = list(table)
    which = rng.integers(0, len(names), len(chosen))
    severity = rng.integers(1, 6, len(chosen))
    for k, (row, c, sev) in enumerate(zip(chosen, which, severity)):
        out[row] = prepare(images[row : row + 1], image_size, table[names[c]], sev, k)[
            0
        ]
    return out


def scored(diffmic, cnn, X, chains, class_prior=None) -> dict:
    """:func:`~benchmarks._common.predictions` on ``X``, one DiffMIC row per
    ``chains`` setting (``(n_samples, eta)``) of the same fit, and with
    ``class_prior`` (the training classes' frequencies) each model's post-hoc
    logit adjustment."""
    out = predictions(diffmic, cnn, X)
    fitted = diffmic.get_params()
    for n_samples, eta in chains:
        diffmic.set_params(n_samples=n_samples, eta=eta)
        out[f"DiffMIC x{n_samples} eta={eta:g}"] = diffmic.predict_proba(X)
    diffmic.set_params(n_samples=fitted["n_samples"], eta=fitted["eta"])
    if class_prior is not None:
        for model in ("DiffMIC", "DCG prior", "CNN (CE)"):
            out[f"{model} + LA"] = logit_adjusted(out[model], class_prior)
    return out


def logit_adjusted(proba, class_prior, tau=1.0):
    """Post-hoc logit adjustment (Menon et al., 2021): ``softmax(log p - tau
    log pi)``, which targets the balanced error; tau = 1 as the paper derives
    it, not tuned."""
    logits = np.log(np.clip(proba, 1e-12, 1)) - tau * np.log(class_prior)
    logits -= logits.max(1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(1, keepdims=True)


def run(args) -> pd.DataFrame:
    mode = "quick" if args.quick else "default"
    size = MAIN_JOB[mode]["image_size"]
    chains = [(int(a), float(b)) for a, b in (c.split() for c in args.chains)]
    table = corruptions(args.dataset)
    if args.corruptions:
        table = {k: table[k] for k in args.corruptions}
    rows, report = [], []
    folds = splits(
        args.dataset,
        args.data,
        args.split,
        args.n_train,
        args.n_images,
        args.folds,
        args.seed,
    )
    for k, (X_tr, y_tr, X_te, y_te) in enumerate(folds, start=1):
        if args.quick:
            X_tr, y_tr, X_te, y_te = X_tr[:48], y_tr[:48], X_te[:24], y_te[:24]
        print(
            f"[fold {k}/{len(folds)}] {len(y_tr)} training / {len(y_te)} test "
            f"images, corruptions: {', '.join(table)}",
            flush=True,
        )
        if args.train_corruption:
            X_fit = corrupt_some(
                X_tr, size, table, args.train_corruption, args.seed + k
            )
        else:
            X_fit = prepare(X_tr, size)
        diffmic, cnn, fit_s = fit_models(
            X_fit,
            y_tr,
            mode,
            args.seed + k,
            parse_settings(args.set),
            parse_settings(args.cnn_set),
            args.verbose,
        )
        sets = [("clean", 0, None)] + [
            (name, sev, c) for name, c in table.items() for sev in args.severities
        ]
        for name, severity, corruption in sets:
            start = time.perf_counter()
            X = prepare(X_te, size, corruption, severity, args.seed + k)
            class_prior = None
            if args.logit_adjust:
                class_prior = np.bincount(y_tr, minlength=len(diffmic.classes_))
                class_prior = class_prior / class_prior.sum()
            for model, proba in scored(diffmic, cnn, X, chains, class_prior).items():
                row = {"fold": k, "model": model, "corruption": name}
                row.update(severity=severity, **scores(y_te, proba, diffmic.classes_))
                row["fit_s"] = fit_s.get(model.split(" x")[0], fit_s["DiffMIC"])
                rows.append(row)
            f1 = {
                r["model"]: r["macro_f1"]
                for r in rows
                if (r["fold"], r["corruption"], r["severity"]) == (k, name, severity)
            }
            print(
                f"  {name:16s} {severity}  "
                + "  ".join(f"{m} {v:.3f}" for m, v in f1.items())
                + f"  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            pd.DataFrame(rows).to_csv(args.out / "results.csv", index=False)
            if args.uncertainty_chains:
                u = diffmic.predict_uncertainty(X, n_samples=args.uncertainty_chains)
                right = (u["prediction"].to_numpy() == y_te).astype(float)
                confident = u["confident"].to_numpy(bool)
                report.append(
                    {
                        "fold": k,
                        "corruption": name,
                        "severity": severity,
                        "accuracy": right.mean(),
                        "entropy": u["entropy"].mean(),
                        "interval_width": u["interval_width"].mean(),
                        "t_test_sure": (u["p_value"] < 0.05).mean(),
                        "atypical": (u["ood_p_value"] <= 0.05).mean(),
                        "confident": confident.mean(),
                        "accuracy_confident": (
                            right[confident].mean() if confident.any() else np.nan
                        ),
                    }
                )
                pd.DataFrame(report).to_csv(args.out / "uncertainty.csv", index=False)
    return pd.DataFrame(rows), pd.DataFrame(report)


def uncertainty_summary(report: pd.DataFrame) -> str:
    """Markdown: what DiffMIC's predict_uncertainty reports, clean and per
    corruption (means over severities and folds)."""
    columns = [
        "accuracy",
        "entropy",
        "interval_width",
        "t_test_sure",
        "atypical",
        "confident",
        "accuracy_confident",
    ]
    mean = report.groupby("corruption", sort=False)[columns].mean()
    lines = [
        "| images | accuracy | entropy | interval width | t-test sure | "
        "atypical | confident | accuracy when confident |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in mean.iterrows():
        lines.append(
            f"| {name} | {r.accuracy:.3f} | {r.entropy:.3f} | "
            f"{r.interval_width:.4f} | {r.t_test_sure:.1%} | {r.atypical:.1%} | "
            f"{r.confident:.1%} | {r.accuracy_confident:.3f} |"
        )
    return "\n".join(lines)


def summary(results: pd.DataFrame) -> str:
    """Markdown: clean and mean-corrupted metrics per severity, with the
    relative drop of each, and macro-F1 per corruption."""
    by_fold = results.groupby(["model", "corruption", "severity"], sort=False)
    mean = by_fold[list(METRICS)].mean().reset_index()
    models = list(dict.fromkeys(results["model"]))
    clean = mean[mean.corruption == "clean"].set_index("model")
    corrupted = mean[mean.corruption != "clean"]
    per_severity = corrupted.groupby(["model", "severity"])[list(METRICS)].mean()
    lines = [
        "| model | images | macro-F1 | balanced acc. | ROC AUC | log-loss | "
        "macro-F1 drop |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in models:
        c = clean.loc[model]
        lines.append(
            f"| {model} | clean | {c.macro_f1:.3f} | {c.balanced_accuracy:.3f} | "
            f"{c.roc_auc:.3f} | {c.log_loss:.3f} | |"
        )
        for severity in sorted(corrupted.severity.unique()):
            m = per_severity.loc[(model, severity)]
            drop = 1 - m.macro_f1 / c.macro_f1
            lines.append(
                f"| {model} | corrupted, severity {severity} (mean) | "
                f"{m.macro_f1:.3f} | {m.balanced_accuracy:.3f} | {m.roc_auc:.3f} | "
                f"{m.log_loss:.3f} | {drop:.1%} |"
            )
    lines += ["", "Macro-F1 per corruption (mean over severities and folds):", ""]
    f1 = corrupted.pivot_table(
        index="corruption", columns="model", values="macro_f1", sort=False
    )[models]
    lines.append("| corruption | " + " | ".join(models) + " |")
    lines.append("|---" * (len(models) + 1) + "|")
    for name, row in f1.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = data_parser(__doc__)
    parser.add_argument("--split", choices=["trainval", "cv"], default="trainval")
    parser.add_argument(
        "--n-images", type=int, help="CV images (default 2100 DermaMNIST, 600 Br35H)"
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--severities", type=int, nargs="+", default=[3])
    parser.add_argument("--corruptions", nargs="+", help="a subset, by name")
    parser.add_argument(
        "--chains",
        nargs="+",
        default=[],
        metavar='"N_SAMPLES ETA"',
        help='extra DiffMIC prediction settings, e.g. "16 1.0"',
    )
    parser.add_argument(
        "--train-corruption",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="corruption-aware training: this fraction of the training images, "
        "each under a random corruption at a random severity (both models)",
    )
    parser.add_argument(
        "--logit-adjust",
        action="store_true",
        help="also score each model with post-hoc logit adjustment (tau = 1)",
    )
    parser.add_argument(
        "--uncertainty-chains",
        type=int,
        default=16,
        metavar="N",
        help="chains of DiffMIC's predict_uncertainty on every set (0: skip it)",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_run_arguments(parser, "robustness_results")
    args = parse_checked(parser, argv)
    if not set(args.severities) <= {1, 2, 3, 4, 5}:
        parser.error("--severities are 1 to 5")
    results, report = timed_run(run, args)
    print(summary(results))
    if len(report):
        print(
            "\nDiffMIC's predict_uncertainty "
            f"({args.uncertainty_chains} chains, alpha = 0.05):\n"
        )
        print(uncertainty_summary(report))


if __name__ == "__main__":
    main()
