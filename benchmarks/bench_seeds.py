"""Seed noise: how far DiffMIC, its DCG prior and the CNN move between fits.

Each model is fitted once per seed (``--seeds``) on the same split, at the
main job's settings (``examples/benchmark.py``: DiffMIC at
``presets.FINE_TUNE``, ``tf_efficientnet_lite0`` from ImageNet at 64 px,
2 + 6 epochs, the CNN 8 epochs, the same augmentation);
``--set`` overrides DiffMIC's parameters and ``--cnn-set`` the CNN's. The
seed changes the heads' initial weights, the batch order and the
augmentation draws, nothing else.

Prints, for each model: every seed's macro-F1, balanced accuracy, macro ROC
AUC and log-loss; their mean and standard deviation over the seeds; the
difference DiffMIC minus its own prior, seed by seed (the prior comes from
the same fit, so the difference is paired); and each model's *seed
ensemble*, the mean of its probabilities over the seeds, at the cost of as
many fits. The ensembles say how much of each model's error is variance
between fits, which one fit cannot average out, and the spread says how
large a difference between two single fits is noise.

The split is the robustness benchmark's (``benchmarks/bench_robustness.py``,
without corruption): ``--dataset dermamnist`` fits on a stratified
``--n-train`` of DermaMNIST's official train split and scores its whole
official val split (``--data`` names the MedMNIST ``.npz``; the test split is
never read); ``--dataset br35h`` fits and scores the main job's first fold.
Writes ``seeds.csv`` (one row per seed and model, and one per ensemble) to
``--out``. ::

    python -m benchmarks.bench_seeds --data dermamnist_trainval.npz
    python -m benchmarks.bench_seeds --dataset br35h --seeds 0 1 2 3 4
    python -m benchmarks.bench_seeds --data FILE --set center_correction=False
"""

from __future__ import annotations

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


def run(args) -> pd.DataFrame:
    """One row per seed and model, then one per model's seed ensemble."""
    mode = "quick" if args.quick else "default"
    size = MAIN_JOB[mode]["image_size"]
    ((X_tr, y_tr, X_te, y_te),) = splits(
        args.dataset, args.data, "trainval", args.n_train, None, 3, 0
    )
    if args.quick:
        X_tr, y_tr, X_te, y_te = X_tr[:48], y_tr[:48], X_te[:24], y_te[:24]
    X_fit, X_score = prepare(X_tr, size), prepare(X_te, size)
    print(f"{len(y_tr)} training / {len(y_te)} test images", flush=True)
    rows, probas = [], {}
    for seed in args.seeds:
        print(f"[seed {seed}]", flush=True)
        diffmic, cnn, fit_s = fit_models(
            X_fit,
            y_tr,
            mode,
            seed,
            parse_settings(args.set),
            parse_settings(args.cnn_set),
            args.verbose,
        )
        # The robustness benchmark's models: DiffMIC, its prior (charged
        # DiffMIC's fit), the CNN, and DiffMIC uncentred when it centres.
        out = predictions(diffmic, cnn, X_score)
        for model, proba in out.items():
            probas.setdefault(model, []).append(proba)
            row = {"seed": str(seed), "model": model}
            row["fit_s"] = fit_s.get(model, fit_s["DiffMIC"])
            rows.append({**row, **scores(y_te, proba, diffmic.classes_)})
        print(
            "  "
            + "  ".join(f"{r['model']} {r['macro_f1']:.3f}" for r in rows[-len(out) :]),
            flush=True,
        )
    for model in probas:
        ensemble = np.mean(probas[model], axis=0)
        row = {"seed": "ensemble", "model": model}
        row["fit_s"] = sum(r["fit_s"] for r in rows if r["model"] == model)
        rows.append({**row, **scores(y_te, ensemble, diffmic.classes_)})
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "seeds.csv", index=False)
    return results


def summary(results: pd.DataFrame) -> str:
    """Markdown: per-seed scores, mean +- sd, the paired difference DiffMIC
    minus its prior, and the seed ensembles."""
    single = results[results.seed != "ensemble"]
    n_fits = int((single.model == "DiffMIC").sum())
    lines = [
        "| model | seed | macro-F1 | balanced acc. | ROC AUC | log-loss | fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]

    def line(model, label, values, fit):
        cells = " | ".join(values)
        return f"| {model} | {label} | {cells} | {fit:.0f} |"

    for model in dict.fromkeys(single.model):
        mine = single[single.model == model]
        for _, r in mine.iterrows():
            values = [f"{r[m]:.3f}" for m in METRICS]
            lines.append(line(model, r.seed, values, r.fit_s))
        spread = [f"{mine[m].mean():.3f} ± {mine[m].std(ddof=1):.3f}" for m in METRICS]
        lines.append(line(model, "mean ± sd", spread, mine.fit_s.mean()))
        ens = results[(results.seed == "ensemble") & (results.model == model)].iloc[0]
        values = [f"**{ens[m]:.3f}**" for m in METRICS]
        lines.append(line(model, f"ensemble of {n_fits}", values, ens.fit_s))
    lines += [
        "",
        "DiffMIC minus its prior, per seed (points of macro-F1 / ROC AUC):",
        "",
        "| seed | macro-F1 | ROC AUC |",
        "|---|---|---|",
    ]
    # The prior comes from the same fit: rows pair up in seed order.
    pairs = zip(
        single[single.model == "DiffMIC"].itertuples(),
        single[single.model == "DCG prior"].itertuples(),
    )
    diffs = []
    for mic, prior in pairs:
        diffs.append(
            (100 * (mic.macro_f1 - prior.macro_f1), mic.roc_auc - prior.roc_auc)
        )
        lines.append(f"| {mic.seed} | {diffs[-1][0]:+.1f} | {diffs[-1][1]:+.4f} |")
    f1, auc = np.array(diffs).T
    sd = (f"{f1.std(ddof=1):.1f}", f"{auc.std(ddof=1):.4f}") if n_fits > 1 else ("", "")
    lines.append(
        f"| mean ± sd | {f1.mean():+.1f} ± {sd[0]} | {auc.mean():+.4f} ± {sd[1]} |"
    )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = data_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_run_arguments(parser, "seeds_results")
    args = parse_checked(parser, argv)
    print(summary(timed_run(run, args)))


if __name__ == "__main__":
    main()
