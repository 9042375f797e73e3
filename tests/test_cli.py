"""The skdiffmic command line: fit, evaluate, predict, export, info, and errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skdiffmic._persist import FORMAT_VERSION
from skdiffmic.cli import main
from tests.conftest import tiny


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from skdiffmic.datasets import make_lesions

    root = tmp_path_factory.mktemp("cli")
    X, y = make_lesions(40, image_size=16, random_state=0)
    clf = tiny(max_epochs=1, device="cpu")
    clf.fit(X, np.where(y == 1, "lesion", "clear"))
    model = root / "model.safetensors"
    clf.save(model)
    images = root / "images" / "nested"
    images.mkdir(parents=True)
    paths = []
    for k, image in enumerate(X[:6]):
        paths.append(images / f"{k}.png")
        Image.fromarray(image).save(paths[-1])
    return clf, model, paths, root


def test_predict_writes_one_row_per_image_with_every_class(saved, tmp_path):
    clf, model, paths, root = saved
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(root / "images"), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "path",
        "prediction",
        "proba[clear]",
        "proba[lesion]",
    ]
    assert table.path.tolist() == [str(p) for p in sorted(paths)]
    expected = clf.predict_proba([str(p) for p in sorted(paths)])
    np.testing.assert_allclose(table[["proba[clear]", "proba[lesion]"]], expected)
    assert (table.prediction == clf.predict([str(p) for p in sorted(paths)])).all()


def test_a_csv_of_paths_and_uncertainty_columns(saved, tmp_path):
    clf, model, paths, root = saved
    listing = root / "list.csv"
    pd.DataFrame({"path": [p.relative_to(root) for p in paths[:3]]}).to_csv(
        listing, index=False
    )
    out = tmp_path / "p.csv"
    args = ["predict", str(model), str(listing), "--out", str(out)]
    assert main(args + ["--uncertainty", "--quiet"]) == 0
    table = pd.read_csv(out)
    assert table.path.tolist() == [str(p) for p in paths[:3]]
    expected = clf.predict_uncertainty([str(p) for p in paths[:3]])
    np.testing.assert_allclose(table.entropy, expected.entropy)
    assert (table.uncertainty_prediction == expected.prediction).all()


def test_a_folder_with_a_corrupt_image_predicts_the_others(saved, tmp_path, capsys):
    import shutil

    clf, model, paths, root = saved
    folder = tmp_path / "batch"
    folder.mkdir()
    for path in paths[:3]:
        shutil.copy(path, folder / path.name)
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "p.csv"
    args = ["predict", str(model), str(folder), "--out", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"skipped {broken}" in err and "1 unreadable image(s) skipped" in err
    assert pd.read_csv(out).path.tolist() == [str(folder / p.name) for p in paths[:3]]
    assert main(args + ["--strict"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreadable image" in err[0] and str(broken) in err[0]
    assert main(["predict", str(model), str(broken), "--out", str(out)]) == 1
    assert "none of the 1 image(s) could be read" in capsys.readouterr().err


def test_folders_under_hidden_or_relative_paths_and_duplicates(saved, tmp_path):
    import shutil

    clf, model, paths, root = saved
    # Hidden folders inside the input are skipped; above it they do not matter.
    folder = tmp_path / ".cache" / "scans"
    (folder / ".thumbnails").mkdir(parents=True)
    shutil.copy(paths[0], folder / "a.png")
    shutil.copy(paths[1], folder / ".thumbnails" / "b.png")
    out = tmp_path / "p.csv"
    relative = os.path.relpath(folder, os.getcwd())
    args = ["predict", str(model), relative, "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert pd.read_csv(out).path.tolist() == [os.path.join(relative, "a.png")]
    # The same file named twice is predicted once.
    twice = [str(folder / "a.png")] * 2
    assert main(["predict", str(model), *twice, "--out", str(out), "--quiet"]) == 0
    assert len(pd.read_csv(out)) == 1


def test_missing_and_corrupt_models_fail_with_one_line(saved, tmp_path, capsys):
    clf, model, paths, root = saved
    assert main(["predict", str(tmp_path / "none.safetensors"), str(paths[0])]) == 1
    assert "no model file" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(model.read_bytes()[:100])
    assert main(["info", str(corrupt)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable skdiffmic model" in err[0]
    assert main(["predict", str(model), str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_info_and_export_then_predict_with_the_onnx_file(saved, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    clf, model, paths, root = saved
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert f"format version: {FORMAT_VERSION}" in out
    assert 'classes: ["clear", "lesion"]' in out
    assert "image size: 16" in out and "guidance_epochs" in out
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(model), str(onnx_path)]) == 0
    assert main(["info", str(onnx_path)]) == 0
    assert "ONNX graph" in capsys.readouterr().out
    # The graph carries the model's card: the same Markdown from either file.
    assert main(["info", str(model), "--card"]) == 0
    card = capsys.readouterr().out
    assert main(["info", str(onnx_path), "--card"]) == 0
    assert capsys.readouterr().out == card and "not for diagnosis" in card
    out = tmp_path / "p.csv"
    assert main(["predict", str(onnx_path), *map(str, paths), "--out", str(out)]) == 0
    np.testing.assert_allclose(
        pd.read_csv(out)[["proba[clear]", "proba[lesion]"]],
        clf.predict_proba([str(p) for p in paths]),
        atol=1e-5,
    )
    assert main(["predict", str(onnx_path), str(paths[0]), "--uncertainty"]) == 1


def test_python_dash_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "skdiffmic", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip()


# ------------------------------------------------------- fit and evaluate --
FIT_SETS = {
    "backbone": "test_resnet",
    "hidden_dim": 32,
    "n_timesteps": 100,
    "max_epochs": 2,
    "guidance_epochs": 1,
    "batch_size": 8,
    "device": "cpu",
}


def _fit_args(data, out, *extra):
    args = ["fit", str(data), "--out", str(out), "--preset", "scratch"]
    for name, value in FIT_SETS.items():
        args += ["--set", f"{name}={json.dumps(value)}"]
    return args + ["--random-state", "0", *extra]


def _class_folders(root, n_per_class=12):
    """Two class folders of 16 px PNGs; lesions have a bright square."""
    rng = np.random.default_rng(0)
    for name in ("clear", "lesion"):
        (root / name).mkdir(parents=True)
        for k in range(n_per_class):
            image = rng.integers(0, 200, (16, 16, 3), dtype=np.uint8)
            if name == "lesion":
                image[4:12, 4:12] = 255
            Image.fromarray(image).save(root / name / f"{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def cli_fit(tmp_path_factory):
    """A model fitted by ``skdiffmic fit`` on an image folder, and the same
    model fitted through the Python API."""
    from skdiffmic import DiffMICClassifier, presets
    from skdiffmic.datasets import load_image_folder

    root = tmp_path_factory.mktemp("fit")
    folder = _class_folders(root / "images")
    model = root / "model.safetensors"
    args = _fit_args(folder, model, "--validation-fraction", "0.25", "--quiet")
    assert main(args) == 0
    bunch = load_image_folder(folder)
    paths, labels = list(bunch.data), bunch.target_names[bunch.target]
    reference = DiffMICClassifier(
        **{**presets.SCRATCH, **FIT_SETS}, validation_fraction=0.25, random_state=0
    ).fit(paths, labels)
    return model, folder, paths, labels, reference


def test_fit_saves_the_model_the_python_api_fits(cli_fit):
    from skdiffmic import DiffMICClassifier

    model, folder, paths, labels, reference = cli_fit
    loaded = DiffMICClassifier.load(model)
    np.testing.assert_allclose(
        loaded.predict_proba(paths), reference.predict_proba(paths), atol=1e-6
    )
    params, expected = loaded.get_params(), reference.get_params()
    assert params.pop("verbose") == expected.pop("verbose") == 0  # --quiet
    assert params == expected
    assert loaded.classes_.tolist() == ["clear", "lesion"]
    assert loaded.training_data_ == reference.training_data_


def test_evaluate_writes_the_scores_beside_the_model(cli_fit, capsys):
    model, folder, paths, labels, reference = cli_fit
    assert main(["evaluate", str(model), str(folder), "--quiet"]) == 0
    out_dir = model.with_name("model-evaluation-images")
    printed = capsys.readouterr()
    assert str(out_dir) in printed.err and "macro_roc_auc" in printed.out
    metrics = pd.read_csv(out_dir / "metrics.csv").set_index("metric").value
    pred = reference.predict(paths)
    assert metrics["n_images"] == 24
    assert metrics["accuracy"] == pytest.approx(np.mean(pred == labels))
    for name in ("macro_f1", "balanced_accuracy", "macro_roc_auc", "ece_10_bins"):
        assert 0 <= metrics[name] <= 1
    confusion = pd.read_csv(out_dir / "confusion_matrix.csv", index_col=0)
    assert confusion.to_numpy().sum() == 24 and list(confusion.columns) == [
        "clear",
        "lesion",
    ]
    assert confusion.loc["lesion", "lesion"] == np.sum((pred == labels)[12:])
    per_class = pd.read_csv(out_dir / "per_class.csv")
    assert per_class.support.tolist() == [12, 12]
    assert per_class.recall.tolist() == pytest.approx(
        [np.mean(pred[:12] == "clear"), np.mean(pred[12:] == "lesion")]
    )
    assert len(pd.read_csv(out_dir / "predictions.csv")) == 24
    assert (out_dir / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_info_prints_the_card_and_writes_it_as_markdown(cli_fit, tmp_path, capsys):
    model = cli_fit[0]
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "card:" in out and "n_samples: 24" in out
    assert 'class_counts: {"clear": 12, "lesion": 12}' in out
    assert 'based_on: "scratch"' in out and "licence: null" in out
    assert '"val_macro_f1"' in out and "intended_use" in out
    assert main(["info", str(model), "--card"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("# Model card: skdiffmic.DiffMICClassifier")
    assert "not for diagnosis" in markdown and "Rows per class: clear=12" in markdown
    assert "Based on scratch, changed:" in markdown
    assert "Validation (hold-out fraction 0.25" in markdown
    target = tmp_path / "card.md"
    assert main(["info", str(model), "--card", str(target)]) == 0
    assert target.read_text() == markdown


def test_fit_refuses_bad_data_before_training(cli_fit, tmp_path, monkeypatch, capsys):
    import shutil

    from skdiffmic import DiffMICClassifier

    def no_training(self, X, y):
        raise AssertionError("training started")

    monkeypatch.setattr(DiffMICClassifier, "fit", no_training)
    folder = tmp_path / "images"
    shutil.copytree(cli_fit[1], folder)
    broken = folder / "lesion" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    model = tmp_path / "m.safetensors"
    (tmp_path / "empty").mkdir()
    shutil.copytree(cli_fit[1] / "clear", tmp_path / "one" / "clear")
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": ["images/clear/00.png", "gone.png"], "y": [0, 1]}).to_csv(
        listing, index=False
    )
    for data, extra, message in (
        (folder, [], f"1 of the 25 images of '{folder}' cannot be read, the first"),
        (folder, [], f"the first '{broken}': "),
        (tmp_path / "empty", [], "No class folders"),
        (tmp_path / "one", [], "one class folder only ('clear')"),
        (listing, [], "1 file(s) named in"),
        (folder, ["--set", "max_epoch=3"], "unknown parameter 'max_epoch' (did you"),
        (folder, ["--set", "random_state=1"], "random_state is set twice"),
        (folder, ["--set", "batch_size=0"], "batch_size"),
    ):
        assert main(_fit_args(data, model, *extra)) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (message, err)
        assert not model.exists()


def test_ctrl_c_keeps_the_best_epoch_and_saves_it(cli_fit, tmp_path, monkeypatch):
    import skdiffmic._training as training
    from skdiffmic import DiffMICClassifier

    class StopAfterOneDiffusionEpoch(training.tqdm):
        epochs = 0

        def update(self, n=1):
            super().update(n)
            type(self).epochs += n
            if self.epochs == 2:  # the guidance epoch, then a diffusion epoch
                raise KeyboardInterrupt

    monkeypatch.setattr(training, "tqdm", StopAfterOneDiffusionEpoch)
    model = tmp_path / "m.safetensors"
    args = _fit_args(cli_fit[1], model, "--quiet")
    args[args.index("max_epochs=2")] = "max_epochs=3"
    with pytest.warns(UserWarning, match="Training interrupted"):
        assert main(args) == 130
    loaded = DiffMICClassifier.load(model)
    assert loaded.n_iter_ == 1 and loaded.card_["training"]["diffusion_epochs"] == 1


def test_fit_and_evaluate_a_multilabel_csv_with_blank_cells(tmp_path, capsys):
    """Two findings, a third of the cells blank (unknown): fit trains on the
    known cells and evaluate scores each finding over its known entries."""
    from skdiffmic import DiffMICClassifier

    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    rows = []
    for k in range(24):
        square, bar = k % 2, (k // 2) % 2
        image = rng.integers(0, 120, (16, 16, 3), dtype=np.uint8)
        if square:
            image[4:10, 4:10] = 255
        if bar:
            image[12:15, :] = 255
        Image.fromarray(image).save(tmp_path / "img" / f"{k:02d}.png")
        rows.append({"path": f"img/{k:02d}.png", "square": square, "bar": bar})
    table = pd.DataFrame(rows).astype({"square": float, "bar": float})
    blank = rng.random(table[["square", "bar"]].shape) < 0.3
    table[["square", "bar"]] = table[["square", "bar"]].mask(blank)
    listing = tmp_path / "findings.csv"
    table.to_csv(listing, index=False)
    assert ",," in listing.read_text() or ",\n" in listing.read_text()  # blanks

    model = tmp_path / "m.safetensors"
    assert main(_fit_args(listing, model, "--quiet")) == 0
    loaded = DiffMICClassifier.load(model)
    assert loaded.multilabel_ and list(loaded.label_names_) == ["square", "bar"]
    losses = [v for h in loaded.history_ for k, v in h.items() if k.endswith("loss")]
    assert len(losses) > 2 and np.isfinite(losses).all()

    capsys.readouterr()
    assert main(["evaluate", str(model), str(listing), "--quiet"]) == 0
    out_dir = tmp_path / "m-evaluation-findings"
    metrics = pd.read_csv(out_dir / "metrics.csv").set_index("metric").value
    assert metrics["n_known_entries"] == (~blank).sum()
    per_label = pd.read_csv(out_dir / "per_label.csv").set_index("label")
    assert per_label.n_known.tolist() == (~blank).sum(axis=0).tolist()
    assert 0 <= metrics["macro_roc_auc"] <= 1
    truth = pd.read_csv(out_dir / "predictions.csv").truth.fillna("")
    known_square = ~blank[:, 0] & (table.square == 1).to_numpy()
    assert [("square" in t) for t in truth] == known_square.tolist()
