"""Are DiffMIC's probabilities calibrated, and does ``confident`` mean anything?

On one stratified train / held-out split of Br35H (brain-MRI slices, tumour
yes / no), fits DiffMIC (with a validation hold-out, on which its softmax
temperature and the reference distances of its typicality test are fitted)
and the plain CNN baseline with the same backbone and number of epochs. Then,
on the held-out images:

1. **Calibration** of DiffMIC (fitted temperature, and temperature 1), of its
   DCG prior and of the CNN: accuracy, expected calibration error (15 bins),
   Brier score and log-loss; a reliability diagram (PNG).
2. **Confidence**: ``predict_uncertainty`` flags each held-out image
   ``confident`` or not; accuracy of each group, for the full rule and for
   CARD's t-test alone.
3. **Pure noise**: the fraction of uniform-noise images flagged confident, by
   the t-test alone and by the full rule.

    python -m benchmarks.bench_uncertainty                    # ~25 min, 2-core CPU
    python -m benchmarks.bench_uncertainty --n-images 3000 --epochs 60  # GPU
    python -m benchmarks.bench_uncertainty --dataset lesions --epochs 10

DiffMIC is ``presets.SCRATCH`` (``resnet10t`` here), with the options below
changing its backbone, width, target, encoders and windows.

``--images-npz FILE`` reads pre-decoded images instead (arrays ``X`` and
``y``, e.g. written from :func:`skdiffmic.datasets.read_images` on a machine
where the data package cannot be installed).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.baselines import TimmClassifier
from skdiffmic.datasets import make_lesions, read_images
from skdiffmic.metrics import calibration_bins, expected_calibration_error

from ._common import load_br35h_subset, markdown, parser, stratified_subset, timed


def load(args):
    if args.dataset == "lesions" and not args.images_npz:
        return make_lesions(args.n_images, image_size=args.image_size, random_state=0)
    if not args.images_npz:
        return load_br35h_subset(args.n_images, args.image_size, 0)
    data = np.load(args.images_npz, allow_pickle=False)
    keep = stratified_subset(data["y"], args.n_images, 0)
    X, y = data["X"][keep], data["y"][keep]
    if X.dtype.kind in "USO":  # file paths
        X = read_images(X, size=args.image_size)
    return X, y


def calibration_row(name, y, proba, classes):
    return {
        "model": name,
        "accuracy": float(np.mean(classes[proba.argmax(1)] == y)),
        "ECE (15 bins)": expected_calibration_error(y, proba, labels=classes),
        "Brier": brier_score_loss(y, proba, labels=classes),
        "log-loss": log_loss(y, proba, labels=classes),
    }


def reliability_diagram(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 4), sharey=True)
    centres = (np.arange(15) + 0.5) / 15
    for ax, (name, (conf, acc, count, ece)) in zip(np.atleast_1d(axes), curves.items()):
        filled = count > 0
        ax.bar(
            centres[filled],
            acc[filled],
            width=1 / 15,
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot(
            conf[filled],
            acc[filled],
            "o",
            color="crimson",
            ms=4,
            label="(mean confidence, accuracy)",
        )
        ax.set(
            title=f"{name}\nECE = {ece:.3f}",
            xlabel="confidence (top class)",
            xlim=(0, 1),
            ylim=(0, 1),
        )
    np.atleast_1d(axes)[0].set_ylabel("accuracy")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--dataset", choices=["br35h", "lesions"], default="br35h")
    parse.add_argument("--images-npz", default=None)
    parse.add_argument("--n-images", type=int, default=600)
    parse.add_argument("--image-size", type=int, default=64)
    parse.add_argument("--backbone", default="resnet10t")
    parse.add_argument("--guidance-epochs", type=int, default=4)
    parse.add_argument("--epochs", type=int, default=30)
    parse.add_argument("--hidden-dim", type=int, default=512)
    parse.add_argument("--batch-size", type=int, default=32)
    parse.add_argument("--n-samples", type=int, default=32)
    parse.add_argument("--eta", type=float, default=1.0)
    parse.add_argument(
        "--validation-fraction",
        type=float,
        default=0.15,
        help="DiffMIC's hold-out; 0 for none (the estimator's default)",
    )
    parse.add_argument("--n-noise", type=int, default=100)
    parse.add_argument("--alpha", type=float, default=0.05)
    parse.add_argument(
        "--prediction-type",
        default=presets.SCRATCH["prediction_type"],
        choices=["logit_residual", "sample", "epsilon", "v_prediction"],
        help="the denoiser's target (default: the preset's)",
    )
    parse.add_argument(
        "--denoiser-init",
        default=presets.SCRATCH["denoiser_init"],
        choices=["guidance", "scratch", "shared"],
        help="the denoiser's encoder (default: the preset's)",
    )
    parse.add_argument(
        "--local-encoder",
        default=presets.SCRATCH["local_encoder"],
        choices=["full", "cut"],
        help="the windows' CNN (default: the preset's)",
    )
    parse.add_argument(
        "--pretrained",
        action="store_true",
        help="start every network from ImageNet weights (pretrained=True)",
    )
    parse.add_argument(
        "--crop-saliency",
        default=presets.SCRATCH["crop_saliency"],
        choices=["per_class", "sum", "predicted"],
        help="the map the DCG's windows are chosen on (default: the preset's)",
    )
    parse.add_argument("--seed", type=int, default=0)
    parse.add_argument("--out", default="uncertainty_results")
    args = parse.parse_args(argv)

    X, y = load(args)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=1 / 3, stratify=y, random_state=args.seed
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"{args.dataset}: {len(y_train)} train / {len(y_test)} held-out images at "
        f"{X.shape[1]} px, {args.backbone}, {args.guidance_epochs} + {args.epochs} "
        f"epochs, {args.n_samples} chains (eta={args.eta}), device {device}",
        flush=True,
    )

    config = dict(
        presets.SCRATCH,
        backbone=args.backbone,
        pretrained=args.pretrained,
        hidden_dim=args.hidden_dim,
        prediction_type=args.prediction_type,
        denoiser_init=args.denoiser_init,
        local_encoder=args.local_encoder,
        crop_saliency=args.crop_saliency,
    )
    clf = DiffMICClassifier(
        **config,
        guidance_epochs=args.guidance_epochs,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        n_samples=args.n_samples,
        eta=args.eta,
        # 0: no hold-out, the estimator's default.
        validation_fraction=args.validation_fraction or None,
        random_state=args.seed,
    )
    _, seconds = timed(clf.fit, X_train, y_train)
    print(
        f"DiffMIC fitted in {seconds:.0f} s "
        f"(temperature {clf.temperature_:.3f}, best epoch {clf.best_epoch_})",
        flush=True,
    )
    cnn = TimmClassifier(
        backbone=args.backbone,
        max_epochs=args.guidance_epochs + args.epochs,
        batch_size=args.batch_size,
        pretrained=args.pretrained,
        random_state=args.seed,
    )
    _, seconds = timed(cnn.fit, X_train, y_train)
    print(f"CNN fitted in {seconds:.0f} s", flush=True)

    classes = clf.classes_
    temperature = clf.temperature_
    proba = clf.predict_proba(X_test)
    clf.temperature_ = 1.0
    proba_t1 = clf.predict_proba(X_test)
    clf.temperature_ = temperature
    models = {
        "DiffMIC": proba,
        "DiffMIC (T = 1)": proba_t1,
        "DCG prior": clf.predict_prior_proba(X_test),
        "CNN (CE)": cnn.predict_proba(X_test),
    }
    table = pd.DataFrame(
        [calibration_row(name, y_test, p, classes) for name, p in models.items()]
    )

    uncertainty = clf.predict_uncertainty(
        X_test, n_samples=args.n_samples, alpha=args.alpha
    )
    correct = (uncertainty["prediction"] == y_test).to_numpy()
    t_test = (uncertainty["p_value"] < args.alpha).to_numpy()
    rules = {
        "t-test alone (p < alpha)": t_test,
        "confident (t-test and typical)": uncertainty["confident"].to_numpy(),
    }
    confidence_rows = []
    for rule, flagged in rules.items():
        confidence_rows.append(
            {
                "rule": rule,
                "flagged": f"{flagged.sum()} / {len(flagged)}",
                "accuracy flagged": correct[flagged].mean()
                if flagged.any()
                else np.nan,
                "accuracy not flagged": (
                    correct[~flagged].mean() if (~flagged).any() else np.nan
                ),
            }
        )

    rng = np.random.default_rng(args.seed)
    noise = rng.integers(0, 256, (args.n_noise,) + X_test.shape[1:], dtype=np.uint8)
    on_noise = clf.predict_uncertainty(
        noise, n_samples=args.n_samples, alpha=args.alpha
    )
    on_clean = uncertainty
    noise_rows = [
        {
            "images": name,
            "t-test alone": float(np.mean(frame["p_value"] < args.alpha)),
            "confident": float(frame["confident"].mean()),
            "median feature distance": float(frame["feature_distance"].median()),
        }
        for name, frame in (("held-out Br35H", on_clean), ("uniform noise", on_noise))
    ]
    if args.dataset == "lesions":
        noise_rows[0]["images"] = "held-out lesions"

    os.makedirs(args.out, exist_ok=True)
    curves = {}
    for name in ("DiffMIC", "DCG prior", "CNN (CE)"):
        conf, acc, count = calibration_bins(y_test, models[name], labels=classes)
        ece = expected_calibration_error(y_test, models[name], labels=classes)
        curves[name] = (conf, acc, count, ece)
    reliability_diagram(curves, os.path.join(args.out, "reliability.png"))
    table.to_csv(os.path.join(args.out, "calibration.csv"), index=False)
    uncertainty.assign(truth=y_test).to_csv(
        os.path.join(args.out, "uncertainty.csv"), index=False
    )

    print(f"\nCalibration on {len(y_test)} held-out images:\n")
    print(markdown(table))
    print(f"\nConfidence flags (alpha = {args.alpha}, {args.n_samples} chains):\n")
    print(markdown(pd.DataFrame(confidence_rows)))
    print("\nFraction flagged, clean against pure-noise images:\n")
    print(markdown(pd.DataFrame(noise_rows)))
    print(f"\nreliability diagram: {os.path.join(args.out, 'reliability.png')}")


if __name__ == "__main__":
    main()
