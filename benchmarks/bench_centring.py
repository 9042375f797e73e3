"""What to take out of the denoiser's correction at prediction.

DiffMIC's log-space correction, ``log y_0 = log p + r``, is learned on the
training rows, where the DCG prior is less confident than it is right. Part
of ``r`` there is explained by the prior itself: a constant lean per class
(towards the majority class) and a sharpening in proportion to the prior's
own log-probabilities. On new images the prior is over-confident, so both
parts mislead. ``center_correction=True`` removes the constant part. This
benchmark asks whether removing the sharpening as well helps.

Each DiffMIC fit (the main job's settings, ``presets.FINE_TUNE`` at the
budget of ``examples/benchmark.py``; ``--set`` overrides them) is read five
ways on the same chains:

* ``DCG prior``: the fit's own prior;
* ``uncentred``: the chains as they come (``center_correction=False``);
* ``centred``: less the training rows' mean correction, as
  ``center_correction=True`` predicts;
* ``affine``: less the part of the correction that a per-class constant and
  one slope on the prior's centred log-probabilities explain on the
  training rows (least squares);
* ``affine per class``: the same with one slope per class.

The readings are computed here from the estimator's chains
(``sample_proba``, uncentred) and prior (``predict_prior_proba``), as
``predict_proba`` computes its probabilities; the affine ones are not an
estimator option (with two classes its two slopes are the same). Splits are
the robustness benchmark's (``benchmarks/bench_robustness.py``, no
corruption): ``--split trainval`` fits one stratified ``--n-train`` of
DermaMNIST's official train split, once per model seed ``--seeds``, and
scores the official val split; ``--split cv`` runs its 3-fold CV on 2,100
images of train + val, fold ``k`` fitted with seed ``k`` as there
(``--seeds`` unused); ``--dataset br35h`` uses the main job's folds (its
first with ``trainval``; ``--n-train`` unused). Prints every fit's slope and
its readings' macro-F1, ROC AUC and log-loss, their means, and each
reading's macro-F1 and ROC AUC minus the prior's, fit by fit; writes
``centring.csv`` to ``--out``. ::

    python -m benchmarks.bench_centring --data dermamnist_trainval.npz --seeds 0 1 2 3
    python -m benchmarks.bench_centring --data dermamnist_trainval.npz --split cv
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from ._common import (
    add_run_arguments,
    data_parser,
    main_job_models,
    main_job_settings,
    parse_checked,
    parse_settings,
    prepare,
    splits,
    timed,
    timed_run,
)

READINGS = ("DCG prior", "uncentred", "centred", "affine", "affine per class")


def _centred(z):
    return z - z.mean(axis=-1, keepdims=True)


def chains_and_prior(clf, X):
    """``(the chains' scores log y_0, (n, n_samples, K); log p, (n, K))``, the
    scores up to a constant per chain (which no reading depends on): the
    log of the uncentred ``sample_proba`` at the fitted temperature."""
    centre = clf.center_correction
    clf.set_params(center_correction=False)
    try:
        samples = clf.sample_proba(X)
    finally:
        clf.set_params(center_correction=centre)
    tiny = np.finfo(samples.dtype).tiny
    scores = clf.temperature_ * np.log(np.maximum(samples, tiny))
    return scores, np.log(np.maximum(clf.predict_prior_proba(X), tiny))


def explained(train_scores, train_prior, per_class=False):
    """``(offset (K,), slope (1,) or (K,))``: the least-squares fit, over the
    training rows, of the correction ``centred(log y_0) - centred(log p)``
    (``train_scores`` averaged over the chains, (n, K)) by ``offset + slope *
    centred(log p)``. A class whose centred log-prior does not vary gets a
    slope of 0."""
    base = _centred(train_prior)
    correction = _centred(train_scores) - base
    x = base - base.mean(axis=0)
    z = correction - correction.mean(axis=0)
    axis = 0 if per_class else None
    spread = (x**2).sum(axis=axis)
    slope = np.where(spread > 0, (z * x).sum(axis=axis) / np.maximum(spread, 1e-300), 0)
    slope = np.atleast_1d(slope)
    offset = correction.mean(axis=0) - slope * base.mean(axis=0)
    return offset, slope


def readings(clf, X_train, X_test) -> tuple[dict, float]:
    """Each reading's probabilities on ``X_test`` (see the module docstring),
    and the shared slope of the affine fit.

    As in ``predict_proba``, each chain's scores, less what the reading
    removes, go through ``softmax(. / temperature_)``, and the chains'
    probabilities are averaged; "centred" removes the estimator's own
    ``correction_offset_``."""
    train_scores, train_prior = chains_and_prior(clf, X_train)
    scores, prior = chains_and_prior(clf, X_test)
    temperature = clf.temperature_

    def proba(removed):
        chains = (scores - removed[:, None, :]) / temperature
        return softmax(chains, axis=-1).mean(axis=1)

    none = np.zeros_like(prior)
    out = {
        "DCG prior": softmax(prior, axis=-1),
        "uncentred": proba(none),
        "centred": proba(none + clf.correction_offset_),
    }
    for name, per_class in (("affine", False), ("affine per class", True)):
        offset, slope = explained(train_scores.mean(axis=1), train_prior, per_class)
        out[name] = proba(offset + slope * _centred(prior))
        if not per_class:
            shared = float(slope[0])
    return out, shared


def run(args) -> pd.DataFrame:
    s = main_job_settings("quick" if args.quick else "default")
    folds = splits(
        args.dataset, args.data, args.split, args.n_train, None, args.folds, 0
    )
    if args.split == "trainval":
        fits = [(f"seed {seed}", seed, folds[0]) for seed in args.seeds]
    else:  # fold k fitted with seed k, as in the robustness benchmark
        fits = [(f"fold {k}", k, fold) for k, fold in enumerate(folds, start=1)]
    rows = []
    for label, seed, (X_tr, y_tr, X_te, y_te) in fits:
        if args.quick:
            X_tr, y_tr, X_te, y_te = X_tr[:48], y_tr[:48], X_te[:24], y_te[:24]
        X_tr, X_te = prepare(X_tr, s["image_size"]), prepare(X_te, s["image_size"])
        clf, _ = main_job_models(s, random_state=seed, verbose=args.verbose)
        clf.set_params(**parse_settings(args.set))
        settings = clf.get_params()
        if settings["prediction_type"] != "logit_residual":
            raise SystemExit(
                "the readings are of the log-space correction: "
                "prediction_type='logit_residual'"
            )
        if settings["validation_fraction"] is not None:
            raise SystemExit(
                "the affine fit reads every training row; fit "
                "without validation_fraction"
            )
        if not np.isin(y_te, y_tr).all():
            raise SystemExit(
                f"[{label}] the test rows have a class that the training rows lack"
            )
        _, seconds = timed(clf.fit, X_tr, y_tr)
        print(f"[{label}] fitted in {seconds:.0f} s", flush=True)
        labels = np.arange(len(clf.classes_))
        truth = np.searchsorted(clf.classes_, y_te)
        probabilities, slope = readings(clf, X_tr, X_te)
        print(f"  the training rows' correction: slope {slope:.3f}", flush=True)
        for name, proba in probabilities.items():
            if len(labels) == 2:
                auc = roc_auc_score(truth, proba[:, 1])
            else:
                auc = roc_auc_score(truth, proba, multi_class="ovr", labels=labels)
            rows.append(
                {
                    "fit": label,
                    "reading": name,
                    "macro_f1": f1_score(truth, proba.argmax(1), average="macro"),
                    "roc_auc": auc,
                    "log_loss": log_loss(truth, proba, labels=labels),
                }
            )
            print(
                f"  {name:<17} macro-F1 {rows[-1]['macro_f1']:.3f}  "
                f"AUC {rows[-1]['roc_auc']:.4f}  log-loss {rows[-1]['log_loss']:.3f}",
                flush=True,
            )
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "centring.csv", index=False)
    return results


def summary(results: pd.DataFrame) -> str:
    """Markdown: each reading's mean over the fits, and its paired
    difference from the prior fit by fit."""
    fits = list(dict.fromkeys(results.fit))
    table = results.set_index(["reading", "fit"])
    prior = table.loc["DCG prior"]
    lines = [
        "| reading | macro-F1 | ROC AUC | log-loss | minus prior, macro-F1 "
        "(points, by fit) | minus prior, ROC AUC (by fit) |",
        "|---|---|---|---|---|---|",
    ]
    for name in READINGS:
        mine = table.loc[name].loc[fits]
        f1 = 100 * (mine.macro_f1 - prior.macro_f1.loc[fits])
        auc = mine.roc_auc - prior.roc_auc.loc[fits]
        lines.append(
            f"| {name} | {mine.macro_f1.mean():.3f} | {mine.roc_auc.mean():.4f} | "
            f"{mine.log_loss.mean():.3f} | {f1.mean():+.1f} ("
            + ", ".join(f"{v:+.1f}" for v in f1)
            + f") | {auc.mean():+.4f} ("
            + ", ".join(f"{v:+.4f}" for v in auc)
            + ") |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = data_parser(__doc__, cnn=False)
    parser.add_argument("--split", choices=["trainval", "cv"], default="trainval")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--folds", type=int, default=3)
    add_run_arguments(parser, "centring_results")
    args = parse_checked(parser, argv)
    print(summary(timed_run(run, args)))


if __name__ == "__main__":
    main()
