"""Fitting on every HAM10000 training file: time and peak memory, DiffMIC
against the fine-tuned CNN.

Each model is fitted in a fresh process on the list of file paths of
DiffMIC's train split (7,011 dermoscopy JPEGs, 200 x 150), decoded batch by
batch, with the progress bar on (``verbose=1``, on stderr): DiffMIC at
``presets.FINE_TUNE`` for DCG + diffusion epochs, the CNN (``TimmClassifier``,
same backbone, weights, image size, augmentation) for their sum. It reports
wall time, images per second and the process's peak resident set size
(``ru_maxrss``) against its size after import. ``--predict`` also times
``predict_proba`` on the same files; ``--project G D`` projects the time of
a longer schedule (the paper's is ``15 1000``: 15 DCG and 1,000 diffusion
epochs) on all 7,011 files from the measured training throughput.

    python -m benchmarks.bench_ham10000_fit --root ../shared/data/ham10000 \\
        --split-file ../shared/data/diffmic_splits/isic2018.csv
    python -m benchmarks.bench_ham10000_fit ... --image-size 64 --epochs 2 6
    python -m benchmarks.bench_ham10000_fit ... --image-size 224 --epochs 1 1 \\
        --n-images 512 --predict --project 15 1000
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ._common import parser

N_TRAIN = 7011  # files in DiffMIC's HAM10000 train split

CHILD = r"""
import json, resource, sys, time
from skdiffmic import DiffMICClassifier, presets
from skdiffmic.baselines import TimmClassifier
from skdiffmic.datasets import load_ham10000

model, root, split_file, size, g, d, n, quick, predict = sys.argv[1:10]
size, g, d, n = int(size), int(g), int(d), int(n)
# --quick: timm's tiny test network from scratch, for the test suite.
net = dict(backbone="test_resnet", pretrained=False) if quick == "1" else {}
data = load_ham10000(root, split="train", split_file=split_file or None,
                     verify=False)
paths, y = data.data[:n or None], data.target[:n or None]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
common = dict(image_size=size, batch_size=32, random_state=0, verbose=1)
if model == "DiffMIC":
    clf = DiffMICClassifier(**{**presets.FINE_TUNE, **net}, guidance_epochs=g,
                            max_epochs=d, **common)
else:
    net = {"backbone": presets.FINE_TUNE["backbone"], **net}
    clf = TimmClassifier(**net, max_epochs=g + d, **common)
start = time.perf_counter()
clf.fit(paths, y)
seconds = time.perf_counter() - start
predict_s = None
if predict == "1":
    start = time.perf_counter()
    clf.predict_proba(paths)
    predict_s = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"model": model, "n": len(y), "before_mb": before / 1024,
                  "peak_mb": peak / 1024, "seconds": seconds,
                  "predict_s": predict_s}))
"""


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--root", required=True, help="the HAM10000 folder")
    parse.add_argument("--split-file", default="", help="DiffMIC's isic2018.csv")
    parse.add_argument("--image-size", type=int, default=64)
    parse.add_argument("--epochs", type=int, nargs=2, default=[2, 6])
    parse.add_argument("--n-images", type=int, default=0, help="0: all")
    parse.add_argument(
        "--quick", action="store_true", help="a tiny untrained backbone (tests)"
    )
    parse.add_argument(
        "--predict", action="store_true", help="time predict_proba on the files"
    )
    parse.add_argument(
        "--project",
        type=int,
        nargs=2,
        metavar=("GUIDANCE", "DIFFUSION"),
        help="project the fit time of this schedule on all 7,011 train files",
    )
    args = parse.parse_args(argv)
    g, d = args.epochs
    rows = []
    for model in ("DiffMIC", "CNN"):
        print(f"fitting {model} ...", flush=True)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, model, args.root, args.split_file]
            + [str(v) for v in (args.image_size, g, d, args.n_images)]
            + [str(int(args.quick)), str(int(args.predict))],
            check=True,
            stdout=subprocess.PIPE,  # the progress bar goes to the terminal
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    n = rows[0]["n"]
    print(
        f"\nFit on {n} HAM10000 files at {args.image_size} px, DiffMIC "
        f"{g} + {d} epochs, CNN {g + d}, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPU(s)\n"
    )
    head = ["model", "fit (s)", "images/s", "RSS after import (MB)", "peak RSS (MB)"]
    if args.predict:
        head.append("predict (images/s)")
    if args.project:
        g_p, d_p = args.project
        head.append(f"{g_p} + {d_p} epochs, {N_TRAIN:,} files (h)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        rate = row["n"] * (g + d) / row["seconds"]
        cells = [
            row["model"],
            f"{row['seconds']:.0f}",
            f"{rate:.1f}",
            f"{row['before_mb']:.0f}",
            f"{row['peak_mb']:.0f}",
        ]
        if args.predict:
            cells.append(f"{row['n'] / row['predict_s']:.1f}")
        if args.project:
            cells.append(f"{N_TRAIN * sum(args.project) / rate / 3600:.1f}")
        print("| " + " | ".join(cells) + " |")
    print(f"\nDiffMIC / CNN fit time: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
