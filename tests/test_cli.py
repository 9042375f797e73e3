"""The skdiffmic command line: predict, export, info, and its errors."""

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
