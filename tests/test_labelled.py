"""Labelled data of the command line: class folders and CSVs of paths and labels."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skdiffmic._labelled import read_labelled


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / f"{k}.png")
    return tmp_path


def test_a_csv_of_one_label_column_is_single_label(images):
    listing = images / "train.csv"
    pd.DataFrame(
        {
            "path": ["scans/0.png", "scans/1.png", str(images / "scans/2.png")],
            "patient_id": [1, 1, 2],
            "grade": ["mild", "severe", "mild"],
        }
    ).to_csv(listing, index=False)
    data = read_labelled(listing)
    assert not data.multilabel and data.name == "train"
    assert data.y.tolist() == ["mild", "severe", "mild"]
    assert data.paths == [str(images / "scans" / f"{k}.png") for k in range(3)]


def test_several_label_columns_are_multi_label_with_blanks_unknown(images):
    listing = images / "findings.csv"
    listing.write_text(
        "path,group,edema,mass,site\n"
        "scans/0.png,a,1,0,x\n"
        "scans/1.png,a,,1,y\n"
        "scans/2.png,b,0,1,x\n"
    )
    data = read_labelled(listing, ["edema", "mass"])
    assert data.multilabel and list(data.y.columns) == ["edema", "mass"]
    np.testing.assert_array_equal(data.y.to_numpy(), [[1, 0], [np.nan, 1], [0, 1]])
    with pytest.raises(ValueError, match=r"column 'site' .* holds 'x' on line\(s\) 2"):
        read_labelled(listing)  # every column but path and group
    with pytest.raises(ValueError, match="has no column 'effusion'"):
        read_labelled(listing, ["effusion"])


def test_rows_without_a_path_or_label_and_missing_files_are_refused(images):
    listing = images / "bad.csv"
    listing.write_text("path,y\nscans/0.png,a\nscans/1.png,\n")
    with pytest.raises(ValueError, match=r"no label in column 'y' on line\(s\) 3"):
        read_labelled(listing)
    listing.write_text("path,y\nscans/0.png,a\n,b\n")
    with pytest.raises(ValueError, match=r"no path on line\(s\) 3"):
        read_labelled(listing)
    listing.write_text("path,y\nscans/9.png,a\n")
    with pytest.raises(ValueError, match="1 file.* do not exist.*9.png"):
        read_labelled(listing)
    listing.write_text("file,y\nscans/0.png,a\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        read_labelled(listing)
    with pytest.raises(FileNotFoundError):
        read_labelled(images / "nowhere")
