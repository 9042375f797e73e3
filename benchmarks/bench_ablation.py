"""Which of DiffMIC's levers make the diffusion add to its prior? An ablation.

For each data set, one stratified train / validation split of *selection*
data: images that the reported benchmarks never score on. For Br35H these are
drawn from the 2,400 images outside the main job's 600-image subset
(``examples/benchmark.py``); ``make_lesions`` and the upsampled digits use
their own seed. On that split the script fits

* the CNN baseline (:class:`~skdiffmic.baselines.TimmClassifier`, the same
  backbone for the same total epochs, image size and augmentation);
* DiffMIC once per *training* configuration: ``presets.PAPER`` at the
  width of 512 and the backbone and weights asked for, with what the
  configuration changes (prediction parameterisation, the denoiser's
  encoder, the MMD weight, the split of epochs between DCG warm-up and
  diffusion, the saliency the DCG's windows are chosen on, the cost levers,
  the DCG's learning-rate schedule, the width); ``fine_tune`` is
  ``presets.FINE_TUNE``, the estimator's defaults;

and scores every DiffMIC fit with its own DCG prior and with several
*prediction* settings of the same fitted model (DDIM or the full DDPM chain,
1, 16 or 64 chains, deterministic or stochastic, combined in three ways).
Prints one table of accuracy, macro-F1 and ROC AUC on the validation images,
and writes ``ablation.csv`` (one row per data set, configuration and
prediction setting) as it goes. Each DiffMIC fit takes about 3 minutes on a
2-core CPU at the default budget, so choose the sets and configurations: all
of them take most of a day. DermaMNIST is among the default sets only when
``--dermamnist`` names its file.

    python -m benchmarks.bench_ablation                         # everything
    python -m benchmarks.bench_ablation --datasets lesions --configs cnn paper sample
    python -m benchmarks.bench_ablation --datasets br35h --pretrained \
        --backbone tf_efficientnet_lite0 --epochs 2 6 --cnn-lr 2e-4 1e-3
    python -m benchmarks.bench_ablation --datasets br35h --pretrained \
        --backbone tf_efficientnet_lite0 --epochs 2 6 --configs fine_tune \
        --set learning_rate=3e-3

The presets were chosen from this table (validation data), never from the
cross-validated folds the main job reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.special import softmax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.baselines import TimmClassifier
from skdiffmic.datasets import load_br35h, make_lesions, read_images

from ._common import (
    add_set_argument,
    markdown,
    parse_settings,
    parser,
    scores,
    splits,
    timed,
    timed_run,
)

# Per data set: images, size and budget (resnet10t's on the CPU).
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
BACKBONE = "resnet10t"

# Training configurations: what each changes from PAPER, the paper's
# configuration (presets.PAPER) at the width of 512; every run sets the
# backbone and weights on top (--backbone, --pretrained).
PAPER = dict(presets.PAPER, hidden_dim=512)
LOGIT = dict(prediction_type="logit_residual", denoiser_init="guidance")
PER_CLASS = dict(LOGIT, crop_saliency="per_class")
# The cost levers: the DCG's encoder shared, the windows' CNN cut.
SHARED_CUT = dict(PER_CLASS, denoiser_init="shared", local_encoder="cut")
CONFIGS = {
    "paper": {},
    "sample": dict(prediction_type="sample"),
    "v_prediction": dict(prediction_type="v_prediction"),
    "sample+init": dict(prediction_type="sample", denoiser_init="guidance"),
    "logit+init": LOGIT,
    "logit+init+predicted": dict(LOGIT, crop_saliency="predicted"),
    "logit+init+per_class": PER_CLASS,
    "logit+shared+per_class": dict(PER_CLASS, denoiser_init="shared"),
    "logit+init+per_class+cut": dict(PER_CLASS, local_encoder="cut"),
    "logit+shared+per_class+cut": SHARED_CUT,
    # Class-weighted losses (the CNN gets the same with --cnn-class-weight).
    "logit+shared+per_class+cut balanced": dict(SHARED_CUT, class_weight="balanced"),
    # The DCG model's learning rate decayed on a cosine, as the CNN's.
    "logit+init+per_class cosine": dict(PER_CLASS, guidance_schedule="cosine"),
    "logit+shared+per_class+cut cosine": dict(SHARED_CUT, guidance_schedule="cosine"),
    # The denoiser's width.
    "logit+init+per_class h1024": dict(PER_CLASS, hidden_dim=1024),
    "logit+init+per_class h6144": dict(PER_CLASS, hidden_dim=6144),
    "epsilon+init": dict(denoiser_init="guidance"),
    "epsilon+no_mmd": dict(mmd_weight=0.0),
    "epsilon+7/7": dict(epochs_split=(7, 7)),
    # presets.FINE_TUNE, the estimator's defaults: "logit+shared+per_class+cut
    # cosine" at the DCG rate of 1e-3, its correction centred.
    "fine_tune": {
        k: v
        for k, v in presets.FINE_TUNE.items()
        if k not in ("backbone", "pretrained")
    },
}
# Prediction settings, applied to every fit with set_params (no refit). The
# settings with several chains are scored with three ways of combining them:
# the mean of the chains' probabilities (what predict_proba does), the softmax
# of the chains' mean y_0, and CARD's majority vote.
ONE_CHAIN = dict(sampler="ddim", eta=0.0, n_samples=1)
PREDICTIONS = {
    "ddim10": dict(ONE_CHAIN, n_inference_steps=10),
    "ddpm": dict(ONE_CHAIN, sampler="ddpm"),
    "ddim10 x16 eta=0": dict(ONE_CHAIN, n_inference_steps=10, n_samples=16),
    "ddim10 x16 eta=1": dict(ONE_CHAIN, n_inference_steps=10, n_samples=16, eta=1.0),
    "ddim10 x64 eta=1": dict(ONE_CHAIN, n_inference_steps=10, n_samples=64, eta=1.0),
    # How many DDIM steps the chain needs (one chain, deterministic).
    "ddim1": dict(ONE_CHAIN, n_inference_steps=1),
    "ddim2": dict(ONE_CHAIN, n_inference_steps=2),
    "ddim50": dict(ONE_CHAIN, n_inference_steps=50),
}


def combine(samples: np.ndarray) -> dict:
    """Class probabilities ``(n, K)`` from the chains' ``(n, S, K)``
    (``sample_proba``), per rule: one chain as it is; several averaged (what
    ``predict_proba`` does), the softmax of their mean log-probabilities
    (their mean scores, at the temperature of 1 of these fits), and CARD's
    majority vote."""
    if samples.shape[1] == 1:
        return {"": samples[:, 0]}
    log = np.log(np.maximum(samples, np.finfo(samples.dtype).tiny))
    return {
        " mean proba": samples.mean(1),
        " mean y0": softmax(log.mean(1), axis=-1),
        " vote": np.eye(samples.shape[2])[samples.argmax(-1)].mean(1),
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


def load(name: str, seed: int, dermamnist=None):
    """``(X_train, X_val, y_train, y_val)`` of the selection split."""
    s = DATASETS[name]
    if name == "dermamnist":
        ((X_tr, y_tr, X_val, y_val),) = splits(
            name, dermamnist, "trainval", s["n_train"], None, 3, seed
        )
        return X_tr, X_val, y_tr, y_val
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


def fit_cnn(X, y, budget, common, lr=None, class_weight=None):
    """``(label, fitted CNN, fit seconds)``: the CNN baseline for the
    DCG + diffusion epochs, at the rate ``lr`` (None: its default)."""
    label = "CNN (CE)" + ("" if lr is None else f" lr={lr:g}")
    params = {} if lr is None else {"learning_rate": lr}
    if class_weight is not None:
        label += f" class_weight={class_weight}"
        params["class_weight"] = class_weight
    cnn = TimmClassifier(max_epochs=sum(budget), **params, **common)
    return label, *timed(cnn.fit, X, y)


def fit_diffmic(config, X, y, budget, common, lr=None, diffmic_set=None):
    """``(label, fitted DiffMIC, fit seconds)``: the configuration ``config``
    (:data:`CONFIGS` on :data:`PAPER`), at the DCG rate ``lr`` (None: the
    configuration's), with ``diffmic_set`` on top."""
    params = {**PAPER, **CONFIGS[config]}
    if lr is not None:
        params["guidance_learning_rate"] = lr
        config = f"{config} glr={lr:g}"
    if diffmic_set:
        params.update(diffmic_set)
        config += " " + " ".join(f"{k}={v}" for k, v in diffmic_set.items())
    g, d = params.pop("epochs_split", budget)
    params.update(common)
    clf = DiffMICClassifier(**params, guidance_epochs=g, max_epochs=d)
    return config, *timed(clf.fit, X, y)


def run(args) -> pd.DataFrame:
    rows = []

    def emit(row):
        rows.append(row)
        pd.DataFrame(rows).to_csv(args.out / "ablation.csv", index=False)
        print(
            f"  {row['dataset']:8s} {row['config']:14s} {row['prediction']:17s} "
            f"acc {row['accuracy']:.3f}  F1 {row['macro_f1']:.3f}  "
            f"AUC {row['roc_auc']:.3f}  fit {row['fit_s']:.0f} s",
            flush=True,
        )

    diffmic_set = parse_settings(args.set)
    for name in args.datasets:
        s = DATASETS[name]
        X_tr, X_va, y_tr, y_va = load(name, args.seed, args.dermamnist)
        print(
            f"{name}: {len(y_tr)} train / {len(y_va)} validation images "
            f"{X_tr.shape[1:]}",
            flush=True,
        )
        common = dict(
            backbone=args.backbone,
            pretrained=args.pretrained,
            image_size=s["image_size"],
            batch_size=32,
            random_state=args.seed,
        )
        budget = args.epochs or (s["guidance_epochs"], s["max_epochs"])
        for config in args.configs:
            for lr in args.cnn_lr if config == "cnn" else args.guidance_lr:
                if config == "cnn":
                    label, cnn, fit_s = fit_cnn(
                        X_tr, y_tr, budget, common, lr, args.cnn_class_weight
                    )
                    proba = {"-": cnn.predict_proba(X_va)}
                else:
                    label, clf, fit_s = fit_diffmic(
                        config, X_tr, y_tr, budget, common, lr, diffmic_set
                    )
                    proba = {"DCG prior": clf.predict_prior_proba(X_va)}
                    for prediction in args.predictions:
                        clf.set_params(**PREDICTIONS[prediction])
                        for rule, p in combine(clf.sample_proba(X_va)).items():
                            proba[prediction + rule] = p
                for prediction, p in proba.items():
                    row = dict(dataset=name, config=label, prediction=prediction)
                    emit({**row, **scores(y_va, p, np.unique(y_tr)), "fit_s": fit_s})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument(
        "--datasets",
        nargs="+",
        choices=list(DATASETS),
        help="default: every set (dermamnist only with --dermamnist)",
    )
    parse.add_argument(
        "--configs",
        nargs="+",
        choices=["cnn", *CONFIGS],
        default=["cnn", *CONFIGS],
        help="training configurations; 'cnn' is the CNN baseline",
    )
    parse.add_argument("--backbone", default=BACKBONE)
    parse.add_argument(
        "--pretrained",
        action="store_true",
        help="start every network from ImageNet weights (pretrained=True)",
    )
    parse.add_argument(
        "--epochs",
        type=int,
        nargs=2,
        metavar=("GUIDANCE", "DIFFUSION"),
        help="DCG warm-up and diffusion epochs (the CNN trains for their sum)",
    )
    parse.add_argument(
        "--cnn-lr",
        type=float,
        nargs="+",
        default=[None],
        help="the CNN's learning rates to try (default: TimmClassifier's)",
    )
    parse.add_argument(
        "--guidance-lr",
        type=float,
        nargs="+",
        default=[None],
        help="DiffMIC's guidance_learning_rate values to try (default: the "
        "configuration's)",
    )
    parse.add_argument(
        "--predictions",
        nargs="+",
        choices=list(PREDICTIONS),
        default=list(PREDICTIONS),
        help="prediction settings to score every DiffMIC fit with",
    )
    parse.add_argument(
        "--dermamnist", help="a MedMNIST DermaMNIST .npz (train and val splits)"
    )
    parse.add_argument(
        "--cnn-class-weight",
        choices=["balanced"],
        help="the CNN's class_weight (default: none)",
    )
    add_set_argument(parse)
    parse.add_argument("--seed", type=int, default=0)
    parse.add_argument("--out", type=Path, default=Path("ablation_results"))
    args = parse.parse_args(argv)
    if args.datasets is None:
        args.datasets = [n for n in DATASETS if n != "dermamnist" or args.dermamnist]
    if "dermamnist" in args.datasets and not args.dermamnist:
        parse.error("--datasets dermamnist needs --dermamnist FILE.npz")
    table = timed_run(run, args)
    columns = ["dataset", "config", "prediction", "accuracy", "macro_f1", "roc_auc"]
    print(markdown(table[columns]))


if __name__ == "__main__":
    main()
