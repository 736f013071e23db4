"""The bad-input battery: each broken dataset is real files on disk, and each is refused in one
line that names the file, read directly (a ``UserError``) and through a script (exit code 2
and a single ``error:`` line) -- header voxel sizes of 0, < 0 or NaN, cases too far from the
planned voxel size, a CT dataset without foreground, a label off its image's grid, label
indices with a gap, scans with NaN voxels, and bad --strides / --patch_budget."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import log_lines, run_script
from dataloaders.datasets import data_folder
from dataloaders.msd import read_dataset_json, read_msd_case, read_msd_spacing
from dataloaders.synthetic_ct import generate_ct_dataset
from planning.fingerprint import data_fingerprint
from planning.planner import make_plan
from training.arguments import parse_strides
from utils.errors import UserError

nib = pytest.importorskip("nibabel")

SMALL = ["--batch_size", "4", "--labeled_bs", "2", "--log_every", "1", "--save_every", "100", "--val_every", "100",
         "--gpu", "-1"]
SPACING = (1.0, 1.5, 3.0)  # mm
SHAPE = (24, 24, 8)  # voxels


def write_nii(path: Path, array, spacing=SPACING, origin=(0.0, 0.0, 0.0), pixdim=None) -> Path:
    """``array`` as NIfTI with a diagonal affine of ``spacing`` at ``origin``; ``pixdim`` (three
    values) is written into the header as it is, after the image is made (nibabel's set_zooms
    refuses values <= 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = origin
    image = nib.Nifti1Image(np.asarray(array), affine)
    image.header.set_xyzt_units("mm", "sec")
    if pixdim is not None:
        image.header["pixdim"][1:4] = pixdim
    nib.save(image, path)
    return path


def blob_case(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    radius = sum(((a - n / 2) / (n / 4)) ** 2 for a, n in zip((x, y, z), shape))
    label = (radius < 1).astype(np.uint8)
    return (100 + 80 * label + rng.normal(0, 10, shape)).astype(np.float32), label


def msd_folder(root: Path, *, cases=5, labeled=3, shape=SHAPE, spacing=SPACING, modality="MRI", labels=None,
               seed=0) -> list[str]:
    """An MSD folder of ``cases`` blob cases (the first ``labeled`` with labels); its case IDs."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    info = {"name": "tiny", "labels": labels or {"0": "background", "1": "blob"}}
    if modality:
        info["modality"] = {"0": modality}
    (root / "dataset.json").write_text(json.dumps(info))
    ids = [f"case_{i:02d}" for i in range(cases)]
    for number, case_id in enumerate(ids):
        image, label = blob_case(rng, (shape[0] + number % 3, shape[1], shape[2]))
        write_nii(root / "imagesTr" / f"{case_id}.nii.gz", image, spacing)
        if number < labeled:
            write_nii(root / "labelsTr" / f"{case_id}.nii.gz", label, spacing)
    return ids


def rewrite(path: Path, **geometry) -> Path:
    """``path`` written again with its own voxels and the ``geometry`` of ``write_nii``."""
    return write_nii(path, np.asarray(nib.load(path).dataobj), **geometry)


def script_error(proc, *, exit_code=2) -> str:
    """The one ``error:`` line of a script that refused its input (no traceback); the lines
    after it, if any, are the indented problems of a data check."""
    assert proc.returncode == exit_code, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\n"
                                          f"stderr:\n{proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def one_line(proc) -> str:
    """The whole stderr of a script that refused its input: one ``error:`` line, exit code 2."""
    line = script_error(proc)
    assert proc.stderr.strip() == line, proc.stderr
    return line


def check_data(root: Path, cwd: Path, *extra):
    return run_script("train_mean_teacher.py", ["--root_path", root, "--check_data", *extra, *SMALL], cwd)


def no_run_folder(cwd: Path) -> bool:
    return not list((cwd / "model").glob("*/*/log.txt"))


# --- the header's voxel size ----------------------------------------------------------------

# nibabel's loader would read 0 as 1 and -1.5 as 1.5 (with a log line): the file's own values are checked
BAD_PIXDIM = [pytest.param(0.0, id="zero"), pytest.param(-1.5, id="negative"), pytest.param(float("nan"), id="nan")]


@pytest.mark.parametrize("value", BAD_PIXDIM)
def test_a_header_voxel_size_that_is_not_positive_is_named(tmp_path, value):
    ids = msd_folder(tmp_path / "data")
    bad = rewrite(tmp_path / "data" / "imagesTr" / f"{ids[1]}.nii.gz", pixdim=[1.0, value, 3.0])
    with pytest.raises(UserError, match="not three positive numbers") as err:
        read_msd_spacing(tmp_path / "data", ids[1])
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value", BAD_PIXDIM)
def test_a_header_voxel_size_that_is_not_positive_stops_check_data(tmp_path, value):
    ids = msd_folder(tmp_path / "data")
    bad = rewrite(tmp_path / "data" / "imagesTr" / f"{ids[4]}.nii.gz", pixdim=[1.0, value, 3.0])  # unlabeled
    line = script_error(check_data(tmp_path / "data", tmp_path))
    assert str(bad) in line and "not three positive numbers" in line


# --- voxel sizes far from the plan's --------------------------------------------------------

def far_spacings(root: Path) -> list[Path]:
    """Six cases at 1 mm, one of them with 5 mm slices, another with 0.2 mm voxels along X:
    both more than 4x away from the median; returns those two files."""
    ids = msd_folder(root, cases=6, spacing=(1.0, 1.0, 1.0), shape=(24, 24, 12))
    return [rewrite(root / "imagesTr" / f"{ids[3]}.nii.gz", spacing=(1.0, 1.0, 5.0)),
            rewrite(root / "imagesTr" / f"{ids[5]}.nii.gz", spacing=(0.2, 1.0, 1.0))]


def test_cases_more_than_4x_from_the_planned_voxel_size_are_listed(tmp_path):
    far = far_spacings(tmp_path / "data")
    data = data_folder(tmp_path / "data", "case")
    ids = [f"case_{i:02d}" for i in range(6)]
    fingerprint, _ = data_fingerprint(data, ids, ids[:3], cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="more than 4x away from the planned 1 x 1 x 1 mm") as err:
        make_plan(fingerprint)
    message = str(err.value)
    assert "2 case(s)" in message and all(str(f) in message for f in far) and "\n" not in message
    assert "1 x 1 x 5 mm" in message and "0.2 x 1 x 1 mm" in message
    assert "case_00" not in message  # the cases at the planned voxel size are not named

    line = one_line(check_data(tmp_path / "data", tmp_path))
    assert all(str(f) in line for f in far) and "more than 4x away" in line
    assert no_run_folder(tmp_path)


# --- CT without foreground, no modality, label indices with a gap ---------------------------

def test_a_ct_dataset_whose_labeled_cases_have_no_foreground_is_refused(tmp_path):
    root = generate_ct_dataset(tmp_path / "ct", cases=4, labeled=2, val_cases=0, shape=(32, 32, 8))
    for case_id in ("ct_000", "ct_001"):
        path = root / "labelsTr" / f"{case_id}.nii.gz"
        label = nib.load(path)
        write_nii(path, np.zeros(label.shape, np.uint8), label.header.get_zooms()[:3])
    data = data_folder(root, "case")
    ids = [f"ct_{i:03d}" for i in range(4)]
    with pytest.raises(UserError, match="says CT, but the 2 labeled case") as err:
        data_fingerprint(data, ids, ids[:2], cache_dir=tmp_path / "cache")
    assert str(root / "dataset.json") in str(err.value) and str(root / "labelsTr") in str(err.value)

    line = one_line(run_script("train_mean_teacher.py", ["--root_path", root, "--max_iterations", "1", *SMALL],
                               tmp_path))
    assert str(root / "dataset.json") in line and "labelsTr" in line and "no foreground voxel" in line
    assert no_run_folder(tmp_path)


def test_a_dataset_json_without_modality_trains_and_says_what_was_assumed(tmp_path):
    msd_folder(tmp_path / "plain", modality=None)
    checked = check_data(tmp_path / "plain", tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "names no modality" in checked.stdout and "assumed not CT" in checked.stdout
    proc = run_script("train_mean_teacher.py", ["--root_path", tmp_path / "plain", "--max_iterations", "2", *SMALL],
                      tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "model" / "plain_vnet_3_labeled" / "MT"
    assert [line for line in log_lines(run, "") if "names no modality" in line], (run / "log.txt").read_text()
    assert "intensities z-scored per case (plan)" in log_lines(run, "settings:")[0]
    assert (run / "iter_2.pth").is_file()


def test_dataset_json_labels_with_a_gap_are_refused(tmp_path):
    msd_folder(tmp_path / "gap", labels={"0": "background", "1": "liver", "3": "tumour"})
    with pytest.raises(UserError, match="2 is missing from") as err:
        read_dataset_json(tmp_path / "gap")
    assert str(tmp_path / "gap" / "dataset.json") in str(err.value)
    line = one_line(check_data(tmp_path / "gap", tmp_path))
    assert "2 is missing from [0, 1, 3]" in line and str(tmp_path / "gap" / "dataset.json") in line


# --- a label off its image's grid -----------------------------------------------------------

OFF_GRID = {"spacing": ({"spacing": (1.0, 1.5, 2.5)}, "voxel size 1 x 1.5 x 2.5 differs from its image's 1 x 1.5 x 3"),
            "origin": ({"origin": (4.0, 0.0, 0.0)}, "origin [4.0, 0.0, 0.0] differs from its image's [0.0, 0.0, 0.0]")}


@pytest.mark.parametrize("change", OFF_GRID)
def test_a_label_with_the_image_shape_but_another_grid_is_named(tmp_path, change):
    geometry, expected = OFF_GRID[change]
    ids = msd_folder(tmp_path / "data")
    label = rewrite(tmp_path / "data" / "labelsTr" / f"{ids[1]}.nii.gz", **geometry)
    with pytest.raises(UserError) as err:
        read_msd_case(tmp_path / "data", ids[1])
    assert str(err.value).startswith(f"{label}: {expected}") and "\n" not in str(err.value)

    proc = check_data(tmp_path / "data", tmp_path)
    line = script_error(proc)
    assert line.startswith("error: 1 problem(s) in the data"), proc.stderr
    assert f"case {ids[1]}: {label}: {expected}" in proc.stderr


def test_a_label_flipped_against_its_image_is_named(tmp_path):
    ids = msd_folder(tmp_path / "data")
    path = tmp_path / "data" / "labelsTr" / f"{ids[1]}.nii.gz"
    label = nib.load(path)
    affine = label.affine.copy()
    affine[0, 0] = -affine[0, 0]
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj), affine), path)
    with pytest.raises(UserError):
        read_msd_case(tmp_path / "data", ids[1])


# --- predict.py on a scan with NaN voxels ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A 2-iteration Mean Teacher checkpoint on 5 tiny MRI cases (own data, planned)."""
    cwd = tmp_path_factory.mktemp("nan_scan")
    msd_folder(cwd / "tiny")
    proc = run_script("train_mean_teacher.py", ["--root_path", cwd / "tiny", "--max_iterations", "2", *SMALL], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, cwd / "model" / "tiny_vnet_3_labeled" / "MT" / "iter_2.pth"


# How each kind of checkpoint reads scans (predict.input_rule): the run's own (MSD, z-score),
# a CT plan's clip and z-score, and the h5 runs' ("none": as stored, "case": z-scored).
CHECKPOINT_KINDS = {
    "msd": {},
    "msd_ct": {"intensity": {"scheme": "ct", "lower": 50.0, "upper": 200.0, "mean": 150.0, "std": 30.0}},
    "h5_none": {"data_kind": "h5", "normalize": "none"},
    "h5_case": {"data_kind": "h5", "normalize": "case"},
}


def checkpoint_of_kind(path: Path, kind: str, out: Path) -> Path:
    """The checkpoint at ``path`` changed to read scans as ``CHECKPOINT_KINDS[kind]`` says."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    change = dict(CHECKPOINT_KINDS[kind])
    if "normalize" in change:
        checkpoint["args"]["normalize"] = change.pop("normalize")
    checkpoint.update(change)
    torch.save(checkpoint, out)
    return out


def scans_with_nan(folder: Path, suffix: str) -> tuple[Path, Path]:
    """(a good NIfTI scan, the same scan with two NaN voxels as ``suffix``) in ``folder``."""
    sitk = pytest.importorskip("SimpleITK")
    image, _ = blob_case(np.random.default_rng(3), SHAPE)
    good = write_nii(folder / "good.nii.gz", image)
    image[3, 4, 5] = np.nan
    image[10, 10, 2] = np.nan
    bad = folder / f"holes{suffix}"
    if suffix.startswith(".nii"):
        write_nii(bad, image)
    else:
        scan = sitk.GetImageFromArray(image.transpose(2, 1, 0))
        scan.SetSpacing(SPACING)
        sitk.WriteImage(scan, str(bad))
    return good, bad


def predict_nan(cwd: Path, tmp_path: Path, checkpoint: Path, suffix: str):
    good, bad = scans_with_nan(tmp_path / "scans", suffix)
    proc = run_script("predict.py", ["-i", tmp_path / "scans", "-o", tmp_path / "out", "--checkpoint", checkpoint,
                                     "--gpu", "-1"], cwd)
    line = script_error(proc, exit_code=1)
    assert proc.stderr.strip() == line, proc.stderr
    assert line.startswith(f"error: {bad}: 2 voxel(s) are NaN or infinite"), proc.stderr
    assert "1 predicted, 1 failed, 0 skipped of 2 scan(s)" in proc.stdout
    assert (tmp_path / "out" / "good.nii.gz").is_file() and not (tmp_path / "out" / "holes.nii.gz").exists()
    assert nib.load(tmp_path / "out" / "good.nii.gz").shape == nib.load(good).shape


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_predict_names_a_scan_with_nan_voxels_and_goes_on(tiny_checkpoint, tmp_path, kind):
    """An NRRD scan: ITK keeps its NaN voxels (see the NIfTI test below)."""
    cwd, path = tiny_checkpoint
    predict_nan(cwd, tmp_path, checkpoint_of_kind(path, kind, tmp_path / "model.pth"), ".nrrd")


@pytest.mark.parametrize("kind", ["msd", "msd_ct"])
def test_predict_names_a_nifti_scan_with_nan_voxels(tiny_checkpoint, tmp_path, kind):
    cwd, path = tiny_checkpoint
    predict_nan(cwd, tmp_path, checkpoint_of_kind(path, kind, tmp_path / "model.pth"), ".nii.gz")


# --- bad --strides and --patch_budget -------------------------------------------------------

@pytest.mark.parametrize("values", [["2,2,3", "2,2,2", "2,2,2", "2,2,2"], ["2,2", "2,2", "2,2", "2,2"],
                                    ["2,2,2,2", "2,2,2", "2,2,2", "2,2,2"], ["0,2,2", "2,2,2", "2,2,2", "2,2,2"],
                                    ["a,2,2", "2,2,2", "2,2,2", "2,2,2"], ["-2,2,2", "2,2,2", "2,2,2", "2,2,2"]])
def test_parse_strides_refuses_anything_but_four_stages_of_three_ones_or_twos(values):
    with pytest.raises(UserError, match="--strides takes four stages of three factors") as err:
        parse_strides(values)
    assert " ".join(values) in str(err.value)


def test_parse_strides_reads_four_stages():
    assert parse_strides(["2,2,1", "2,2,1", "2,2,2", "1,1,1"]) == ((2, 2, 1), (2, 2, 1), (2, 2, 2), (1, 1, 1))
    assert parse_strides(None) is None


@pytest.mark.parametrize("flags, expected", [
    (["--strides", "2,2,3", "2,2,2", "2,2,2", "2,2,2"], "--strides takes four stages of three factors"),
    (["--strides", "2,2"], "argument --strides: expected 4 arguments"),
    (["--patch_budget", "0"], "--patch_budget must be at least 1 voxel, got 0"),
])
def test_bad_strides_and_patch_budget_flags_are_one_line(tmp_path, flags, expected):
    msd_folder(tmp_path / "data")
    line = one_line(run_script("train_mean_teacher.py", ["--root_path", tmp_path / "data", "--max_iterations", "1",
                                                         *flags, *SMALL], tmp_path))
    assert expected in line
    assert not (tmp_path / "model").exists()  # refused before the data is read
