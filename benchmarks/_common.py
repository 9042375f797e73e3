"""What the benchmarks share: the main job's models and data, scores, tables,
options and timed runs.

The main job is ``examples/benchmark.py`` (the README's): DiffMIC at
``presets.FINE_TUNE`` with the budget of :data:`MAIN_JOB`, beside the CNN
baseline with the same backbone, weights, image size, batch size and epochs.
The example is a standalone script, loaded here from its file. The robustness
benchmark's splits and image pipeline (:func:`splits`, :func:`prepare`) are
here too, because the seed and centring studies score the same images.

The last section holds what the benchmarks need from the package's private
modules, for want of a public equivalent, imported only when used.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.model_selection import StratifiedKFold, train_test_split

from skdiffmic import presets
from skdiffmic.datasets import load_br35h, load_medmnist, read_images


def _main_job():
    """``examples/benchmark.py`` as a module: a standalone script, loaded from
    its file so that its budget and models are used as they are."""
    path = Path(__file__).resolve().parent.parent / "examples" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("skdiffmic_main_job", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MAIN = _main_job()
# The main job's budget per mode (examples/benchmark.py's SETTINGS).
MAIN_JOB = _MAIN.SETTINGS
CORRUPTION_SIZE = 224  # MedMNIST-C's resolution
METRICS = ("macro_f1", "balanced_accuracy", "roc_auc", "log_loss")


def main_job_settings(mode: str = "default", **budget) -> dict:
    """``presets.FINE_TUNE`` with the main job's budget of ``mode``, and
    ``budget`` (``guidance_epochs``, ``image_size``, ...) on top."""
    return {**presets.FINE_TUNE, **MAIN_JOB[mode], **budget}


def main_job_models(s: dict, **common):
    """DiffMIC and the CNN at the settings ``s`` (:func:`main_job_settings`),
    as the main job builds them (its ``make_models``)."""
    return _MAIN.make_models(s, **common)


# -- Data ------------------------------------------------------------------


def stratified_subset(y, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a stratified ``n`` of ``y`` (all of them when ``n``
    is None or not smaller), the same for every run with this seed."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=n, stratify=y, random_state=seed
    )
    return np.sort(keep)


def load_br35h_subset(n_images, image_size: int, seed: int = 0, paths=False):
    """The main job's Br35H images: a stratified ``n_images``, decoded at
    ``image_size`` px (or their file paths, with ``paths``), and labels."""
    files, y = load_br35h(return_X_y=True)
    keep = stratified_subset(y, n_images, seed)
    files, y = files[keep], y[keep]
    return (files if paths else read_images(files, size=image_size)), y


def br35h_folds(n_images, image_size: int, folds: int = 3, seed: int = 0, **kw):
    """``[(X_train, y_train, X_test, y_test)]``: the main job's Br35H folds
    (stratified, shuffled with ``seed``); ``kw`` goes to
    :func:`load_br35h_subset`."""
    X, y = load_br35h_subset(n_images, image_size, seed, **kw)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(X[a], y[a], X[b], y[b]) for a, b in cv.split(X, y)]


def splits(dataset, path, split, n_train, n_images, folds, seed):
    """The robustness benchmark's ``[(X_train, y_train, X_test, y_test)]``.

    DermaMNIST (``path``, a MedMNIST npz): with ``split="trainval"`` a
    stratified ``n_train`` of the official train split against the whole
    official val split; with ``"cv"`` the ``folds`` folds of a stratified
    ``n_images`` (2,100) of train + val. Br35H: the main job's folds of
    ``n_images`` (600), decoded at 224 px and made grey (``"trainval"``:
    the first fold).
    """
    if dataset == "br35h":
        out = br35h_folds(n_images or 600, CORRUPTION_SIZE, folds, seed)
        out = [(_grey(a), b, _grey(c), d) for a, b, c, d in out]
        return out[:1] if split == "trainval" else out
    X_tr, y_tr = load_medmnist(path, split="train", return_X_y=True)
    X_va, y_va = load_medmnist(path, split="val", return_X_y=True)
    if split == "trainval":
        keep = stratified_subset(y_tr, n_train, seed)
        return [(X_tr[keep], y_tr[keep], X_va, y_va)]
    X, y = np.concatenate([X_tr, X_va]), np.concatenate([y_tr, y_va])
    keep = stratified_subset(y, n_images or 2100, seed)
    X, y = X[keep], y[keep]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(X[a], y[a], X[b], y[b]) for a, b in cv.split(X, y)]


def _grey(X):
    """Grey scans stored in mixed colour modes: one grey level, as RGB."""
    return np.repeat(X.mean(-1, keepdims=True).round().astype(np.uint8), 3, -1)


def resize(images: np.ndarray, size: int, antialias: bool) -> np.ndarray:
    method = Image.Resampling.LANCZOS if antialias else Image.Resampling.BILINEAR
    return np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), method)) for im in images]
    )


def prepare(images: np.ndarray, image_size: int, corruption=None, severity=1, seed=0):
    """The robustness benchmark's images: resized to 224 px, corrupted at
    ``severity`` (1-5) when a corruption is given, resized to ``image_size``."""
    big = resize(images, CORRUPTION_SIZE, antialias=False)
    if corruption is not None:
        np.random.seed(seed)  # medmnistc draws from NumPy's global generator
        torch.manual_seed(seed)  # and torchio from torch's
        corruption.rng = np.random.default_rng(seed)  # impulse noise's own
        big = np.stack(
            [
                np.asarray(corruption.apply(Image.fromarray(im), severity - 1))
                for im in big
            ]
        ).astype(np.uint8)
    return resize(big, image_size, antialias=True)


# -- Models and scores -------------------------------------------------------


def fit_models(X, y, mode, seed, diffmic_set, cnn_set, verbose):
    """The main job's DiffMIC and CNN (``mode``: ``"default"`` or
    ``"quick"``), with ``--set`` / ``--cnn-set`` on top, fitted and timed:
    ``(diffmic, cnn, {name: fit seconds})``."""
    diffmic, cnn = main_job_models(
        main_job_settings(mode), random_state=seed, verbose=verbose
    )
    diffmic.set_params(**diffmic_set)
    cnn.set_params(**cnn_set)
    fit_s = {}
    for name, model in (("DiffMIC", diffmic), ("CNN (CE)", cnn)):
        _, fit_s[name] = timed(model.fit, X, y)
        print(f"  {name} fitted in {fit_s[name]:.0f} s", flush=True)
    return diffmic, cnn, fit_s


def predictions(diffmic, cnn, X) -> dict:
    """Each model's probabilities on ``X``: DiffMIC, its prior, the CNN, and
    the same DiffMIC fit uncentred when it centres its correction."""
    out = {
        "DiffMIC": diffmic.predict_proba(X),
        "DCG prior": diffmic.predict_prior_proba(X),
        "CNN (CE)": cnn.predict_proba(X),
    }
    if diffmic.center_correction:  # a prediction setting: no refit
        diffmic.set_params(center_correction=False)
        out["DiffMIC uncentred"] = diffmic.predict_proba(X)
        diffmic.set_params(center_correction=True)
    return out


# The main job's metrics, and the recall of every class (``recall[k]``).
scores = _MAIN.scores


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table, floats to ``digits`` decimals."""

    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


# -- Options and runs ---------------------------------------------------------


def parse_settings(pairs) -> dict:
    """Estimator parameters from ``PARAM=VALUE`` strings (``--set``): a
    Python literal where the value is one (``1e-3``, ``True``, ``(2, 6)``),
    else the string itself (``cosine``). A pair without ``=`` is refused."""
    out = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not (key and sep):
            raise ValueError(f"--set takes PARAM=VALUE pairs, got {pair!r}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (a module docstring)."""
    return argparse.ArgumentParser(
        description=doc.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_set_argument(parser, flag="--set", model="DiffMIC") -> None:
    parser.add_argument(
        flag,
        nargs="+",
        default=[],
        metavar="PARAM=VALUE",
        help=f"{model} parameters set on top of its configuration",
    )


def data_parser(doc: str, cnn: bool = True) -> argparse.ArgumentParser:
    """:func:`parser`, with the robustness benchmark's data options (the set,
    its file and training size) and ``--set`` (``--cnn-set`` with ``cnn``)."""
    out = parser(doc)
    out.add_argument("--dataset", choices=["dermamnist", "br35h"], default="dermamnist")
    out.add_argument("--data", help="a DermaMNIST MedMNIST .npz (dermamnist)")
    out.add_argument("--n-train", type=int, default=1400)
    add_set_argument(out)
    if cnn:
        add_set_argument(out, "--cnn-set", "CNN")
    return out


def add_run_arguments(parser, out: str) -> None:
    """``--quick``, ``--verbose`` and ``--out`` (default ``out``)."""
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(out))


def parse_checked(parser, argv):
    """The parsed arguments, a DermaMNIST run without its file refused."""
    args = parser.parse_args(argv)
    if args.dataset == "dermamnist" and args.data is None:
        parser.error("--dataset dermamnist needs --data FILE.npz")
    return args


def timed(fn, *args):
    """``(fn(*args), seconds)``."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def timed_run(run, args):
    """``run(args)`` with ``--out`` made, then the machine's CPU count and the
    time it took."""
    args.out.mkdir(parents=True, exist_ok=True)
    out, seconds = timed(run, args)
    print(f"\n{os.cpu_count()} CPU(s), {seconds:.0f} s in all\n")
    return out


# -- Private names, for want of a public equivalent ----------------------------


def record_stages():
    """The package's stage recorder (``skdiffmic._profiling``), for
    ``bench_cost``: a context manager whose value has ``seconds``."""
    from skdiffmic._profiling import record_stages

    return record_stages()


def stage(name: str):
    """A named stage of :func:`record_stages` (``skdiffmic._profiling.timed``)."""
    from skdiffmic._profiling import timed

    return timed(name)


def pointing_game(explanation, boxes) -> dict:
    """The package's pointing game (``skdiffmic._explain``), for
    ``bench_pointing``: per image, whether each measure hits the box."""
    from skdiffmic._explain import pointing_game

    return pointing_game(explanation, boxes)


def pointing_chance(boxes, image_size: int, window_size: int) -> dict:
    """The chance levels of :func:`pointing_game` (``skdiffmic._explain``)."""
    from skdiffmic._explain import pointing_chance

    return pointing_chance(boxes, image_size, window_size)


def reference_scheme(clf, X, n_steps: int):
    """The reference code's prediction, for ``bench_inference``: the priors,
    then the whole denoiser (encoder and head) at every reverse step, from
    the fitted networks of ``clf`` (its private input pipeline, networks and
    ``skdiffmic._diffusion.reverse_chain``)."""
    from skdiffmic._diffusion import reverse_chain

    images, device = clf._prepare(X)
    out = []
    with torch.inference_mode():
        for _, x, _ in clf._batches(images, device):
            prior = clf.guidance_model_(x).fused.softmax(-1)
            noise = torch.randn(len(x), 1, prior.shape[1])
            out.append(
                reverse_chain(
                    clf.schedule_,
                    lambda y, t, x=x, p=prior: clf.denoiser_(x, y, p, t),
                    prior,
                    noise,
                    sampler="ddim",
                    n_steps=n_steps,
                    prediction_type=clf.prediction_type,
                )
            )
    return torch.cat(out)
