"""Multi-label data: make_lesions(n_labels=...), load_chestxray14, load_chexpert."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skdiffmic.datasets import (
    CHESTXRAY14_LABELS,
    CHEXPERT_LABELS,
    load_chestxray14,
    load_chexpert,
    make_lesions,
)


def write_png(path, seed=0, size=8):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), np.uint8)
    Image.fromarray(pixels, "L").save(path)
    return path


def row_of(target_names, *names):
    return [int(name in names) for name in target_names]


# ------------------------------------------------------------- make_lesions --
def test_make_lesions_multilabel_shapes_and_values():
    X, Y = make_lesions(40, image_size=24, n_labels=5, random_state=0)
    assert X.shape == (40, 24, 24, 3) and X.dtype == np.uint8
    assert Y.shape == (40, 5) and Y.dtype == np.int64
    assert set(np.unique(Y)) == {0, 1}


def test_make_lesions_multilabel_every_label_has_both_values():
    for seed in range(20):
        _, Y = make_lesions(3, image_size=16, n_labels=8, random_state=seed)
        assert Y.min(0).tolist() == [0] * 8 and Y.max(0).tolist() == [1] * 8
    _, Y = make_lesions(2, image_size=16, n_labels=2, random_state=0)
    assert sorted(Y[:, 0]) == sorted(Y[:, 1]) == [0, 1]


def test_make_lesions_multilabel_is_reproducible():
    X, Y = make_lesions(20, image_size=16, n_labels=3, random_state=7)
    X2, Y2 = make_lesions(20, image_size=16, n_labels=3, random_state=7)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)
    X3, Y3 = make_lesions(20, image_size=16, n_labels=3, random_state=8)
    assert not np.array_equal(X, X3) and not np.array_equal(Y, Y3)


def test_make_lesions_multilabel_rates_and_co_occurrence():
    _, Y = make_lesions(1500, image_size=16, n_labels=4, random_state=0)
    np.testing.assert_allclose(Y.mean(0), [0.5, 0.3833, 0.2667, 0.15], atol=0.04)
    counts = Y.sum(1)
    assert (counts == 0).any() and (counts >= 2).any() and (counts == 4).any()
    # independent labels: the joint rate of two labels is the product of rates
    joint = (Y[:, 0] & Y[:, 1]).mean()
    assert abs(joint - Y[:, 0].mean() * Y[:, 1].mean()) < 0.04


def test_make_lesions_multilabel_findings_lie_in_their_boxes():
    kwargs = dict(image_size=32, n_labels=6, random_state=0, return_patches=True)
    X, Y = make_lesions(30, image_size=32, n_labels=6, random_state=0)
    X2, Y2, boxes = make_lesions(30, **kwargs)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)
    assert boxes.shape == (30, 6, 4) and boxes.dtype == np.int64
    assert np.all(boxes[Y == 0] == -1)
    present = boxes[Y == 1]
    assert np.all(present[:, 2:] == 8)  # max(6, 32 // 4)
    assert np.all(present[:, :2] >= 0) and np.all(present[:, :2] + 8 <= 32)
    # Without noise, the findings change the pixels of their boxes only.
    plain, *_ = make_lesions(30, noise=0, contrast=0, **kwargs)
    drawn, _, same = make_lesions(30, noise=0, **kwargs)
    np.testing.assert_array_equal(same, boxes)
    changed = np.any(plain != drawn, axis=-1)
    for mask, image_boxes in zip(changed, boxes):
        inside = np.zeros_like(mask)
        for row, col, h, w in image_boxes[image_boxes[:, 0] >= 0]:
            inside[row : row + h, col : col + w] = True
        assert not mask[~inside].any()
    assert changed.any()


def test_make_lesions_default_is_single_label():
    X, y = make_lesions(30, image_size=24, n_classes=3, random_state=0)
    X2, y2 = make_lesions(30, image_size=24, n_classes=3, random_state=0, n_labels=None)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert y.ndim == 1 and np.bincount(y).tolist() == [10, 10, 10]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_labels": 1}, r"n_labels must be None or an integer in \[2, 8\]"),
        ({"n_labels": 9}, "n_labels must be"),
        ({"n_labels": 2.0}, "n_labels must be"),
        ({"n_labels": True}, "n_labels must be"),
        ({"n_labels": "3"}, "n_labels must be"),
        ({"n_labels": 3, "n_classes": 3}, "n_classes is not used with n_labels"),
        ({"n_labels": 3, "n_samples": 1}, "n_samples must be at least 2"),
        ({"n_labels": 3, "patch_size": 20}, "patch_size"),
    ],
)
def test_make_lesions_multilabel_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_lesions(**{"n_samples": 10, **kwargs})


# ------------------------------------------------------------- ChestX-ray14 --
CXR14_ROWS = [  # image, findings, patient
    ("00000003_000.png", "Hernia|Effusion|Mass", 3),
    ("00000001_000.png", "Cardiomegaly", 1),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1),
    ("00000002_000.png", "No Finding", 2),
    ("00000004_000.png", "Pleural_Thickening", 4),
]
CXR14_SORTED = sorted(CXR14_ROWS)


def write_cxr14_csv(root, rows=CXR14_ROWS):
    pd.DataFrame(
        [
            (name, labels, 0, patient, 50, "M", "PA", 2500, 2048, 0.14, 0.14)
            for name, labels, patient in rows
        ],
        columns=[
            "Image Index",
            "Finding Labels",
            "Follow-up #",
            "Patient ID",
            "Patient Age",
            "Patient Gender",
            "View Position",
            "OriginalImage[Width",
            "Height]",
            "OriginalImagePixelSpacing[x",
            "y]",
        ],
    ).to_csv(root / "Data_Entry_2017.csv", index=False)


@pytest.fixture
def cxr14(tmp_path):
    root = tmp_path / "ChestX-ray14"
    root.mkdir()
    write_cxr14_csv(root)
    for i, (name, _, _) in enumerate(CXR14_ROWS):
        write_png(root / f"images_00{1 + i // 3}" / "images" / name, seed=i)
    (root / "train_val_list.txt").write_text(
        "00000001_000.png\n00000001_001.png\n00000002_000.png\n00000004_000.png\n"
    )
    (root / "test_list.txt").write_text("00000003_000.png\n\n")
    (root / "README_CHESTXRAY.pdf").write_bytes(b"%PDF")
    return root


def test_chestxray14_bunch(cxr14):
    bunch = load_chestxray14(cxr14)
    assert sorted(bunch) == sorted(
        ["data", "target", "target_names", "filenames", "patient", "frame", "DESCR"]
    )
    assert bunch.target_names.tolist() == list(CHESTXRAY14_LABELS)
    assert [Path(p).name for p in bunch.data] == [r[0] for r in CXR14_SORTED]
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in bunch.data)
    np.testing.assert_array_equal(bunch.filenames, bunch.data)
    assert bunch.target.dtype == np.int64 and bunch.target.shape == (5, 14)
    expected = [row_of(CHESTXRAY14_LABELS, *r[1].split("|")) for r in CXR14_SORTED]
    assert bunch.target.tolist() == expected
    assert bunch.target[2].sum() == 0  # No Finding
    assert bunch.patient.dtype == np.int64
    assert bunch.patient.tolist() == [1, 1, 2, 3, 4]
    assert bunch.frame is None
    assert "5 images of 4 patients" in bunch.DESCR
    assert "Cardiomegaly (2 images)" in bunch.DESCR


def test_chestxray14_flat_images_folder(cxr14, tmp_path):
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    for path in cxr14.rglob("*.png"):
        os.replace(path, flat / "images" / path.name)
    write_cxr14_csv(flat)
    bunch = load_chestxray14(flat)
    assert [Path(p).parent for p in bunch.data] == [flat / "images"] * 5
    assert bunch.target.sum() == 7


def test_chestxray14_splits(cxr14):
    train = load_chestxray14(cxr14, split="train_val")
    assert [Path(p).name for p in train.data] == [
        "00000001_000.png",
        "00000001_001.png",
        "00000002_000.png",
        "00000004_000.png",
    ]
    assert train.patient.tolist() == [1, 1, 2, 4]
    test = load_chestxray14(cxr14, split="test")
    assert [Path(p).name for p in test.data] == ["00000003_000.png"]
    assert test.target.tolist() == [
        row_of(CHESTXRAY14_LABELS, "Hernia", "Effusion", "Mass")
    ]
    assert "split='test'" in test.DESCR
    with pytest.raises(ValueError, match="split must be None, 'train_val' or 'test'"):
        load_chestxray14(cxr14, split="train")
    (cxr14 / "test_list.txt").write_text("00000003_000.png\n99999999_000.png\n")
    with pytest.raises(ValueError, match=r"1 image name\(s\) of split file .* no row"):
        load_chestxray14(cxr14, split="test")
    (cxr14 / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="Split file test_list.txt"):
        load_chestxray14(cxr14, split="test")


def test_chestxray14_missing_images(cxr14):
    for name in ("00000002_000.png", "00000004_000.png"):
        next(cxr14.rglob(name)).unlink()
    with pytest.raises(
        ValueError, match=r"2 of 5 image\(s\) listed in .* have no file under"
    ) as info:
        load_chestxray14(cxr14)
    assert "00000002_000.png, 00000004_000.png" in str(info.value)
    assert "skip_missing=True" in str(info.value)
    bunch = load_chestxray14(cxr14, skip_missing=True)
    assert [Path(p).name for p in bunch.data] == [
        "00000001_000.png",
        "00000001_001.png",
        "00000003_000.png",
    ]
    assert bunch.patient.tolist() == [1, 1, 3]
    assert "2 listed image(s) without a file were skipped" in bunch.DESCR
    # the split is applied first: the test split misses nothing
    assert len(load_chestxray14(cxr14, split="test").data) == 1
    for path in cxr14.rglob("*.png"):
        path.unlink()
    with pytest.raises(ValueError, match="None of the 5 image"):
        load_chestxray14(cxr14, skip_missing=True)


def test_chestxray14_many_missing_shows_the_first_five(cxr14, tmp_path):
    rows = [(f"0000100{i}_000.png", "Mass", 100 + i) for i in range(8)]
    write_cxr14_csv(cxr14, CXR14_ROWS + rows)
    with pytest.raises(ValueError, match=r"8 of 13 image\(s\)") as info:
        load_chestxray14(cxr14)
    message = str(info.value)
    assert "00001004_000.png, ..." in message and "00001005" not in message


def test_chestxray14_file_problems(cxr14, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_chestxray14(tmp_path / "nope")
    (cxr14 / "Data_Entry_2017.csv").rename(cxr14 / "labels.csv")
    with pytest.raises(FileNotFoundError, match="No label file .*Data_Entry_2017.csv"):
        load_chestxray14(cxr14)
    # the 2020 file name, in a sub-folder, is found too
    (cxr14 / "meta").mkdir()
    (cxr14 / "labels.csv").rename(cxr14 / "meta" / "Data_Entry_2017_v2020.csv")
    assert len(load_chestxray14(cxr14).data) == 5
    write_png(cxr14 / "images_009/images/00009999_000.png")
    with pytest.raises(ValueError, match=r"1 .png file\(s\) .* have no row"):
        load_chestxray14(cxr14)
    os.replace(
        cxr14 / "images_009/images/00009999_000.png",
        cxr14 / "images_009/images/00000001_000.png",
    )
    with pytest.raises(ValueError, match="found more than once.*00000001_000.png"):
        load_chestxray14(cxr14)


@pytest.mark.parametrize(
    "labels, match",
    [
        ("Cardiomegaly|Flu", r"unknown finding\(s\) 'Flu'"),
        ("", r"unknown finding\(s\) ''"),
        ("No Finding|Mass", r"1 row\(s\) .* list 'No Finding' together"),
    ],
)
def test_chestxray14_bad_labels(cxr14, labels, match):
    write_cxr14_csv(cxr14, CXR14_ROWS[:-1] + [("00000004_000.png", labels, 4)])
    with pytest.raises(ValueError, match=match):
        load_chestxray14(cxr14)


def test_chestxray14_bad_tables(cxr14):
    write_cxr14_csv(cxr14, CXR14_ROWS + [CXR14_ROWS[0]])
    with pytest.raises(ValueError, match=r"lists 1 image\(s\) more than once"):
        load_chestxray14(cxr14)
    write_cxr14_csv(cxr14, CXR14_ROWS[:-1] + [("00000004_000.png", "Mass", "p4")])
    with pytest.raises(ValueError, match="'Patient ID' .* must hold integers"):
        load_chestxray14(cxr14)
    pd.DataFrame({"Image Index": ["00000001_000.png"]}).to_csv(
        cxr14 / "Data_Entry_2017.csv", index=False
    )
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['Finding Labels'"):
        load_chestxray14(cxr14)


def test_chestxray14_as_frame_and_return_X_y(cxr14):
    bunch = load_chestxray14(cxr14, as_frame=True)
    assert list(bunch.data.columns) == ["path"]
    assert isinstance(bunch.target, pd.DataFrame)
    assert list(bunch.target.columns) == list(CHESTXRAY14_LABELS)
    assert (bunch.target.dtypes == np.int64).all()
    assert list(bunch.frame.columns) == ["path", "patient", *CHESTXRAY14_LABELS]
    assert bunch.frame["patient"].tolist() == [1, 1, 2, 3, 4]
    X, Y = load_chestxray14(cxr14, as_frame=True, return_X_y=True)
    pd.testing.assert_frame_equal(X, bunch.data)
    pd.testing.assert_frame_equal(Y, bunch.target)
    X, Y = load_chestxray14(cxr14, return_X_y=True)
    assert X.dtype == object and Y.shape == (5, 14)
    np.testing.assert_array_equal(Y, bunch.target.to_numpy())


def test_chestxray14_verify(cxr14):
    path = next(cxr14.rglob("00000002_000.png"))
    path.write_bytes(path.read_bytes()[:20])
    assert len(load_chestxray14(cxr14).data) == 5
    with pytest.raises(ValueError, match="1 of 5 image files cannot be read"):
        load_chestxray14(cxr14, verify=True)


# ----------------------------------------------------------------- CheXpert --
TRAIN_ROWS = [  # path under the data set folder, view, {observation: value}
    ("train/patient00002/study2/view1_frontal.jpg", "Frontal",
     {"Cardiomegaly": "-1.0", "Edema": "1.0", "Lung Opacity": "0.0",
      "Support Devices": "1.0"}),
    ("train/patient00001/study1/view1_frontal.jpg", "Frontal", {"No Finding": "1.0"}),
    ("train/patient00002/study1/view1_frontal.jpg", "Frontal",
     {"Pleural Effusion": "-1.0", "Fracture": "1.0"}),
    ("train/patient00002/study1/view2_lateral.jpg", "Lateral",
     {"Pleural Effusion": "-1.0", "Fracture": "1"}),
    ("train/patient00010/study1/view1_frontal.jpg", "Frontal", {}),
]  # fmt: skip
VALID_ROWS = [
    ("valid/patient64541/study1/view1_frontal.jpg", "Frontal", {"Edema": "1.0"}),
    ("valid/patient64542/study1/view1_frontal.jpg", "Frontal", {"No Finding": "1.0"}),
]


def write_chexpert_csv(folder, name, rows, prefix="CheXpert-v1.0-small/"):
    records = []
    for path, view, values in rows:
        record = {"Path": prefix + path, "Sex": "Female", "Age": 60}
        record.update({"Frontal/Lateral": view, "AP/PA": "AP" if view else ""})
        record.update({label: values.get(label, "") for label in CHEXPERT_LABELS})
        records.append(record)
    pd.DataFrame(records).to_csv(folder / name, index=False)


@pytest.fixture
def chexpert(tmp_path):
    folder = tmp_path / "data" / "CheXpert-v1.0-small"
    folder.mkdir(parents=True)
    write_chexpert_csv(folder, "train.csv", TRAIN_ROWS)
    write_chexpert_csv(folder, "valid.csv", VALID_ROWS)
    for i, (path, _, _) in enumerate(TRAIN_ROWS + VALID_ROWS):
        write_png(folder / path, seed=i)  # PNG bytes under a .jpg name: fine
    return folder


def chexpert_rows(bunch, folder):
    return [Path(p).relative_to(folder).as_posix() for p in bunch.data]


def test_chexpert_labels_and_uncertain_policies(chexpert):
    zeros = load_chexpert(chexpert)
    assert zeros.target_names.tolist() == list(CHEXPERT_LABELS)
    assert chexpert_rows(zeros, chexpert) == sorted(r[0] for r in TRAIN_ROWS)
    assert all(os.path.isabs(p) for p in zeros.data)
    assert zeros.patient.dtype == np.int64
    assert zeros.patient.tolist() == [1, 2, 2, 2, 10]
    assert zeros.target.dtype == np.int64 and zeros.target.shape == (5, 14)
    names = CHEXPERT_LABELS
    assert zeros.target.tolist() == [
        row_of(names, "No Finding"),
        row_of(names, "Fracture"),
        row_of(names, "Fracture"),
        row_of(names, "Edema", "Support Devices"),
        row_of(names),  # every column blank
    ]
    ones = load_chexpert(chexpert, uncertain="ones")
    assert ones.target.tolist() == [
        row_of(names, "No Finding"),
        row_of(names, "Pleural Effusion", "Fracture"),
        row_of(names, "Pleural Effusion", "Fracture"),
        row_of(names, "Cardiomegaly", "Edema", "Support Devices"),
        row_of(names),
    ]
    assert "uncertain='ones'" in ones.DESCR and "Pleural Effusion 2" in ones.DESCR
    assert "5 images of 3 patients" in zeros.DESCR


def test_chexpert_root_may_be_the_parent_or_renamed(chexpert):
    expected = load_chexpert(chexpert, return_X_y=True)
    parent = load_chexpert(chexpert.parent, return_X_y=True)
    np.testing.assert_array_equal(parent[0], expected[0])
    np.testing.assert_array_equal(parent[1], expected[1])
    renamed = chexpert.parent / "chexpert"
    chexpert.rename(renamed)
    X, _ = load_chexpert(renamed, return_X_y=True)
    assert [Path(p).parent.parent.parent.parent for p in X] == [renamed] * 5
    # paths written without the data set folder are read too
    write_chexpert_csv(renamed, "train.csv", TRAIN_ROWS, prefix="")
    X2, _ = load_chexpert(renamed, return_X_y=True)
    np.testing.assert_array_equal(X2, X)


def test_chexpert_valid_split_and_frontal_only(chexpert):
    valid = load_chexpert(chexpert, split="valid")
    assert valid.patient.tolist() == [64541, 64542]
    assert valid.target.tolist() == [
        row_of(CHEXPERT_LABELS, "Edema"),
        row_of(CHEXPERT_LABELS, "No Finding"),
    ]
    frontal = load_chexpert(chexpert, frontal_only=True, uncertain="ones")
    assert len(frontal.data) == 4
    assert not any("lateral" in p for p in frontal.data)
    assert "Pleural Effusion 1" in frontal.DESCR
    with pytest.raises(ValueError, match="split must be 'train' or 'valid'"):
        load_chexpert(chexpert, split="test")


def test_chexpert_uncertain_ignore_makes_uncertain_labels_nan(chexpert):
    names = CHEXPERT_LABELS
    zeros = load_chexpert(chexpert)
    ignore = load_chexpert(chexpert, uncertain="ignore")
    assert ignore.target.dtype == np.float64 and ignore.target.shape == (5, 14)
    nan = np.isnan(ignore.target)
    uncertain = np.zeros((5, 14), dtype=bool)
    uncertain[[1, 2], names.index("Pleural Effusion")] = True
    uncertain[3, names.index("Cardiomegaly")] = True
    np.testing.assert_array_equal(nan, uncertain)
    # Every other entry, blanks (0) included, is as with uncertain="zeros".
    np.testing.assert_array_equal(ignore.target[~nan], zeros.target[~nan])
    assert ignore.target[4].tolist() == row_of(names)
    assert "uncertain='ignore'" in ignore.DESCR and "become NaN" in ignore.DESCR
    assert "Fracture (2 images)" in ignore.DESCR
    Y = load_chexpert(chexpert, uncertain="ignore", as_frame=True).target
    assert (Y.dtypes == np.float64).all()
    assert Y["Pleural Effusion"].isna().sum() == 2
    assert Y["Edema"].tolist() == [0, 0, 0, 1, 0]


def test_chexpert_uncertain_policy_is_checked(chexpert):
    with pytest.raises(ValueError, match="uncertain must be 'zeros', 'ones' or 'ign"):
        load_chexpert(chexpert, uncertain="mask")
    with pytest.raises(ValueError, match="uncertain must be 'zeros', 'ones' or 'ign"):
        load_chexpert(chexpert, uncertain="U-Ones")
    with pytest.raises(ValueError, match="frontal_only must be True or False"):
        load_chexpert(chexpert, frontal_only="yes")


def test_chexpert_bad_tables(chexpert):
    rows = TRAIN_ROWS[:-1] + [(TRAIN_ROWS[-1][0], "Frontal", {"Edema": "2.0"})]
    write_chexpert_csv(chexpert, "train.csv", rows)
    with pytest.raises(ValueError, match=r"'Edema' .* 1, 0, -1 or nothing.*: 2.0"):
        load_chexpert(chexpert)
    write_chexpert_csv(chexpert, "train.csv", TRAIN_ROWS + TRAIN_ROWS[:1])
    with pytest.raises(ValueError, match=r"lists 1 path\(s\) more than once"):
        load_chexpert(chexpert)
    write_chexpert_csv(
        chexpert, "train.csv", TRAIN_ROWS + [("train/someone/a.jpg", "Frontal", {})]
    )
    with pytest.raises(ValueError, match=r"1 path\(s\) .* name no patientNNNNN"):
        load_chexpert(chexpert)
    frame = pd.read_csv(chexpert / "valid.csv").drop(columns=["Fracture"])
    frame.to_csv(chexpert / "valid.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['Fracture'\]"):
        load_chexpert(chexpert, split="valid")


def test_chexpert_missing_files(chexpert, tmp_path):
    (chexpert / "train/patient00001/study1/view1_frontal.jpg").unlink()
    with pytest.raises(
        ValueError,
        match=r"1 of 5 image\(s\) listed in .*train.csv.* have no file under .*: "
        r"CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
    ):
        load_chexpert(chexpert)
    bunch = load_chexpert(chexpert, skip_missing=True)
    assert bunch.patient.tolist() == [2, 2, 2, 10]
    assert "1 listed image(s) without a file were skipped" in bunch.DESCR
    (chexpert / "valid.csv").unlink()
    with pytest.raises(FileNotFoundError, match="No label file .*valid.csv"):
        load_chexpert(chexpert, split="valid")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_chexpert(tmp_path / "nope")


def test_chexpert_as_frame_and_return_X_y(chexpert):
    bunch = load_chexpert(chexpert, as_frame=True)
    assert list(bunch.data.columns) == ["path"]
    assert list(bunch.target.columns) == list(CHEXPERT_LABELS)
    assert (bunch.target.dtypes == np.int64).all()
    assert list(bunch.frame.columns) == ["path", "patient", *CHEXPERT_LABELS]
    X, Y = load_chexpert(chexpert, as_frame=True, return_X_y=True)
    pd.testing.assert_frame_equal(Y, bunch.target)
    X, Y = load_chexpert(chexpert, return_X_y=True)
    np.testing.assert_array_equal(Y, bunch.target.to_numpy())
    np.testing.assert_array_equal(X, bunch.data["path"].to_numpy())
