"""The ``skdiffmic`` command: fit, evaluate, predict, export and describe models.

::

    skdiffmic fit DATA --out model.safetensors [--preset fine_tune|paper|scratch]
        [--set PARAM=VALUE ...] [--validation-fraction F] [--random-state N]
        [--label-columns A,B,...] [--quiet]
    skdiffmic evaluate MODEL DATA [--out-dir DIR] [--label-columns A,B,...]
    skdiffmic predict MODEL INPUT... --out predictions.csv [--uncertainty] [--strict]
    skdiffmic export MODEL out.onnx
    skdiffmic info MODEL [--card [FILE]]

``DATA`` is labelled images: a folder with one sub-folder per class, or a
CSV file with a ``path`` column (relative paths are read from the CSV's
folder; DICOM files too) and label columns, one of class labels or several
of 0/1 findings (multi-label, a blank cell unknown);
``--label-columns`` chooses them, else every column but ``path`` and the
patient, study, group and split columns is one. ``fit`` trains
``DiffMICClassifier(**preset, **sets)``, exactly as the Python API with
those parameters does (``--validation-fraction`` is the estimator's own
hold-out), and saves it with its model card; Ctrl-C during the diffusion
epochs keeps the best completed epoch, saves it, says so and exits with
status 130. ``evaluate`` prints the scores of a model on ``DATA`` and
writes them, the confusion matrix, the predictions and a reliability
diagram into ``--out-dir`` (default: ``<model>-evaluation-<data>`` beside
the model file). ``info --card`` writes the model card as Markdown.

``MODEL`` is a model saved with :meth:`DiffMICClassifier.save
<skdiffmic.DiffMICClassifier.save>` (``.safetensors``) or a file written by
:func:`skdiffmic.export.to_onnx` (``.onnx``, run with ONNX Runtime).
``INPUT`` is image files, folders (searched recursively for the image and
DICOM types of :func:`~skdiffmic.datasets.load_image_folder`) or CSV files
of paths (the ``path`` column, else the first; relative paths are read from
the CSV's folder). Also ``python -m skdiffmic``.

Every error ends the command with status 1 and one line on stderr: a missing
or corrupt model, an input file or folder that is not there, an output that
cannot be written. ``fit`` and ``evaluate`` check their data before any
work and stop at the first problem, naming the file: an image that cannot
be decoded, a file a CSV names that does not exist, a folder of one class
or none, a row without a label. ``predict`` lists images that cannot be
decoded, and files named in a CSV that do not exist, on stderr and leaves
them out of the output, and the others are predicted; with ``--strict`` the
first one stops the command. With no image left to predict the status is 1.
A wrong command line exits with status 2 and argparse's usage message.
Folders are searched by file extension: list DICOM files without one
explicitly or in a CSV. An image named twice is predicted once.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import __version__
from ._sampling import decide
from ._targets import label_sets
from .datasets._loaders import IMAGE_EXTENSIONS
from .presets import PRESETS

__all__ = ["main"]

CHUNK = 256  # images per progress step


class CommandError(Exception):
    """An error the command reports in one line."""


def _load_model(path: str):
    """A fitted DiffMICClassifier (``.safetensors``) or an OnnxClassifier."""
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}")
    try:
        if path.lower().endswith(".onnx"):
            from .export import OnnxClassifier

            return OnnxClassifier(path)
        from . import DiffMICClassifier

        return DiffMICClassifier.load(path)
    except (ValueError, OSError, ImportError) as exc:
        raise CommandError(str(exc).splitlines()[0]) from None


def _csv_paths(path: Path) -> list[str]:
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the CSV {os.fspath(path)!r}: {exc}") from None
    if table.empty:
        return []
    column = "path" if "path" in table.columns else table.columns[0]
    return [
        value if os.path.isabs(value) else os.fspath(path.parent / value)
        for value in table[column].dropna().astype(str)
    ]


def collect_inputs(inputs) -> list[str]:
    """The image paths named by files, folders and CSV files, in order."""
    paths = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(item).parts)
            )
            paths += [os.fspath(p) for p in found]
        elif item.suffix.lower() == ".csv" and item.is_file():
            paths += _csv_paths(item)
        elif item.is_file():
            paths.append(os.fspath(item))
        else:
            raise CommandError(f"no such file or folder: {os.fspath(item)!r}")
    if not paths:
        raise CommandError("no image found in the inputs")
    return list(dict.fromkeys(paths))  # each image once, in first-seen order


def _problem(path) -> str | None:
    """Why ``path`` cannot be decoded (its first line), or None."""
    from ._imageio import verify_image

    try:
        verify_image(path)
    except (OSError, ValueError) as exc:
        return str(exc).splitlines()[0]
    return None


def _readable(paths, strict: bool):
    """``(good paths, [(bad path, reason)])``; with ``strict`` the first bad
    one raises. Files are decoded in threads, results kept in order."""
    good, bad = [], []
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:
        for path, reason in zip(paths, pool.map(_problem, paths)):
            if reason is None:
                good.append(path)
            elif strict:
                raise CommandError(f"unreadable image {path!r}: {reason}")
            else:
                bad.append((path, reason))
    return good, bad


def predict(args) -> int:
    if args.uncertainty and args.model.lower().endswith(".onnx"):
        raise CommandError(
            "--uncertainty needs the saved .safetensors model (the ONNX graph "
            "has no typicality test)"
        )
    model = _load_model(args.model)
    paths, bad = _readable(collect_inputs(args.inputs), args.strict)
    for path, reason in bad:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not paths:
        raise CommandError(f"none of the {len(bad)} image(s) could be read")
    multilabel = getattr(model, "multilabel_", False)
    # The probability columns: one per class, or per label (by its name).
    labels = model.label_names_ if multilabel else model.classes_
    frames = []
    bar = tqdm(
        total=len(paths),
        unit="image",
        disable=True if args.quiet else None,  # None: only on a terminal
        desc="skdiffmic predict",
    )
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        proba = model.predict_proba(chunk)
        frame = pd.DataFrame({"path": chunk})
        decided = decide(proba, labels, multilabel)  # as predict gives them
        frame["prediction"] = (
            label_sets(labels, decided.astype(bool)) if multilabel else decided
        )
        for k, label in enumerate(labels):
            frame[f"proba[{label}]"] = proba[:, k]
        if args.uncertainty:
            # predict_uncertainty runs chains of its own: near a tie its
            # prediction can differ from predict_proba's, so it keeps its name.
            extra = model.predict_uncertainty(chunk).reset_index(drop=True)
            extra = extra.rename(
                columns={
                    "prediction": "uncertainty_prediction",
                    "probability": "uncertainty_probability",
                }
            )
            frame = pd.concat([frame, extra], axis=1)
        frames.append(frame)
        bar.update(len(chunk))
    bar.close()
    table = pd.concat(frames, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    summary = f"wrote {len(table)} prediction(s) to {os.fspath(out)}"
    if bad:
        summary += f"; {len(bad)} unreadable image(s) skipped"
    print(summary, file=sys.stderr)
    return 0


def export(args) -> int:
    from .export import to_onnx

    if args.model.lower().endswith(".onnx"):
        raise CommandError(f"{args.model!r} is already an ONNX model")
    model = _load_model(args.model)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    try:
        path = to_onnx(model, args.out)
    except (ValueError, ImportError) as exc:
        raise CommandError(str(exc).splitlines()[0]) from None
    print(f"wrote {os.fspath(path)}", file=sys.stderr)
    return 0


# -------------------------------------------------------------------- fit --
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C


def _label_columns(text):
    if text is None:
        return None
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise CommandError("--label-columns names no column")
    return columns


def _settings(pairs) -> dict:
    """The ``--set PARAM=VALUE`` pairs; VALUE is JSON, else a string."""
    from . import DiffMICClassifier

    known = DiffMICClassifier().get_params()
    settings = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CommandError(f"--set takes PARAM=VALUE; got {pair!r}")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CommandError(f"--set {pair}: unknown parameter {name!r}{hint}")
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            settings[name] = text
    return settings


def _fit_params(args) -> dict:
    """The estimator's parameters: the preset, the ``--set`` values, then the
    options (each parameter set once)."""
    from . import presets

    settings = _settings(args.set)
    params = {**presets.get(args.preset), **settings}
    options = {
        "validation_fraction": args.validation_fraction,
        "random_state": args.random_state,
    }
    for name, value in options.items():
        if value is None:
            continue
        if name in settings:
            option = "--" + name.replace("_", "-")
            raise CommandError(f"{name} is set twice: by --set and by {option}")
        params[name] = value
    params.setdefault("verbose", 0 if args.quiet else 1)
    return params


def _check_images(paths, what: str) -> None:
    """Every image decodes; else one error naming the first that does not."""
    _, bad = _readable(paths, strict=False)
    if bad:
        path, reason = bad[0]
        raise CommandError(
            f"{len(bad)} of the {len(paths)} images of {what} cannot be read, "
            f"the first {path!r}: {reason}"
        )


def _writable(path) -> Path:
    out = Path(path)
    if out.is_dir():
        raise CommandError(f"--out {os.fspath(out)!r} is a folder, not a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise CommandError(f"cannot write into the folder {os.fspath(out.parent)!r}")
    return out


def _fit_watching_interrupts(model, paths, y) -> bool:
    """Fit; whether Ctrl-C cut it short (the fit then keeps its best completed
    epoch and warns so, and the warning is what tells)."""
    seen = []
    show = warnings.showwarning

    def watch(message, category, *rest, **kwargs):
        if str(message).startswith("Training interrupted"):
            seen.append(message)
        return show(message, category, *rest, **kwargs)

    with warnings.catch_warnings():
        warnings.filterwarnings("always", "Training interrupted", UserWarning)
        warnings.showwarning = watch
        model.fit(paths, y)
    return bool(seen)


def _describe_data(data) -> str:
    if data.multilabel:
        return f"{len(data.paths)} images, {data.y.shape[1]} labels"
    classes = len(set(data.y.tolist()))
    return f"{len(data.paths)} images of {classes} classes"


def fit(args) -> int:
    from . import DiffMICClassifier
    from ._labelled import read_labelled
    from ._persist import save_estimator

    model = DiffMICClassifier(**_fit_params(args))
    model._validate_params()  # a bad value fails now, not after the checks
    out = _writable(args.out)
    data = read_labelled(args.data, _label_columns(args.label_columns))
    _check_images(data.paths, repr(args.data))
    if not args.quiet:
        print(
            f"fitting on {_describe_data(data)} (preset {args.preset})",
            file=sys.stderr,
        )
    try:
        interrupted = _fit_watching_interrupts(model, data.paths, data.y)
    except KeyboardInterrupt:
        print(
            "skdiffmic fit: interrupted before the first diffusion epoch ended; "
            "no model saved",
            file=sys.stderr,
        )
        return INTERRUPTED
    save_estimator(model, out, preset=args.preset)
    summary = (
        f"wrote {os.fspath(out)}: {model.n_iter_} diffusion epoch(s), the "
        f"weights of epoch {model.best_epoch_}"
    )
    if interrupted:
        print(f"training interrupted; {summary}", file=sys.stderr)
        return INTERRUPTED
    print(summary, file=sys.stderr)
    return 0


# --------------------------------------------------------------- evaluate --
def _truth(data, model, labels):
    """The data's labels in the model's terms: its classes, or its label
    columns in its order."""
    multilabel = getattr(model, "multilabel_", False)
    if data.multilabel != multilabel:
        if multilabel:
            raise CommandError(
                "the model is multi-label; evaluate it on a CSV of its label "
                f"columns {[str(n) for n in labels]}"
            )
        raise CommandError(
            "the model predicts one class per image, but the data has several "
            f"label columns {list(data.y.columns)}; choose one with --label-columns"
        )
    if multilabel:
        names = [str(n) for n in labels]
        if sorted(data.y.columns) != sorted(names):
            raise CommandError(
                f"the data's label columns {list(data.y.columns)} are not the "
                f"model's labels {names}"
            )
        return data.y[names].to_numpy()
    lookup = {str(c): c for c in labels}
    unknown = sorted({str(v) for v in data.y} - set(lookup))
    if unknown:
        raise CommandError(
            f"the data has labels the model does not know: {unknown[:5]} (its "
            f"classes: {list(lookup)})"
        )
    return np.array([lookup[str(v)] for v in data.y], dtype=np.asarray(labels).dtype)


def _probabilities(model, paths, quiet: bool) -> np.ndarray:
    bar = tqdm(
        total=len(paths),
        unit="image",
        disable=True if quiet else None,
        desc="skdiffmic evaluate",
    )
    chunks = []
    for start in range(0, len(paths), CHUNK):
        chunks.append(model.predict_proba(paths[start : start + CHUNK]))
        bar.update(len(chunks[-1]))
    bar.close()
    return np.concatenate(chunks)


def _prediction_table(paths, truth, proba, labels, multilabel) -> pd.DataFrame:
    table = pd.DataFrame({"path": paths})
    decided = decide(proba, labels, multilabel)
    if multilabel:
        known = ~np.isnan(truth)
        table["truth"] = [
            "|".join(str(n) for n, on, k in zip(labels, row, ok) if k and on == 1)
            for row, ok in zip(truth, known)
        ]
        table["prediction"] = label_sets(labels, decided.astype(bool))
    else:
        table["truth"] = truth
        table["prediction"] = decided
    for k, label in enumerate(labels):
        table[f"proba[{label}]"] = proba[:, k]
    return table


def evaluate(args) -> int:
    from ._evaluation import evaluate as score
    from ._evaluation import write_evaluation
    from ._labelled import read_labelled

    model = _load_model(args.model)
    multilabel = getattr(model, "multilabel_", False)
    labels = model.label_names_ if multilabel else model.classes_
    columns = _label_columns(args.label_columns)
    if multilabel and columns is None:
        columns = [str(n) for n in labels]
    data = read_labelled(args.data, columns)
    truth = _truth(data, model, labels)
    _check_images(data.paths, repr(args.data))
    proba = _probabilities(model, data.paths, args.quiet)
    result = score(truth, proba, labels, multilabel)
    model_path = Path(args.model)
    default = model_path.with_name(f"{model_path.stem}-evaluation-{data.name}")
    out_dir = Path(args.out_dir or default)
    table = _prediction_table(data.paths, truth, proba, labels, multilabel)
    written = write_evaluation(result, out_dir, table)
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        for name, value in result.metrics.itertuples(index=False):
            print(f"{name:<24} {value if isinstance(value, int) else f'{value:.4f}'}")
        print()
        print(result.per_class.to_string(index=False, float_format="{:.4f}".format))
        if result.confusion is not None:
            print()
            print(result.confusion.to_string())
    if "reliability.png" not in written:
        print("reliability.png not drawn: matplotlib is not installed", file=sys.stderr)
    print(f"wrote {', '.join(written)} to {os.fspath(out_dir)}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------- info --
def describe(path: str) -> dict:
    """What ``skdiffmic info`` prints, as a dict."""
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}")
    if path.lower().endswith(".onnx"):
        meta = _load_model(path).metadata_
        return {
            "file": "ONNX graph (skdiffmic.export)",
            "skdiffmic version": meta["skdiffmic_version"],
            "classes": meta["classes"],
            **(
                {"labels (multi-label)": meta["label_names"]}
                if meta.get("multilabel")
                else {}
            ),
            "backbone": meta["backbone"],
            "image size": meta["image_size"],
            "prediction": meta["sampler"] | {"n_samples": meta["n_samples"]},
            "training settings": meta["params"],
            "card": _card_summary(meta.get("card")),
        }
    from ._persist import _read

    try:
        document, _ = _read(path)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc).splitlines()[0]) from None
    params, attributes = document["params"], document["attributes"]
    return {
        "file": "saved DiffMICClassifier (safetensors)",
        "format version": document["version"],
        "classes": document["classes"],
        **(
            {"labels (multi-label)": document["label_names_"]}
            if document["attributes"].get("multilabel_")
            else {}
        ),
        "backbone": params.get("backbone"),
        "image size": attributes.get("image_size_"),
        "input": "feature vectors" if attributes.get("tabular_") else "images",
        "training settings": params,
        "card": _card_summary(document.get("card")),
    }


def _card_summary(card):
    """The card as ``info`` prints it: its parameters are the training
    settings printed above it."""
    if card is None:
        return "none (saved before model cards)"
    configuration = {k: v for k, v in card["configuration"].items() if k != "params"}
    return {**card, "configuration": configuration}


def _print_entry(key, value, depth=0) -> None:
    pad = "  " * depth
    if isinstance(value, dict) and value and depth < 2:
        print(f"{pad}{key}:")
        for name, item in value.items():
            _print_entry(name, item, depth + 1)
    elif depth == 0 and isinstance(value, str):
        print(f"{key}: {value}")
    else:
        print(f"{pad}{key}: {json.dumps(value)}")


def _write_card(path: str, target: str) -> None:
    from ._card import card_markdown
    from ._persist import _read

    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}")
    if path.lower().endswith(".onnx"):
        card = _load_model(path).metadata_.get("card")
    else:
        try:
            document, _ = _read(path)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc).splitlines()[0]) from None
        card = document.get("card")
    if card is None:
        raise CommandError(f"{path!r} was written before model cards; it has none")
    text = card_markdown(card)
    if target == "-":
        sys.stdout.write(text)
        return
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(text, encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)


def info(args) -> int:
    if args.card is not None:
        _write_card(args.model, args.card)
        return 0
    for key, value in describe(args.model).items():
        _print_entry(key, value)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skdiffmic",
        description="Fit, evaluate, predict with, export and describe skdiffmic "
        "models.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    data_help = (
        "a folder with one sub-folder of images per class, or a CSV of a "
        "'path' column and label columns"
    )
    columns_help = "the CSV's label columns, comma-separated (default: all but ids)"
    f = commands.add_parser("fit", help="train a model on labelled images and save it")
    f.add_argument("data", help=data_help)
    f.add_argument("--out", default="model.safetensors", help="the model to write")
    f.add_argument("--preset", choices=sorted(PRESETS), default="fine_tune")
    f.add_argument(
        "--set",
        action="append",
        metavar="PARAM=VALUE",
        help="an estimator parameter (VALUE as JSON, else a string); repeatable",
    )
    f.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="hold out this fraction to choose the best epoch and calibrate",
    )
    f.add_argument("--random-state", type=int, metavar="N")
    f.add_argument("--label-columns", metavar="A,B,...", help=columns_help)
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(run=fit)
    v = commands.add_parser("evaluate", help="score a model on labelled images")
    v.add_argument("model", help="a saved .safetensors model or an exported .onnx")
    v.add_argument("data", help=data_help)
    v.add_argument(
        "--out-dir",
        metavar="DIR",
        help="where to write the tables and the figure (default: "
        "<model>-evaluation-<data> beside the model)",
    )
    v.add_argument("--label-columns", metavar="A,B,...", help=columns_help)
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(run=evaluate)
    p = commands.add_parser("predict", help="predict images into a CSV")
    p.add_argument("model", help="a saved .safetensors model or an exported .onnx")
    p.add_argument("inputs", nargs="+", help="image files, folders or CSVs of paths")
    p.add_argument("--out", default="predictions.csv", help="the CSV to write")
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="add predict_uncertainty's columns (.safetensors models)",
    )
    p.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=predict)
    e = commands.add_parser("export", help="write a saved model as ONNX")
    e.add_argument("model", help="a saved .safetensors model")
    e.add_argument("out", help="the .onnx file to write")
    e.set_defaults(run=export)
    i = commands.add_parser("info", help="describe a saved or exported model")
    i.add_argument("model")
    i.add_argument(
        "--card",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the model card as Markdown (to stdout without FILE)",
    )
    i.set_defaults(run=info)
    return parser


def main(argv=None) -> int:
    """Run the ``skdiffmic`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 1 after an error (reported in one
        line on stderr). argparse exits with 2 on a wrong command line.
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ValueError, OSError, RuntimeError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(f"skdiffmic {args.command}: error: {message}", file=sys.stderr)
        return 1
