"""dataloaders/synthetic_ct.py: an MSD folder of CT-like cases in Hounsfield units."""
import nibabel as nib
import numpy as np
import pytest

from dataloaders.case_lists import read_case_list
from dataloaders.msd import has_label, list_case_ids, read_dataset_json, read_msd_spacing
from dataloaders.synthetic_ct import generate_ct_dataset


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    return generate_ct_dataset(tmp_path_factory.mktemp("ct"), cases=6, labeled=2, val_cases=2, seed=3)


def voxels(path):
    image = nib.load(path)
    return image, np.asarray(image.dataobj)


def test_layout_lists_and_labels(ct):
    info = read_dataset_json(ct)
    assert info["modality"] == {0: "CT"} and info["labels"] == {0: "background", 1: "organ"}
    train, val = read_case_list(ct / "train.list"), read_case_list(ct / "val.list")
    assert train == [f"ct_{i:03d}" for i in range(6)] and val == ["ct_006", "ct_007"]
    assert list_case_ids(ct) == train + val
    assert [has_label(ct, c) for c in train] == [True, True, False, False, False, False]
    assert all(has_label(ct, c) for c in val)


def test_hounsfield_units_and_spacing(ct):
    shapes = set()
    for case_id in list_case_ids(ct):
        image, hu = voxels(ct / "imagesTr" / f"{case_id}.nii.gz")
        assert image.get_data_dtype() == np.int16 and image.header.get_xyzt_units()[0] == "mm"
        assert read_msd_spacing(ct, case_id) == pytest.approx((0.8, 0.8, 5.0))
        assert 10 <= hu.shape[2] <= 14 and all(55 <= s <= 73 for s in hu.shape[:2])
        shapes.add(hu.shape)
        assert hu.min() >= -1024 and np.mean(hu < -900) > 0.3  # air around the body
        assert np.mean((hu > -150) & (hu < -50)) > 0.05  # fat
        assert np.mean((hu > 0) & (hu < 100)) > 0.12  # soft tissue
        assert 700 < hu.max() < 1600 and np.sum(hu > 400) > 100  # bone
    assert len(shapes) > 4  # the cases are not all alike


def test_organ_is_not_a_threshold(ct):
    for case_id in ("ct_000", "ct_001", "ct_006", "ct_007"):
        _, hu = voxels(ct / "imagesTr" / f"{case_id}.nii.gz")
        _, label = voxels(ct / "labelsTr" / f"{case_id}.nii.gz")
        assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1} and label.shape == hu.shape
        assert 0.01 < label.mean() < 0.08
        assert 50 < hu[label == 1].mean() < 90  # 60-80 HU, plus noise and partial volume at the edges
        # As many unlabeled voxels as labeled ones are just as bright (the neighbouring organs).
        low, high = np.percentile(hu[label == 1], [10, 90])
        assert np.sum((hu >= low) & (hu <= high) & (label == 0)) > np.sum(label)


def test_same_seed_same_data(tmp_path):
    a = generate_ct_dataset(tmp_path / "a", cases=2, labeled=1, val_cases=0, seed=5, shape=(32, 32, 8))
    b = generate_ct_dataset(tmp_path / "b", cases=2, labeled=1, val_cases=0, seed=5, shape=(32, 32, 8))
    assert not (a / "val.list").exists()
    for case_id in ("ct_000", "ct_001"):
        path = f"imagesTr/{case_id}.nii.gz"
        assert np.array_equal(voxels(a / path)[1], voxels(b / path)[1])
