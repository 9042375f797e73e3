"""The examples run end to end in their quick mode, so that they cannot rot."""

import os
import pathlib
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["quickstart.py"])
def test_example_runs(script, monkeypatch, capsys):
    monkeypatch.setenv("SKDIFFMIC_QUICK", "1")
    runpy.run_path(os.fspath(EXAMPLES / script), run_name="__main__")
    assert "accuracy" in capsys.readouterr().out
