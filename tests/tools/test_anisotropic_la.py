"""tools/anisotropic_la.py on a tiny fake LA folder, and on two real LA cases from LA_ROOT
(the folder of the LA case folders) when it is set."""
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import write_case
from dataloaders.msd import read_dataset_json, read_msd_case, read_msd_spacing
from tools import anisotropic_la  # tools/ is a namespace package: importable, so its workers can be pickled

CASES = "2018LA_Seg_Training Set"
SHAPE = (40, 32, 16)  # voxels of 0.625 mm: 20 x 16 x 2 at 1.25 x 1.25 x 5 mm


def fake_la(root: Path, ids=("case_a", "case_b", "case_c")) -> Path:
    """An LA folder: h5 cases whose image is a ramp along x and whose label is a box."""
    x = np.arange(SHAPE[0], dtype=np.float32)[:, None, None]
    for number, case_id in enumerate(ids):
        label = np.zeros(SHAPE, np.uint8)
        label[8 + number:30, 6:26, 2:14] = 1
        write_case(root / CASES, case_id, np.broadcast_to(x / 10 + number, SHAPE), label)
    (root / "train.list").write_text("\n".join(ids) + "\n")
    (root / "dev_train.list").write_text("\n".join(ids[:2]) + "\n")
    (root / "dev_val.list").write_text(ids[2] + "\n")
    return root


def test_converts_to_thick_slices(tmp_path, capsys):
    source, out = fake_la(tmp_path / "LA"), tmp_path / "LA_thick"
    anisotropic_la.main([str(source), str(out)])
    printed = capsys.readouterr().out
    assert "case_a  40x32x16 -> 20x16x2" in printed and "3 written, 0 already there" in printed

    info = read_dataset_json(out)
    assert info["modality"] == {0: "MRI"} and info["labels"] == {0: "background", 1: "left atrium"}
    assert "1.25 x 1.25 x 5 mm" in info["description"] and info["name"] == "LA thick slices"
    for name in ("train.list", "dev_train.list", "dev_val.list"):
        assert (out / name).read_text() == (source / name).read_text()
    for number, case_id in enumerate(["case_a", "case_b", "case_c"]):
        image = nib.load(out / "imagesTr" / f"{case_id}.nii.gz")
        label = nib.load(out / "labelsTr" / f"{case_id}.nii.gz")
        assert image.shape == label.shape == (20, 16, 2)
        assert image.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
        assert image.header.get_xyzt_units()[0] == "mm"
        assert np.allclose(image.header.get_zooms(), (1.25, 1.25, 5.0))
        assert np.allclose(np.diag(image.affine)[:3], (1.25, 1.25, 5.0))
        assert read_msd_spacing(out, case_id) == pytest.approx((1.25, 1.25, 5.0))
        values = np.asarray(image.dataobj)
        assert values.min() >= number and values.max() <= 3.9 + number  # linear: within the input's range
        assert set(np.unique(np.asarray(label.dataobj))) == {0, 1}
    _, label = read_msd_case(out, "case_a", num_classes=2)  # the toolkit's own reader takes it
    assert label.sum() > 0
    assert not list(out.rglob(".*"))  # no temporary file left


def test_second_run_skips_and_case_folder_input(tmp_path, capsys):
    source, out = fake_la(tmp_path / "LA"), tmp_path / "LA_thick"
    anisotropic_la.main([str(source / CASES), str(out), "--lists", "dev_train.list", "--jobs", "1"])
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["case_a.nii.gz", "case_b.nii.gz"]
    written = (out / "imagesTr" / "case_a.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    anisotropic_la.main([str(source / CASES), str(out), "--jobs", "1"])  # all three lists
    printed = capsys.readouterr().out
    assert "case_a  40x32x16 -> 20x16x2  (already written)" in printed
    assert "3 cases (1 written, 2 already there)" in printed
    assert (out / "imagesTr" / "case_a.nii.gz").stat().st_mtime_ns == written


@pytest.mark.parametrize("broken", ["folder", "h5"])
def test_missing_input_is_one_line(tmp_path, capsys, broken):
    source = fake_la(tmp_path / "LA")
    if broken == "h5":
        (source / CASES / "case_b" / "mri_norm2.h5").unlink()
    with pytest.raises(SystemExit) as exit_info:
        anisotropic_la.main([str(tmp_path / "nowhere" if broken == "folder" else source), str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("error: ") and error.count("\n") == 1
    assert ("nowhere" if broken == "folder" else "case_b") in error


LA_ROOT = os.environ.get("LA_ROOT")


@pytest.mark.skipif(not LA_ROOT or not Path(LA_ROOT).is_dir(), reason="LA_ROOT (the LA h5 case folders) is not set")
def test_real_la_cases(tmp_path, capsys):
    ids = sorted(p.name for p in Path(LA_ROOT).iterdir() if (p / "mri_norm2.h5").is_file())[:2]
    (tmp_path / "two.list").write_text("\n".join(ids) + "\n")
    out = tmp_path / "LA_thick"
    anisotropic_la.main([LA_ROOT, str(out), "--lists", str(tmp_path / "two.list")])
    for case_id in ids:
        image, label = read_msd_case(out, case_id, num_classes=2)
        assert image.shape[2] == 11  # 88 slices of 0.625 mm are 55 mm: 11 of 5 mm
        assert 0.02 < label.mean() < 0.25  # foreground is 4 % to 19 % of the original voxels
        assert read_msd_spacing(out, case_id) == pytest.approx((1.25, 1.25, 5.0))
    assert (out / "two.list").read_text() == (tmp_path / "two.list").read_text()
