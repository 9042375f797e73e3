"""DICOM files: pixel values as a viewer shows them, and clear errors for bad files.

Uses pydicom's bundled test files (never its download of the others) and files
written here with known pixels.
"""

import shutil
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

import skdiffmic._classifier  # noqa: E402
from skdiffmic._dicom import is_dicom, probe_dicom, read_dicom  # noqa: E402
from skdiffmic._imageio import probe_image, read_image, verify_image  # noqa: E402
from skdiffmic._inputs import PathImages  # noqa: E402
from skdiffmic.datasets import load_image_folder, read_images  # noqa: E402
from tests.conftest import tiny  # noqa: E402

# The 10 colour bands (10 rows each) of pydicom's 100x100 SC_rgb test images.
SC_RGB_BANDS = [
    (255, 0, 0),
    (255, 128, 128),
    (0, 255, 0),
    (128, 255, 128),
    (0, 0, 255),
    (128, 128, 255),
    (0, 0, 0),
    (64, 64, 64),
    (192, 192, 192),
    (255, 255, 255),
]


def bundled(name):
    """A test file shipped in pydicom's wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with this pydicom"
    return path


def write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, **tags):
    """Write ``pixels`` as an uncompressed single-file DICOM with extra ``tags``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    pixels = np.asarray(pixels)
    ds.set_pixel_data(pixels, photometric, bits_stored or 8 * pixels.itemsize)
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a fit gets as far as building or training the networks."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was rejected")

    monkeypatch.setattr(skdiffmic._networks, "build_networks", refuse)
    monkeypatch.setattr(skdiffmic._classifier, "fit_diffmic", refuse)


# ------------------------------------------------------------- known pixels --
def test_no_window_maps_the_minimum_to_maximum(tmp_path):
    stored = (100 + np.arange(16 * 16).reshape(16, 16)).astype(np.uint16)
    stored[-1, -1] = 356  # range 100 .. 356: 256 steps
    path = write_dicom(tmp_path / "a.dcm", stored, bits_stored=12)
    out = read_dicom(path)
    assert out.dtype == np.float32 and out.shape == (16, 16)
    np.testing.assert_array_equal(out, ((stored - 100) / 256).astype(np.float32))
    assert probe_dicom(path) == (16, 16, 1)


def ct_values():
    """Stored int16 values whose modality values (2 x - 1024) span -200..300."""
    modality = np.arange(-200, 302, 2, dtype=np.int64)[:240].reshape(12, 20)
    return ((modality + 1024) // 2).astype(np.int16), modality


def soft_tissue(modality):
    """pydicom's LINEAR window at center 40.5, width 257, in [0, 1]."""
    return np.clip((modality - 40) / 256 + 0.5, 0, 1).astype(np.float32)


def test_rescale_then_the_first_window(tmp_path):
    stored, modality = ct_values()
    path = write_dicom(
        tmp_path / "ct.dcm",
        stored,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=[40.5, 500],
        WindowWidth=[257, 2000],
    )
    out = read_dicom(path)
    np.testing.assert_array_equal(out, soft_tissue(modality))
    assert out.min() == 0 and out.max() == 1  # clipped on both sides
    full = read_dicom(path, window="full")
    low, high = modality.min(), modality.max()
    expected = ((modality - low) / (high - low)).astype(np.float32)
    np.testing.assert_array_equal(full, expected)


def test_a_window_given_overrides_the_file(tmp_path):
    stored, modality = ct_values()
    path = write_dicom(
        tmp_path / "ct.dcm",
        stored,
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=1000,
        WindowWidth=3000,
    )
    np.testing.assert_array_equal(
        read_dicom(path, window=(40.5, 257)), soft_tissue(modality)
    )
    batch = read_images([path], size=12, dicom_window=(40.5, 257))
    assert batch.shape == (1, 12, 12, 1)  # the centre square, not resized
    np.testing.assert_array_equal(
        batch[0, :, :, 0],
        np.rint(soft_tissue(modality)[:, 4:16] * 255).astype(np.uint8),
    )


def test_voi_lut_is_preferred_to_the_window(tmp_path):
    stored = np.array([[9, 10, 11], [12, 13, 200]], dtype=np.uint16)
    lut = Dataset()
    # 4 entries, the first for the value 10, 8 bits each
    lut.add_new(0x00283002, "US", [4, 10, 8])  # LUT Descriptor
    lut.add_new(0x00283006, "US", [0, 51, 102, 255])  # LUT Data
    path = write_dicom(
        tmp_path / "lut.dcm",
        stored,
        VOILUTSequence=[lut],
        WindowCenter=100,
        WindowWidth=50,
    )
    expected = np.array([[0, 0, 51], [102, 255, 255]]) / 255
    np.testing.assert_array_equal(read_dicom(path), expected.astype(np.float32))


def test_monochrome1_is_inverted(tmp_path):
    stored = (np.arange(64).reshape(8, 8) * 2).astype(np.uint8)  # 0 .. 126
    plain = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    np.testing.assert_array_equal(
        read_dicom(plain), (1 - stored / 126).astype(np.float32)
    )
    windowed = write_dicom(
        tmp_path / "m1w.dcm",
        stored,
        photometric="MONOCHROME1",
        WindowCenter=64.5,
        WindowWidth=65,
    )
    expected = 1 - np.clip((stored.astype(int) - 64) / 64 + 0.5, 0, 1)
    np.testing.assert_array_equal(read_dicom(windowed), expected.astype(np.float32))


def test_a_constant_image_is_zeros(tmp_path):
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        path = write_dicom(
            tmp_path / f"{photometric}.dcm",
            np.full((5, 7), 300, np.uint16),
            photometric=photometric,
        )
        out = read_dicom(path)
        assert out.shape == (5, 7)
        np.testing.assert_array_equal(out, np.zeros((5, 7), np.float32))


def test_rgb_is_scaled_by_its_bit_depth_and_matches_the_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    rgb[0, 0] = (10, 20, 30)  # no pixel reaches 0 or 255 in every channel
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = read_dicom(path)
    np.testing.assert_array_equal(out, (rgb / 255).astype(np.float32))
    np.testing.assert_array_equal(
        read_image(path, 3), read_image(tmp_path / "rgb.png", 3)
    )
    gray = read_image(path, 1)[..., 0]
    np.testing.assert_allclose(gray, out @ [0.299, 0.587, 0.114], atol=1e-6)
    with pytest.raises(ValueError, match="windows are for grayscale"):
        read_dicom(path, window=(100, 50))


def test_invalid_stored_window_falls_back_to_the_full_range(tmp_path):
    stored = np.arange(4 * 4, dtype=np.uint16).reshape(4, 4)
    path = write_dicom(tmp_path / "w0.dcm", stored, WindowCenter=5, WindowWidth=0)
    with pytest.warns(UserWarning, match="window cannot be used"):
        out = read_dicom(path)
    np.testing.assert_array_equal(out, (stored / 15).astype(np.float32))


@pytest.mark.parametrize(
    "window", ["bright", (40,), (40, 0), (40, -1), (np.nan, 10), ("40", "400")]
)
def test_invalid_dicom_window_values(tmp_path, window):
    path = write_dicom(tmp_path / "a.dcm", np.eye(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="dicom_window must be"):
        read_images([path], size=4, dicom_window=window)


# ----------------------------------------------------- pydicom's test files --
def test_ct_small_through_the_rescale():
    path = bundled("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = (hu - hu.min()) / (hu.max() - hu.min())
    out = read_dicom(path)
    assert out.shape == (128, 128) and probe_image(path) == (128, 128, 1)
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_mr_small_window_and_its_lossless_compressions():
    out = read_dicom(bundled("MR_small.dcm"))  # window 600 / 1600
    raw = pydicom.dcmread(bundled("MR_small.dcm")).pixel_array
    expected = np.clip((raw - 599.5) / 1599 + 0.5, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-7)
    for name in (
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ):
        np.testing.assert_array_equal(read_dicom(bundled(name)), out, err_msg=name)


def test_rgb_secondary_captures_in_every_encoding():
    reference = read_dicom(bundled("SC_rgb_rle.dcm"))  # RLE lossless, RGB
    band_centres = reference[5::10, 50] * 255
    np.testing.assert_array_equal(band_centres, np.array(SC_RGB_BANDS, np.float32))
    assert probe_dicom(bundled("SC_rgb_rle.dcm")) == (100, 100, 3)
    for name, tolerance in [
        ("SC_rgb_jpeg_gdcm.dcm", 0),  # JPEG lossless
        ("SC_rgb_gdcm_KY.dcm", 0),  # JPEG 2000
        ("SC_ybr_full_422_uncompressed.dcm", 6),  # YBR_FULL_422 -> RGB
        ("SC_rgb_jpeg_dcmtk.dcm", 6),  # JPEG baseline, YBR_FULL
        ("SC_rgb_dcmtk_+eb+cr.dcm", 1),  # JPEG baseline, RGB
    ]:
        out = read_dicom(bundled(name))
        assert out.shape == (100, 100, 3), name
        np.testing.assert_allclose(out, reference, atol=tolerance / 255 + 1e-6)


def test_palette_colour_is_expanded_to_rgb():
    path = bundled("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    expected = pydicom.pixels.apply_color_lut(ds.pixel_array, ds) / 65535
    assert probe_image(path) == (350, 800, 3)
    np.testing.assert_allclose(read_dicom(path), expected, atol=1e-7)
    assert len(np.unique(read_dicom(path).reshape(-1, 3), axis=0)) > 50


def test_lossy_and_12_bit_compressed_grayscale():
    for name, shape in [
        ("JPGExtended.dcm", (1024, 256)),  # JPEG extended, 12 bit
        ("JPEG2000.dcm", (1024, 256)),  # JPEG 2000 lossy
        ("693_J2KI.dcm", (512, 512)),
    ]:
        out = read_dicom(bundled(name))
        assert out.shape == shape and out.dtype == np.float32
        assert out.min() == 0 and out.max() == 1 and out.std() > 0.05


def test_a_dicom_file_is_found_by_its_preamble(tmp_path):
    copy = tmp_path / "IM0001"
    shutil.copy(bundled("CT_small.dcm"), copy)
    upper = tmp_path / "scan.DCM"
    shutil.copy(bundled("CT_small.dcm"), upper)
    assert is_dicom(copy) and is_dicom(upper)
    np.testing.assert_array_equal(read_dicom(copy), read_dicom(bundled("CT_small.dcm")))
    assert probe_image(copy) == probe_image(upper) == (128, 128, 1)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    assert not is_dicom(tmp_path / "a.png")


# -------------------------------------------------------------- bad files --
def test_truncated_files_name_the_file():
    path = bundled("MR_truncated.dcm")
    for read in (probe_image, verify_image, read_dicom):
        with pytest.raises(ValueError, match="MR_truncated.dcm' is truncated"):
            read(path)


def test_truncated_native_and_compressed_files(tmp_path):
    for name in ("CT_small.dcm", "MR_small_jp2klossless.dcm"):
        data = open(bundled(name), "rb").read()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) - 500])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns of the early end
            with pytest.raises(ValueError, match=f"cut_{name}' is truncated"):
                probe_image(cut)


def test_a_file_without_pixel_data():
    with pytest.raises(ValueError, match=r"test-SR.dcm' has no pixel data.*SR"):
        probe_image(bundled("test-SR.dcm"))


def test_multi_frame_files_are_refused(tmp_path):
    frames = np.zeros((3, 8, 8), np.uint8)
    path = write_dicom(tmp_path / "cine.dcm", frames)
    for read in (probe_image, read_dicom):
        with pytest.raises(ValueError, match="cine.dcm' has 3 frames"):
            read(path)
    with pytest.raises(ValueError, match="has 2 frames"):
        probe_image(bundled("SC_rgb_rle_2frame.dcm"))


def test_not_a_dicom_file_despite_its_name(tmp_path):
    fake = tmp_path / "fake.dcm"
    fake.write_text("a text file, not an image")
    png = tmp_path / "png.dcm"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    for path in (fake, png):
        with pytest.raises(
            ValueError, match=f"Not a readable DICOM file: .*{path.name}"
        ):
            probe_image(path)


def test_a_compressed_file_without_its_decoder(monkeypatch):
    decoder = pydicom.pixels.get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})  # no plugin installed
    path = bundled("MR_small_jp2klossless.dcm")
    for read in (probe_image, read_dicom):
        with pytest.raises(ValueError) as info:
            read(path)
        message = str(info.value)
        assert "MR_small_jp2klossless.dcm" in message
        assert "pylibjpeg-openjpeg" in message
        assert 'pip install "skdiffmic[dicom]"' in message


def test_dicom_without_pydicom_installed(monkeypatch, no_training, tmp_path):
    path = bundled("CT_small.dcm")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom fails
    with pytest.raises(
        ValueError, match=r'X\[1\]: .*CT_small.dcm.*"skdiffmic\[dicom\]"'
    ):
        tiny().fit([tmp_path / "a.png", path], [0, 1])


def test_estimator_names_the_bad_file_before_training(no_training, tmp_path):
    good = write_dicom(tmp_path / "good.dcm", np.eye(16, dtype=np.uint8))
    Image.fromarray(np.eye(16, dtype=np.uint8)).save(tmp_path / "good.png")
    cases = {
        "MR_truncated.dcm": "truncated",
        "test-SR.dcm": "no pixel data",
        "SC_rgb_rle_2frame.dcm": "2 frames",
    }
    for name, problem in cases.items():
        X = [good, tmp_path / "good.png", bundled(name), good]
        with pytest.raises(ValueError, match=rf"X\[2\]: .*{name}.*{problem}"):
            tiny().fit(X, [0, 1, 0, 1])


def test_a_decode_failure_while_loading_names_the_index(tmp_path, monkeypatch):
    decoder = pydicom.pixels.get_decoder(JPEG2000Lossless)
    source = PathImages(
        [
            write_dicom(tmp_path / "a.dcm", np.eye(8, dtype=np.uint8)),
            bundled("MR_small_jp2klossless.dcm"),
        ],
        size=8,
    )
    monkeypatch.setattr(decoder, "_available", {})  # lost after the probe
    with pytest.raises(ValueError, match=r"X\[1\]: .*pylibjpeg-openjpeg"):
        source.load([0, 1])


# ------------------------------------------------ estimator and loaders --
def gray_images(n=12, size=16, seed=0):
    """uint8 images holding both 0 and 255, so min..max scaling is x / 255."""
    X = np.random.default_rng(seed).integers(0, 256, (n, size, size), np.uint8)
    X[:, 0, 0], X[:, -1, -1] = 0, 255
    return X


def test_fit_and_predict_on_dicom_paths_equal_the_array(tmp_path):
    X = gray_images()
    y = np.array(["benign", "malignant"] * 6)
    paths = [
        # 16-bit CT-like storage: modality values x - 1024 through the rescale
        write_dicom(
            tmp_path / f"{i}.dcm",
            image.astype(np.uint16),
            RescaleSlope=1,
            RescaleIntercept=-1024,
        )
        for i, image in enumerate(X)
    ]
    from_files = tiny(max_epochs=1, guidance_epochs=1).fit(paths, y)
    from_array = tiny(max_epochs=1, guidance_epochs=1).fit(X, y)
    assert from_files.image_shape_ == from_array.image_shape_ == (16, 16, 1)
    np.testing.assert_allclose(
        from_files.predict_proba(paths), from_array.predict_proba(X), atol=1e-6
    )
    np.testing.assert_array_equal(from_files.predict(paths), from_array.predict(X))

    # Mixed PNG and DICOM paths, the same pixels, at predict time.
    pngs = []
    for i in range(0, 12, 2):
        Image.fromarray(X[i]).save(tmp_path / f"{i}.png")
        pngs.append(tmp_path / f"{i}.png")
    mixed = [pngs[i // 2] if i % 2 == 0 else paths[i] for i in range(12)]
    np.testing.assert_allclose(
        from_files.predict_proba(mixed), from_array.predict_proba(X), atol=1e-6
    )


def test_mixed_png_and_dicom_follow_the_grayscale_rgb_rule(tmp_path):
    gray = gray_images(2, size=100)
    png_gray = tmp_path / "gray.png"
    Image.fromarray(gray[0]).save(png_gray)
    dcm_gray = write_dicom(tmp_path / "gray.dcm", gray[1])
    rgb = bundled("SC_rgb_rle.dcm")
    assert PathImages([png_gray, dcm_gray]).channels == 1
    X = read_images([png_gray, dcm_gray, rgb], size=100)
    assert X.shape == (3, 100, 100, 3)
    np.testing.assert_array_equal(X[0], np.repeat(gray[0][..., None], 3, -1))
    np.testing.assert_array_equal(X[1], np.repeat(gray[1][..., None], 3, -1))
    np.testing.assert_array_equal(X[2, 5::10, 50], np.array(SC_RGB_BANDS))


def test_load_image_folder_reads_and_verifies_dicom(tmp_path):
    (tmp_path / "ct").mkdir()
    (tmp_path / "mr").mkdir()
    write_dicom(tmp_path / "ct/a.dcm", np.eye(8, dtype=np.uint8))
    shutil.copy(bundled("MR_small.dcm"), tmp_path / "mr/b.dcm")
    Image.fromarray(np.eye(8, dtype=np.uint8)).save(tmp_path / "mr/c.png")
    bunch = load_image_folder(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in bunch.filenames] == [
        "a.dcm",
        "b.dcm",
        "c.png",
    ]
    assert bunch.target.tolist() == [0, 1, 1]
    shutil.copy(bundled("MR_truncated.dcm"), tmp_path / "mr/d.dcm")
    with pytest.raises(ValueError, match=r"1 of 4 image files.*d.dcm' is truncated"):
        load_image_folder(tmp_path)
