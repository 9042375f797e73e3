"""The ``skdiffmic`` command: predict, export and describe saved models.

::

    skdiffmic predict MODEL INPUT... --out predictions.csv [--uncertainty] [--strict]
    skdiffmic export MODEL out.onnx
    skdiffmic info MODEL

``MODEL`` is a model saved with :meth:`DiffMICClassifier.save
<skdiffmic.DiffMICClassifier.save>` (``.safetensors``) or a file written by
:func:`skdiffmic.export.to_onnx` (``.onnx``, run with ONNX Runtime).
``INPUT`` is image files, folders (searched recursively for the image and
DICOM types of :func:`~skdiffmic.datasets.load_image_folder`) or CSV files
of paths (the ``path`` column, else the first; relative paths are read from
the CSV's folder). Also ``python -m skdiffmic``.

Every error ends the command with status 1 and one line on stderr: a missing
or corrupt model, an input file or folder that is not there, an output that
cannot be written. Images that cannot be decoded, and files named in a CSV
that do not exist, are listed on stderr and left out of the output, and the
others are predicted; with ``--strict`` the first one stops the command.
With no image left to predict the status is 1. A wrong command line exits
with status 2 and argparse's usage message. Folders are searched by file
extension: list DICOM files without one explicitly or in a CSV. An image
named twice is predicted once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import __version__
from ._sampling import decide
from ._targets import label_sets
from .datasets._loaders import IMAGE_EXTENSIONS

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


def _readable(paths, strict: bool):
    """``(good paths, [(bad path, reason)])``; with ``strict`` the first bad
    one raises."""
    from ._imageio import verify_image

    good, bad = [], []
    for path in paths:
        try:
            verify_image(path)
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            if strict:
                raise CommandError(f"unreadable image {path!r}: {reason}") from None
            bad.append((path, reason))
        else:
            good.append(path)
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
    }


def info(args) -> int:
    for key, value in describe(args.model).items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, setting in value.items():
                print(f"  {name}: {json.dumps(setting)}")
        else:
            print(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skdiffmic",
        description="Predict with, export and describe saved skdiffmic models.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
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
