"""dataloaders/msd.py on small NIfTI files written here, and on real MSD Hippocampus cases
from HIPPO_ROOT when it is set."""
import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dataloaders.case_lists import read_case_list
from dataloaders.datasets import data_folder
from dataloaders.la_heart import LAHeart
from dataloaders.msd import (case_paths, list_case_ids, read_dataset_json, read_msd_case,
                             read_msd_shape, read_msd_spacing)
from utils.errors import UserError

LABELS = {"0": "background", "1": "anterior", "2": "posterior"}


def write_nii(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    image.header.set_zooms(tuple(spacing) + image.header.get_zooms()[3:])
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, path)
    return path


def write_dataset_json(root: Path, labels=None, **extra) -> None:
    root.mkdir(parents=True, exist_ok=True)
    info = {"name": "Tiny", "modality": {"0": "MRI"}, "labels": labels or LABELS, **extra}
    (root / "dataset.json").write_text(json.dumps(info))


def make_case(root: Path, case_id: str, shape, image_dtype=np.float32, scale=1.0, seed=0,
              spacing=(1.0, 1.0, 1.0), num_classes=3):
    rng = np.random.default_rng(seed)
    image = (rng.uniform(0, 1, shape) * scale).astype(image_dtype)
    label = rng.integers(0, num_classes, shape).astype(np.uint8)
    write_nii(root / "imagesTr" / f"{case_id}.nii.gz", image, spacing)
    write_nii(root / "labelsTr" / f"{case_id}.nii.gz", label, spacing)
    return image, label


@pytest.fixture
def msd(tmp_path) -> Path:
    """Three cases: uint8 with a small range, float32 with a huge range, and an anisotropic one."""
    root = tmp_path / "Tiny"
    write_dataset_json(root)
    make_case(root, "tiny_001", (12, 10, 8), np.uint8, scale=112, seed=1)
    make_case(root, "tiny_002", (9, 11, 7), np.float32, scale=1.7e6, seed=2)
    make_case(root, "tiny_003", (8, 8, 6), np.float32, scale=3.0, seed=3, spacing=(0.5, 0.75, 2.0))
    return root


def test_dataset_json(msd):
    info = read_dataset_json(msd)
    assert info["labels"] == {0: "background", 1: "anterior", 2: "posterior"}
    assert info["num_classes"] == 3
    assert info["modality"] == {0: "MRI"}
    assert info["name"] == "Tiny"


def test_dataset_json_nnunet_v2(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1, "TZ": 2},
         "numTraining": 2, "file_ending": ".nii.gz"}))
    info = read_dataset_json(tmp_path)
    assert info["labels"] == {0: "background", 1: "PZ", 2: "TZ"}
    assert info["num_classes"] == 3 and info["modality"] == {0: "T2", 1: "ADC"}


@pytest.mark.parametrize("content, message", [
    (None, "dataset.json not found in"),
    ("{not json", "is not valid JSON"),
    (json.dumps({"name": "x"}), "has no 'labels' entry"),
    (json.dumps({"labels": []}), "'labels' must be a non-empty mapping"),
])
def test_dataset_json_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(UserError, match=message) as err:
        read_dataset_json(tmp_path)
    assert "\n" not in str(err.value)


def test_case_ids_and_paths(msd, tmp_path):
    (msd / "imagesTr" / "._tiny_001.nii.gz").write_bytes(b"macOS resource fork")  # as in the MSD tar
    (msd / "imagesTr" / "notes.txt").write_text("not an image")
    assert list_case_ids(msd) == ["tiny_001", "tiny_002", "tiny_003"]
    listed = tmp_path / "dev.list"
    listed.write_text("tiny_003\ntiny_001\n")
    assert list_case_ids(msd, listed) == ["tiny_003", "tiny_001"]
    assert case_paths(msd, "tiny_002") == (msd / "imagesTr" / "tiny_002.nii.gz", msd / "labelsTr" / "tiny_002.nii.gz")
    with pytest.raises(UserError, match="not found"):
        list_case_ids(tmp_path / "nowhere")


def test_nnunet_v2_channel_suffix(tmp_path):
    root = tmp_path / "v2"
    write_dataset_json(root)
    write_nii(root / "imagesTr" / "case_7_0000.nii.gz", np.arange(60, dtype=np.float32).reshape(5, 4, 3))
    write_nii(root / "labelsTr" / "case_7.nii.gz", np.zeros((5, 4, 3), np.uint8))
    assert list_case_ids(root) == ["case_7"]
    image, label = read_msd_case(root, "case_7")
    assert image.shape == label.shape == (5, 4, 3)


@pytest.mark.parametrize("case_id", ["tiny_001", "tiny_002", "tiny_003"])
def test_read_case(msd, case_id):
    raw = np.asanyarray(nib.load(msd / "imagesTr" / f"{case_id}.nii.gz").dataobj).astype(np.float64)
    raw_label = np.asanyarray(nib.load(msd / "labelsTr" / f"{case_id}.nii.gz").dataobj)
    image, label = read_msd_case(msd, case_id)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert image.shape == label.shape == raw.shape
    assert abs(float(image.mean())) < 1e-5 and abs(float(image.std()) - 1) < 1e-4
    np.testing.assert_allclose(image, (raw - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(label, raw_label)
    assert set(np.unique(label)) <= {0, 1, 2}


def test_uint8_and_float32_inputs_both_normalised(msd):
    assert nib.load(msd / "imagesTr" / "tiny_001.nii.gz").get_data_dtype() == np.uint8
    assert nib.load(msd / "imagesTr" / "tiny_002.nii.gz").get_data_dtype() == np.float32
    small, _ = read_msd_case(msd, "tiny_001", num_classes=3)
    huge, _ = read_msd_case(msd, "tiny_002", num_classes=3)
    for image in (small, huge):
        assert abs(float(image.mean())) < 1e-5 and abs(float(image.std()) - 1) < 1e-4
        assert np.abs(image).max() < 5


def test_float_labels_accepted(msd):
    # Some MSD label files are float32 holding 0.0/1.0/2.0 (hippocampus_003).
    write_nii(msd / "labelsTr" / "tiny_003.nii.gz", np.full((8, 8, 6), 2.0, np.float32), (0.5, 0.75, 2.0))
    _, label = read_msd_case(msd, "tiny_003")
    assert label.dtype == np.uint8 and set(np.unique(label)) == {2}


def test_4d_image_takes_channel(tmp_path):
    root = tmp_path / "multi"
    write_dataset_json(root, modality={"0": "FLAIR", "1": "T1w"})
    channels = np.stack([np.arange(60, dtype=np.float32).reshape(5, 4, 3) * (c + 1) ** 3 for c in range(2)], -1)
    channels[..., 1] = np.random.default_rng(0).normal(size=(5, 4, 3))
    write_nii(root / "imagesTr" / "m_1.nii.gz", channels)
    write_nii(root / "labelsTr" / "m_1.nii.gz", np.ones((5, 4, 3), np.uint8))
    first, label = read_msd_case(root, "m_1")
    assert first.shape == label.shape == (5, 4, 3)
    expected = channels[..., 0].astype(np.float64)
    np.testing.assert_allclose(first, (expected - expected.mean()) / expected.std(), atol=1e-5)
    second, _ = read_msd_case(root, "m_1", channel=1)
    assert not np.allclose(first, second)
    with pytest.raises(UserError, match="channel 2 requested but the image has 2"):
        read_msd_case(root, "m_1", channel=2)


def test_spacing_and_shape(msd):
    assert read_msd_spacing(msd, "tiny_001") == (1.0, 1.0, 1.0)
    assert read_msd_spacing(msd, "tiny_003") == (0.5, 0.75, 2.0)
    assert read_msd_shape(msd, "tiny_002") == (9, 11, 7)


def test_msd_folder_trains_through_the_generic_dataset(msd):
    """An MSD folder is read by the same dataset class as LA, with the reader its DataFolder gives."""
    data = data_folder(msd)
    assert data.kind == "msd" and data.num_classes == 3 and data.lists_dir == msd
    dataset = LAHeart(msd, ["tiny_002", "tiny_001"], read=data.read)
    sample = dataset[1]
    assert sample["case"] == "tiny_001" and sample["image"].shape == sample["label"].shape == (12, 10, 8)
    seen = []
    dataset = LAHeart(msd, ["tiny_001"], transform=lambda s, rng: seen.append(rng) or s, read=data.read)
    dataset[0]
    assert seen == [dataset.rng]


# ------------------------------------------------------------------ bad inputs
def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_image(msd):
    (msd / "imagesTr" / "tiny_002.nii.gz").unlink()
    with pytest.raises(UserError, match="image file not found") as err:
        read_msd_case(msd, "tiny_002")
    assert "tiny_002.nii.gz" in one_line(err)


def test_missing_label(msd):
    (msd / "labelsTr" / "tiny_002.nii.gz").unlink()
    with pytest.raises(UserError, match="label file not found") as err:
        read_msd_case(msd, "tiny_002")
    assert str(msd / "labelsTr" / "tiny_002.nii.gz") in one_line(err)


def test_not_nifti(msd):
    bad = msd / "imagesTr" / "tiny_001.nii.gz"
    bad.write_bytes(gzip.compress(b"this is not a NIfTI file" * 10))
    with pytest.raises(UserError, match="cannot read") as err:
        read_msd_case(msd, "tiny_001")
    assert str(bad) in one_line(err)


def test_truncated_nifti(msd):
    path = msd / "imagesTr" / "tiny_002.nii.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UserError, match="cannot read") as err:
        read_msd_case(msd, "tiny_002")
    assert str(path) in one_line(err)


def test_shape_mismatch(msd):
    write_nii(msd / "labelsTr" / "tiny_001.nii.gz", np.zeros((12, 10, 7), np.uint8))
    with pytest.raises(UserError, match=r"label shape \(12, 10, 7\) differs from image shape \(12, 10, 8\)") as err:
        read_msd_case(msd, "tiny_001")
    assert "tiny_001.nii.gz" in one_line(err)


@pytest.mark.parametrize("bad_value, message", [(3, r"label values \[3\] are outside the 3 declared classes"),
                                                (-1, r"label values \[-1\] are outside"),
                                                (1.5, "label values must be integers")])
def test_label_outside_classes(msd, bad_value, message):
    label = np.zeros((12, 10, 8), np.float32 if isinstance(bad_value, float) else np.int16)
    label[3, 4, 5] = bad_value
    write_nii(msd / "labelsTr" / "tiny_001.nii.gz", label)
    with pytest.raises(UserError, match=message) as err:
        read_msd_case(msd, "tiny_001")
    assert str(msd / "labelsTr" / "tiny_001.nii.gz") in one_line(err)


def test_num_classes_argument_overrides_dataset_json(msd):
    with pytest.raises(UserError, match="outside the 2 declared classes"):
        read_msd_case(msd, "tiny_001", num_classes=2)


def test_constant_or_nan_image(msd):
    write_nii(msd / "imagesTr" / "tiny_003.nii.gz", np.full((8, 8, 6), 7, np.float32), (0.5, 0.75, 2.0))
    with pytest.raises(UserError, match="constant"):
        read_msd_case(msd, "tiny_003")
    nan = np.ones((8, 8, 6), np.float32)
    nan[0, 0, 0] = np.nan
    write_nii(msd / "imagesTr" / "tiny_003.nii.gz", nan, (0.5, 0.75, 2.0))
    with pytest.raises(UserError, match="NaN"):
        read_msd_case(msd, "tiny_003")


# ------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def hippo_root() -> Path:
    root = os.environ.get("HIPPO_ROOT")
    if not root or not (Path(root) / "dataset.json").is_file():
        pytest.skip("set HIPPO_ROOT to the MSD Hippocampus folder (with dataset.json) to run this test")
    return Path(root)


def test_real_hippocampus(hippo_root):
    info = read_dataset_json(hippo_root)
    assert info["num_classes"] == 3 and info["labels"][0].lower() == "background"
    listed = hippo_root / "dev_train.list"
    ids = read_case_list(listed) if listed.is_file() else list_case_ids(hippo_root)
    assert set(ids[:3]) <= set(list_case_ids(hippo_root))
    for case_id in ids[:3]:
        image, label = read_msd_case(hippo_root, case_id, num_classes=info["num_classes"])
        assert image.shape == label.shape == read_msd_shape(hippo_root, case_id)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert label.max() <= 2 and label.min() >= 0 and label.any()
        assert abs(float(image.mean())) < 1e-4 and abs(float(image.std()) - 1) < 1e-3
        assert read_msd_spacing(hippo_root, case_id) == pytest.approx((1.0, 1.0, 1.0))
