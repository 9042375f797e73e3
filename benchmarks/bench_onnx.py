"""ONNX Runtime against PyTorch: prediction latency and model file sizes.

Fits DiffMIC at the main job's settings (``examples/benchmark.py``:
``presets.FINE_TUNE``, ``tf_efficientnet_lite0`` from ImageNet at 64 px,
2 + 6 epochs) on the first fold of its Br35H split, saves it
(``.safetensors``), exports it (:func:`skdiffmic.export.to_onnx`) and times,
on the fold's test images, in one run on one machine:

* ``predict_proba`` of the estimator (PyTorch);
* ``predict_proba`` of :class:`skdiffmic.export.OnnxClassifier` (the same
  input handling and noise, the networks in ONNX Runtime);
* the ONNX graph alone (``InferenceSession.run`` on prepared inputs).

Each is timed ``--repeats`` times after a warm-up; the table gives the best
and the median, per image, and the largest difference of the probabilities
from the estimator's, with the estimator's noise and with zero noise (what a
caller without its seed rule can feed). ::

    python -m benchmarks.bench_onnx
    python -m benchmarks.bench_onnx --set n_samples=16 eta=1.0
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from skdiffmic.export import OnnxClassifier, to_onnx

from ._common import (
    add_set_argument,
    br35h_folds,
    main_job_models,
    main_job_settings,
    parse_settings,
    parser,
)


def timings(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--repeats", type=int, default=5)
    parse.add_argument("--epochs", type=int, nargs=2, default=None)
    add_set_argument(parse)
    parse.add_argument("--quick", action="store_true", help="a smoke run")
    args = parse.parse_args(argv)
    s = main_job_settings("quick" if args.quick else "default")
    if args.epochs:
        s["guidance_epochs"], s["max_epochs"] = args.epochs
    X_train, y_train, X_test, _ = br35h_folds(
        s["n_images"], s["image_size"], s["folds"]
    )[0]
    clf, _ = main_job_models(s, random_state=1)
    clf.set_params(**parse_settings(args.set))
    print(f"fitting on {len(X_train)} images ...", flush=True)
    clf.fit(X_train, y_train)
    folder = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    saved = folder / "model.safetensors"
    clf.save(saved)
    exported = to_onnx(clf, folder / "model.onnx")
    onnx_clf = OnnxClassifier(exported)

    # The graph's own inputs, prepared once.
    meta = onnx_clf.metadata_
    feeds = onnx_clf.graph_inputs(X_test)

    def graph_only():
        for start in range(0, len(X_test), onnx_clf.batch_size):
            part = slice(start, start + onnx_clf.batch_size)
            onnx_clf.session_.run(None, {k: v[part] for k, v in feeds.items()})

    expected = clf.predict_proba(X_test)
    difference = np.abs(onnx_clf.predict_proba(X_test) - expected).max()
    # Zero noise, what a caller without the seed rule can feed.
    zero = onnx_clf.session_.run(
        ["proba"], {"images": feeds["images"], "noise": np.zeros_like(feeds["noise"])}
    )[0]
    zero_difference = np.abs(zero - expected).max()
    zero_changed = int((zero.argmax(1) != expected.argmax(1)).sum())
    rows = [
        ("estimator `predict_proba` (PyTorch)", lambda: clf.predict_proba(X_test)),
        ("`OnnxClassifier.predict_proba`", lambda: onnx_clf.predict_proba(X_test)),
        ("the ONNX graph alone", graph_only),
    ]
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {__import__('onnxruntime').__version__}; {len(X_test)} "
        f"images at {s['image_size']} px, {meta['n_samples']} chain(s) of "
        f"{meta['sampler']['n_inference_steps']} DDIM steps\n"
    )
    print("| prediction | best (ms/image) | median (ms/image) |")
    print("|---|---|---|")
    for label, fn in rows:
        times = timings(fn, args.repeats)
        per_image = [1000 * t / len(X_test) for t in times]
        print(
            f"| {label} | {min(per_image):.2f} | {statistics.median(per_image):.2f} |"
        )
    print(
        f"\nModel files: {saved.stat().st_size / 2**20:.1f} MiB (.safetensors), "
        f"{exported.stat().st_size / 2**20:.1f} MiB (.onnx). Largest difference "
        f"of the ONNX probabilities from the estimator's: {difference:.1e}. "
        f"With zero noise instead: {zero_difference:.1e}, {zero_changed} of "
        f"{len(X_test)} predictions changed."
    )


if __name__ == "__main__":
    main()
