"""One fit in one process against the same fit on two processes (gloo, on
the CPU): history, scores, time, and the all-reduce volume behind a
projection to 8 GPUs.

Br35H at the main job's size (a stratified 600 images at 64 px, one
stratified 2/3 : 1/3 split), DiffMIC at ``presets.FINE_TUNE`` for the main
job's 2 + 6 epochs, fitted twice with the same ``random_state``: with
``device="cpu"`` (one process, every core) and with ``device=["cpu", "cpu"]``
(two worker processes, each half the cores, each reading half of every
batch, gradients averaged). The CNN (``TimmClassifier``, the same backbone
and budget) likewise.

The table of the all-reduce: the gradient bytes each step averages (one
flat ``all_reduce`` of every trainable parameter, float32), the bytes a
ring all-reduce sends per GPU on 8 GPUs (``2 (k - 1) / k`` of it), and the
time that takes at a given bus bandwidth: a step's compute must be long
against it for 8 GPUs to scale.

    python -m benchmarks.bench_distributed
    python -m benchmarks.bench_distributed --quick   # a smoke run (tests)
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

from ._common import (
    load_br35h_subset,
    main_job_models,
    main_job_settings,
    markdown,
    parser,
)

BANDWIDTHS = {  # bus bandwidth, bytes/s: what an all-reduce sees
    "NVLink (8-GPU node, ~300 GB/s)": 300e9,
    "PCIe 4 x16 (~20 GB/s)": 20e9,
    "100 Gb/s InfiniBand (~10 GB/s)": 10e9,
    "10 Gb/s Ethernet (~1 GB/s)": 1e9,
}


def trainable_bytes(model) -> int:
    """float32 bytes of the gradients one training iteration all-reduces:
    every parameter of the fitted networks (a diffusion-stage iteration
    trains the DCG model and the denoiser, one all-reduce each; the fitted
    EMA denoiser is frozen, but its parameters were trained)."""
    modules = [getattr(model, n) for n in model._torch_modules]
    return 4 * sum(p.numel() for m in modules for p in m.parameters())


def models(quick: bool, random_state: int = 0):
    """The main job's DiffMIC and CNN (tiny ones with ``quick``), and their
    settings."""
    s = main_job_settings("quick" if quick else "default")
    if quick:
        s.update(backbone="test_resnet", pretrained=False, guidance_epochs=1)
        s.update(max_epochs=1, image_size=16, hidden_dim=32)
    diffmic, cnn = main_job_models(s, random_state=random_state)
    return {"DiffMIC": diffmic, "CNN": cnn}, s


def scores(model, X, y) -> dict:
    proba = model.predict_proba(X)
    pred = model.classes_[proba.argmax(1)]
    return {
        "accuracy": accuracy_score(y, pred),
        "macro-F1": f1_score(y, pred, average="macro"),
        "ROC AUC": roc_auc_score(y, proba[:, 1]),
    }


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--n-images", type=int, default=600)
    parse.add_argument("--quick", action="store_true", help="a smoke run (tests)")
    args = parse.parse_args(argv)
    n = 48 if args.quick else args.n_images
    _, s = models(args.quick)
    X, y = load_br35h_subset(n, s["image_size"])
    X, X_test, y, y_test = train_test_split(
        X, y, test_size=1 / 3, stratify=y, random_state=0
    )
    rows, histories, probas, volume = [], {}, {}, {}
    for processes in (1, 2):
        for name, model in models(args.quick)[0].items():
            if processes == 2:
                model.set_params(device=["cpu", "cpu"])
            start = time.perf_counter()
            model.fit(X, y)
            seconds = time.perf_counter() - start
            probas[name, processes] = model.predict_proba(X_test)
            histories[name, processes] = pd.DataFrame(model.history_)
            volume[name] = trainable_bytes(model)
            rows.append(
                {
                    "model": name,
                    "processes": processes,
                    **scores(model, X_test, y_test),
                    "fit (s)": seconds,
                    "images/s": len(y) * len(model.history_) / seconds,
                }
            )
    print(
        f"\nBr35H, {len(y)} training and {len(y_test)} test images at "
        f"{s['image_size']} px, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPU(s)\n"
    )
    print(markdown(pd.DataFrame(rows)))
    for name in ("DiffMIC", "CNN"):
        gap = np.abs(probas[name, 1] - probas[name, 2]).max()
        print(f"\n{name}: largest |p(1 process) - p(2 processes)| = {gap:.4f}")
        one, two = histories[name, 1], histories[name, 2]
        loss = [c for c in one.columns if c.endswith("loss") and c in two.columns]
        table = pd.DataFrame({"epoch": one["epoch"]})
        for column in loss + [c for c in ("val_macro_f1",) if c in one.columns]:
            table[f"{column}, 1"] = one[column].astype(float)
            table[f"{column}, 2"] = two[column].astype(float)
        print(markdown(table.dropna(axis=1, how="all"), digits=4))
    k = 8
    lines = []
    for name, bytes_ in volume.items():
        sent = 2 * (k - 1) / k * bytes_
        for link, rate in BANDWIDTHS.items():
            lines.append(
                {
                    "model": name,
                    "gradient MB/iteration": bytes_ / 1e6,
                    "sent per GPU, 8 GPUs (MB)": sent / 1e6,
                    "link": link,
                    "all-reduce (ms/iteration)": 1e3 * sent / rate,
                }
            )
    print(f"\nAll-reduce per training iteration on {k} GPUs (ring):\n")
    print(markdown(pd.DataFrame(lines), digits=2))


if __name__ == "__main__":
    main()
