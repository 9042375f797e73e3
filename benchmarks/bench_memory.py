"""Peak memory of fitting from image files: does it stay flat as the set grows?

Writes N random 64 px PNG files (once, cached in --cache-dir), then in a fresh
process per size runs one epoch of ``fit`` (no guidance pre-training) on the
list of paths with a tiny backbone (``presets.SCRATCH`` on ``test_resnet``)
and reports the peak resident set size (``ru_maxrss``) of that process.
Files are decoded batch by batch, so the peak should not grow with the
number of files.

    python -m benchmarks.bench_memory                # 1,000 vs 8,000 files
    python -m benchmarks.bench_memory --sizes 500 2000
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import parser

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from skdiffmic import DiffMICClassifier, presets

folder, n = Path(sys.argv[1]), int(sys.argv[2])
paths = sorted(folder.glob("*.png"))[:n]
y = np.arange(n) % 2
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
config = {**presets.SCRATCH, "backbone": "test_resnet", "hidden_dim": 64}
DiffMICClassifier(
    **config, n_timesteps=100, guidance_epochs=0, max_epochs=1, batch_size=32,
    random_state=0,
).fit(paths, y)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "before_mb": before / 1024, "peak_mb": peak / 1024,
                  "seconds": seconds}))
"""


def write_images(folder: Path, n: int, size: int) -> None:
    from PIL import Image

    have = len(list(folder.glob("*.png")))
    rng = np.random.default_rng(0)
    for i in range(have, n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")


def main(argv=None) -> None:
    parse = parser(__doc__)
    parse.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000])
    parse.add_argument("--image-size", type=int, default=64)
    parse.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "skdiffmic_bench_memory",
    )
    args = parse.parse_args(argv)
    folder = args.cache_dir / f"{args.image_size}px"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"writing up to {max(args.sizes)} PNG files to {folder} ...", flush=True)
    write_images(folder, max(args.sizes), args.image_size)

    rows = []
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(n)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {n} files done in {rows[-1]['seconds']:.1f} s", flush=True)

    print(
        f"\nOne epoch of fit from files ({args.image_size} px, test_resnet), "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU(s)"
    )
    print(
        f"{'files':>8} {'RSS after import (MB)':>22} {'peak RSS (MB)':>14} "
        f"{'fit (s)':>8} {'peak / first':>13}"
    )
    for row in rows:
        ratio = row["peak_mb"] / rows[0]["peak_mb"]
        print(
            f"{row['n']:>8} {row['before_mb']:>22.0f} {row['peak_mb']:>14.0f} "
            f"{row['seconds']:>8.1f} {ratio:>13.3f}"
        )


if __name__ == "__main__":
    main()
