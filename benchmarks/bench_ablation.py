"""Which of DiffMIC's levers make the diffusion add to its prior? An ablation.

For each data set, one stratified train / validation split of *selection*
data: images that the reported benchmarks never score on. For Br35H these are
drawn from the 2,400 images outside the main job's 600-image subset
(``examples/benchmark.py``); ``make_lesions`` and the upsampled digits use
their own seed. On that split the script fits

* the CNN baseline (:class:`~skdiffmic.baselines.TimmClassifier`, the same
  backbone for the same total epochs, image size and augmentation);
* DiffMIC once per *training* configuration (prediction parameterisation,
  the denoiser's encoder initialisation, the focal loss weight, the MMD
  weight, the split of epochs between DCG warm-up and diffusion, the
  saliency the DCG's windows are chosen on);

and scores every DiffMIC fit with its own DCG prior and with several
*prediction* settings of the same fitted model (``clip_sample``, DDIM or the
full DDPM chain, 1, 16 or 64 chains, deterministic or stochastic, combined in
three ways). Prints one table of accuracy, macro-F1 and ROC AUC on the
validation images, and writes ``ablation.csv`` (one row per data set,
configuration and prediction setting) as it goes. Each DiffMIC fit takes
about 3 minutes on a 2-core CPU at the default budget, so choose the sets
and configurations: all of them (the CNN and 30 configurations on each
set) take a day. DermaMNIST is among the default sets only when
``--dermamnist`` names its file.

    python benchmarks/bench_ablation.py                         # everything
    python benchmarks/bench_ablation.py --datasets lesions --configs cnn paper sample
    python benchmarks/bench_ablation.py --datasets br35h --pretrained \
        --backbone tf_efficientnet_lite0 --epochs 2 6 --cnn-lr 2e-4 1e-3
    python benchmarks/bench_ablation.py --datasets br35h --pretrained \
        --backbone tf_efficientnet_lite0 --epochs 2 6 --configs \
        "logit+shared+per_class+cut cosine" --guidance-lr 1e-3 \
        --set learning_rate=3e-3

The defaults of :class:`~skdiffmic.DiffMICClassifier` are chosen from this
table (validation data), never from the cross-validated folds the main job
reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier
from skdiffmic._sampling import chain_softmax
from skdiffmic.baselines import TimmClassifier
from skdiffmic.datasets import load_br35h, make_lesions, read_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from benchmark import parse_settings  # noqa: E402  (the main job's)

# Per data set: images, size, backbone and budget (the main job's for Br35H).
DATASETS = {
    "br35h": dict(
        n_train=400, n_val=200, image_size=64, guidance_epochs=4, max_epochs=10
    ),
    "lesions": dict(
        n_train=600, n_val=300, image_size=32, guidance_epochs=4, max_epochs=10
    ),
    "digits": dict(
        n_train=600, n_val=300, image_size=32, guidance_epochs=4, max_epochs=10
    ),
    # DermaMNIST (7 skin-lesion classes, 67% one class): a stratified subset
    # of its official train split against its whole official val split, from
    # the npz named by --dermamnist (its test split is never used here).
    "dermamnist": dict(
        n_train=1400, n_val=None, image_size=64, guidance_epochs=4, max_epochs=10
    ),
}
COMMON = dict(backbone="resnet10t", batch_size=32)

# Training configurations: overrides of the estimator's parameters. "paper" is
# the MICCAI 2023 configuration (noise prediction, denoiser from scratch).
PAPER = dict(
    prediction_type="epsilon",
    denoiser_init="scratch",
    focal_weight=0.0,
    mmd_weight=0.5,
    crop_saliency="sum",
    local_encoder="full",
)
CONFIGS = {
    "paper": PAPER,
    "sample": {**PAPER, "prediction_type": "sample"},
    "v_prediction": {**PAPER, "prediction_type": "v_prediction"},
    "sample+init": {**PAPER, "prediction_type": "sample", "denoiser_init": "guidance"},
    "logit+init": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
    },
    "logit+init+predicted": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "predicted",
    },
    "logit+init+per_class": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
    },
    # The cost levers (shared denoiser encoder, cut local encoder) on top of
    # the logit+init+per_class configuration.
    "logit+shared+per_class": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
    },
    "logit+init+per_class+cut": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
    },
    "logit+shared+per_class+cut": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
    },
    # Imbalance: class-weighted losses (the CNN gets the same with
    # --cnn-class-weight balanced).
    "logit+shared+per_class+cut balanced": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "class_weight": "balanced",
    },
    # Out-of-fold priors (prior_folds): the denoiser trains on priors from
    # copies of the DCG model that never trained on the row.
    "logit+shared+per_class+cut oof2": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "prior_folds": 2,
    },
    "logit+shared+per_class+cut oof3": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "prior_folds": 3,
    },
    "logit+init+per_class oof2": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "prior_folds": 2,
    },
    "logit+shared+per_class+cut balanced oof2": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "class_weight": "balanced",
        "prior_folds": 2,
    },
    # Priors perturbed in logit space for the denoiser's training.
    "logit+shared+per_class+cut noise1": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "prior_noise": 1.0,
    },
    "logit+init+per_class noise1": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "prior_noise": 1.0,
    },
    "logit+shared+per_class+cut noise0.3": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "prior_noise": 0.3,
    },
    "logit+init+per_class noise0.3": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "prior_noise": 0.3,
    },
    # Priors of a DCG snapshot taken when the diffusion stage starts.
    "logit+init+per_class snapshot": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "prior_snapshot": True,
    },
    # The DCG model's learning rate decayed on a cosine, as the CNN's.
    "logit+init+per_class cosine": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "guidance_schedule": "cosine",
    },
    "logit+shared+per_class+cut cosine": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "shared",
        "crop_saliency": "per_class",
        "local_encoder": "cut",
        "guidance_schedule": "cosine",
    },
    "logit+init+per_class cosine oof2": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "guidance_schedule": "cosine",
        "prior_folds": 2,
    },
    # The denoiser's width (every other configuration uses 512).
    "logit+init+per_class h1024": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "hidden_dim": 1024,
    },
    "logit+init+per_class h6144": {
        **PAPER,
        "prediction_type": "logit_residual",
        "denoiser_init": "guidance",
        "crop_saliency": "per_class",
        "hidden_dim": 6144,
    },
    "epsilon+init": {**PAPER, "denoiser_init": "guidance"},
    "sample+focal": {**PAPER, "prediction_type": "sample", "focal_weight": 10.0},
    "epsilon+focal": {**PAPER, "focal_weight": 10.0},
    "epsilon+no_mmd": {**PAPER, "mmd_weight": 0.0},
    "epsilon+7/7": {**PAPER, "epochs_split": (7, 7)},
}
# Prediction settings, applied to every fit with set_params (no refit). The
# settings with several chains are scored with three ways of combining them:
# the mean of the chains' probabilities (what predict_proba does), the softmax
# of the chains' mean y_0, and CARD's majority vote.
ONE_CHAIN = dict(sampler="ddim", eta=0.0, n_samples=1, clip_sample=False)
PREDICTIONS = {
    "ddim10": dict(ONE_CHAIN, n_inference_steps=10),
    "ddim10+clip": dict(ONE_CHAIN, n_inference_steps=10, clip_sample=True),
    "ddpm": dict(ONE_CHAIN, sampler="ddpm"),
    "ddim10 x16 eta=0": dict(ONE_CHAIN, n_inference_steps=10, n_samples=16),
    "ddim10 x16 eta=1": dict(ONE_CHAIN, n_inference_steps=10, n_samples=16, eta=1.0),
    "ddim10 x64 eta=1": dict(ONE_CHAIN, n_inference_steps=10, n_samples=64, eta=1.0),
    # How many DDIM steps the chain needs (one chain, deterministic).
    "ddim1": dict(ONE_CHAIN, n_inference_steps=1),
    "ddim2": dict(ONE_CHAIN, n_inference_steps=2),
    "ddim50": dict(ONE_CHAIN, n_inference_steps=50),
}


def combine(scores: np.ndarray) -> dict:
    """Class scores ``(n, K)`` from the chains' scores ``(n, S, K)`` (the
    estimator's, :func:`~skdiffmic._sampling.chain_scores` less its
    correction offset with ``center_correction``), per rule."""
    if scores.shape[1] == 1:
        return {"": chain_softmax(scores[:, 0], 1.0)}
    votes = np.eye(scores.shape[2])[scores.argmax(-1)].mean(1)
    return {
        " mean proba": chain_softmax(scores, 1.0).mean(1),
        " mean y0": chain_softmax(scores.mean(1), 1.0),
        " vote": votes,
    }


def _digits(seed: int, n: int, size: int):
    """scikit-learn's 8x8 digits, upsampled (bilinear) to ``size`` px, uint8."""
    data = load_digits()
    keep, _ = train_test_split(
        np.arange(len(data.target)),
        train_size=n,
        stratify=data.target,
        random_state=seed,
    )
    images = (data.images[keep] * (255 / 16)).astype(np.uint8)
    X = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
            for im in images
        ]
    )
    return X, data.target[keep]


def _dermamnist(path, n_train: int, seed: int):
    """A stratified subset of DermaMNIST's train split, and its val split."""
    from skdiffmic.datasets import load_medmnist

    if not path:
        raise SystemExit("--datasets dermamnist needs --dermamnist FILE.npz")
    X, y = load_medmnist(path, split="train", return_X_y=True)
    X_val, y_val = load_medmnist(path, split="val", return_X_y=True)
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n_train, stratify=y, random_state=seed
    )
    keep = np.sort(keep)
    return X[keep], X_val, y[keep], y_val


def load(name: str, seed: int, dermamnist=None):
    """``(X_train, X_val, y_train, y_val)`` of the selection split."""
    s = DATASETS[name]
    if name == "dermamnist":
        return _dermamnist(dermamnist, s["n_train"], seed)
    n = s["n_train"] + s["n_val"]
    if name == "br35h":
        paths, y = load_br35h(return_X_y=True)
        # The main job scores on train_test_split(..., train_size=600,
        # random_state=0): select on the other images only.
        main, rest = train_test_split(
            np.arange(len(y)), train_size=600, stratify=y, random_state=0
        )
        keep, _ = train_test_split(
            rest, train_size=n, stratify=y[rest], random_state=seed
        )
        X, y = read_images(paths[np.sort(keep)], size=s["image_size"]), y[np.sort(keep)]
    elif name == "lesions":
        # Another seed than the tests' and the gallery's.
        X, y = make_lesions(
            n, image_size=s["image_size"], n_classes=3, random_state=1000 + seed
        )
    else:
        X, y = _digits(seed, n, s["image_size"])
    return train_test_split(X, y, test_size=s["n_val"], stratify=y, random_state=seed)


def scores(y_true, proba, classes) -> dict:
    pred = classes[proba.argmax(1)]
    if len(classes) == 2:
        auc = roc_auc_score(y_true, proba[:, 1])
    else:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    return {
        "accuracy": accuracy_score(y_true, pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, pred),
        "macro_f1": f1_score(y_true, pred, average="macro"),
        "roc_auc": auc,
    }


def run(
    names,
    configs,
    seed,
    out: Path,
    backbone="resnet10t",
    pretrained=False,
    epochs=None,
    cnn_learning_rates=(None,),
    guidance_learning_rates=(None,),
    predictions=tuple(PREDICTIONS),
    dermamnist=None,
    cnn_class_weight=None,
    diffmic_set=None,
):
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "ablation.csv"

    def emit(row):
        rows.append(row)
        pd.DataFrame(rows).to_csv(csv, index=False)
        print(
            f"  {row['dataset']:8s} {row['config']:14s} {row['prediction']:17s} "
            f"acc {row['accuracy']:.3f}  F1 {row['macro_f1']:.3f}  "
            f"AUC {row['roc_auc']:.3f}  fit {row['fit_s']:.0f} s",
            flush=True,
        )

    for name in names:
        s = DATASETS[name]
        X_tr, X_va, y_tr, y_va = load(name, seed, dermamnist)
        print(
            f"{name}: {len(y_tr)} train / {len(y_va)} validation images "
            f"{X_tr.shape[1:]}",
            flush=True,
        )
        common = dict(
            COMMON,
            backbone=backbone,
            pretrained=pretrained,
            image_size=s["image_size"],
            random_state=seed,
        )
        budget = epochs or (s["guidance_epochs"], s["max_epochs"])
        for config, lr in [
            (c, lr)
            for c in configs
            for lr in (cnn_learning_rates if c == "cnn" else guidance_learning_rates)
        ]:
            if config == "cnn":
                label = "CNN (CE)" + ("" if lr is None else f" lr={lr:g}")
                rate = {} if lr is None else {"learning_rate": lr}
                if cnn_class_weight is not None:
                    label += f" class_weight={cnn_class_weight}"
                    rate["class_weight"] = cnn_class_weight
                cnn = TimmClassifier(max_epochs=sum(budget), **rate, **common)
                start = time.perf_counter()
                cnn.fit(X_tr, y_tr)
                emit(
                    {
                        "dataset": name,
                        "config": label,
                        "prediction": "-",
                        **scores(y_va, cnn.predict_proba(X_va), cnn.classes_),
                        "fit_s": time.perf_counter() - start,
                    }
                )
                continue
            params = dict(CONFIGS[config])
            if lr is not None:
                params["guidance_learning_rate"] = lr
                config = f"{config} glr={lr:g}"
            if diffmic_set:
                params.update(diffmic_set)
                config += " " + " ".join(f"{k}={v}" for k, v in diffmic_set.items())
            g, d = params.pop("epochs_split", budget)
            params.setdefault("hidden_dim", 512)
            clf = DiffMICClassifier(guidance_epochs=g, max_epochs=d, **params, **common)
            start = time.perf_counter()
            clf.fit(X_tr, y_tr)
            fit_s = time.perf_counter() - start
            emit(
                {
                    "dataset": name,
                    "config": config,
                    "prediction": "DCG prior",
                    **scores(y_va, clf.predict_prior_proba(X_va), clf.classes_),
                    "fit_s": fit_s,
                }
            )
            for label in predictions:
                settings = PREDICTIONS[label]
                clf.set_params(**settings)
                for rule, proba in combine(clf._scores(clf._denoise(X_va))).items():
                    emit(
                        {
                            "dataset": name,
                            "config": config,
                            "prediction": label + rule,
                            **scores(y_va, proba, clf.classes_),
                            "fit_s": fit_s,
                        }
                    )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| data | configuration | prediction | accuracy | macro-F1 | ROC AUC |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.dataset} | {r.config} | {r.prediction} | {r.accuracy:.3f} | "
            f"{r.macro_f1:.3f} | {r.roc_auc:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(DATASETS),
        help="default: every set (dermamnist only with --dermamnist)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=["cnn", *CONFIGS],
        default=["cnn", *CONFIGS],
        help="training configurations; 'cnn' is the CNN baseline",
    )
    parser.add_argument("--backbone", default=COMMON["backbone"])
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="start every network from ImageNet weights (pretrained=True)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=2,
        metavar=("GUIDANCE", "DIFFUSION"),
        help="DCG warm-up and diffusion epochs (the CNN trains for their sum)",
    )
    parser.add_argument(
        "--cnn-lr",
        type=float,
        nargs="+",
        default=[None],
        help="the CNN's learning rates to try (default: TimmClassifier's)",
    )
    parser.add_argument(
        "--guidance-lr",
        type=float,
        nargs="+",
        default=[None],
        help="DiffMIC's guidance_learning_rate values to try (default: its own)",
    )
    parser.add_argument(
        "--predictions",
        nargs="+",
        choices=list(PREDICTIONS),
        default=list(PREDICTIONS),
        help="prediction settings to score every DiffMIC fit with",
    )
    parser.add_argument(
        "--dermamnist", help="a MedMNIST DermaMNIST .npz (train and val splits)"
    )
    parser.add_argument(
        "--cnn-class-weight",
        choices=["balanced"],
        help="the CNN's class_weight (default: none)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        metavar="PARAM=VALUE",
        help="DiffMIC parameters set on top of every configuration "
        "(the configuration's label says which)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("ablation_results"))
    args = parser.parse_args(argv)
    if args.datasets is None:
        args.datasets = [n for n in DATASETS if n != "dermamnist" or args.dermamnist]
    if "dermamnist" in args.datasets and not args.dermamnist:
        parser.error("--datasets dermamnist needs --dermamnist FILE.npz")
    start = time.perf_counter()
    table = run(
        args.datasets,
        args.configs,
        args.seed,
        args.out,
        backbone=args.backbone,
        pretrained=args.pretrained,
        epochs=args.epochs,
        cnn_learning_rates=args.cnn_lr,
        guidance_learning_rates=args.guidance_lr,
        predictions=args.predictions,
        dermamnist=args.dermamnist,
        cnn_class_weight=args.cnn_class_weight,
        diffmic_set=parse_settings(args.set),
    )
    print(f"\n{os.cpu_count()} CPU(s), {time.perf_counter() - start:.0f} s in all\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
