"""Planning end to end through the real scripts: a CT folder and an anisotropic MRI folder of
your own train with no hand-picked flag (voxel size, patch, VNet strides, window and
normalisation from the plan), inference.py and predict.py read those settings from the
checkpoint; flags win over the plan; the fingerprint cache reads no case twice; and a
checkpoint from before plans (no strides, window or intensity) predicts as before."""
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY, log_lines, run_script
from dataloaders.datasets import data_folder
from dataloaders.msd import has_label
from dataloaders.synthetic import generate_dataset
from dataloaders.synthetic_ct import generate_ct_dataset
from evaluation.predictor import default_window, network_strides
from networks.vnet import DEFAULT_STRIDES
from planning import fingerprint as fingerprint_module
from planning.fingerprint import cache_path, data_fingerprint
from planning.planner import make_plan

nib = pytest.importorskip("nibabel")

# Flags that keep a run small and say nothing about the data (no patch, strides or normalisation).
SMALL = ["--batch_size", "4", "--labeled_bs", "2", "--log_every", "1", "--save_every", "100", "--val_every", "100",
         "--gpu", "-1"]
CT_BUDGET = 8192  # voxels: a 32 x 32 x 8 patch at most


def ok(proc, code=0):
    assert proc.returncode == code, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                                     f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def one_line_error(proc) -> str:
    """The single stderr line of a script that refused its input (exit code 2)."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]


def settings_line(run: Path) -> str:
    lines = log_lines(run, "settings:")
    assert len(lines) == 1, (run / "log.txt").read_text()
    return lines[0]


def write_nii(path: Path, array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = origin
    image = nib.Nifti1Image(np.asarray(array), affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, path)
    return path


def blob_case(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8): a bright ellipsoid (label 1) in noise."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre = [n / 2 + rng.uniform(-2, 2) for n in shape]
    radius = ((x - centre[0]) / (shape[0] / 4)) ** 2 + ((y - centre[1]) / (shape[1] / 4)) ** 2 \
        + ((z - centre[2]) / (shape[2] / 3)) ** 2
    label = (radius < 1).astype(np.uint8)
    return (100 + 80 * label + rng.normal(0, 10, shape)).astype(np.float32), label


def mri_folder(root: Path, *, cases=8, labeled=3, val_cases=2, shape=(40, 36, 8), spacing=(1.5, 1.5, 6.0),
               seed=0) -> Path:
    """An MSD folder of thick-slice MRI: ``cases`` training cases (the first ``labeled`` with
    labels, listed in train.list) and ``val_cases`` labeled cases in val.list, each of about
    ``shape`` voxels at ``spacing`` mm."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"name": "thick MRI", "modality": {"0": "MRI"},
                                                   "labels": {"0": "background", "1": "blob"}}))
    ids = [f"mri_{i:02d}" for i in range(cases + val_cases)]
    for number, case_id in enumerate(ids):
        case_shape = (shape[0] + int(rng.integers(-2, 3)), shape[1] + int(rng.integers(-2, 3)), shape[2])
        image, label = blob_case(rng, case_shape)
        write_nii(root / "imagesTr" / f"{case_id}.nii.gz", image, spacing)
        if number < labeled or number >= cases:
            write_nii(root / "labelsTr" / f"{case_id}.nii.gz", label, spacing)
    (root / "train.list").write_text("\n".join(ids[:cases]) + "\n")
    (root / "val.list").write_text("\n".join(ids[cases:]) + "\n")
    return root


def planned(root: Path, budget: int, cache_dir: Path):
    """The plan of ``root``'s train.list cases, computed here (labeled: those with label files)."""
    data = data_folder(root, "case")
    ids = (root / "train.list").read_text().split()
    fingerprint, _ = data_fingerprint(data, ids, [c for c in ids if has_label(root, c)], cache_dir=cache_dir)
    return make_plan(fingerprint, budget)


def as_lists(strides) -> list:
    return [list(stage) for stage in strides]


# --- a. a CT folder of your own -----------------------------------------------------------------

@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    """4 iterations of Mean Teacher on 6 synthetic CT cases (3 labeled) of about 48 x 48 x 10
    voxels, with no flag about the data but the patch budget."""
    cwd = tmp_path_factory.mktemp("ct_plan")
    root = generate_ct_dataset(cwd / "ct", cases=6, labeled=3, val_cases=2, shape=(48, 48, 10))
    ok(run_script("train_mean_teacher.py", ["--root_path", root, "--max_iterations", "4",
                                            "--patch_budget", CT_BUDGET, *SMALL], cwd))
    run = cwd / "model" / "ct_vnet_3_labeled" / "MT"
    return SimpleNamespace(cwd=cwd, root=root, run=run, checkpoint=run / "iter_4.pth")


def test_ct_folder_trains_on_the_plan_and_stores_it(ct_run, tmp_path):
    plan = planned(ct_run.root, CT_BUDGET, tmp_path / "fingerprints")
    line = settings_line(ct_run.run)
    # every value from the plan, none from a flag or a dataset default
    assert line.count("(plan") == 5 and "(flag" not in line and "dataset default" not in line, line
    assert "intensities CT: clipped to" in line
    assert f"patch {' x '.join(map(str, plan.patch_size))} (plan)" in line
    assert np.prod(plan.patch_size) <= CT_BUDGET
    assert len(log_lines(ct_run.run, "iteration")) == 4

    config = json.loads((ct_run.run / "config.json").read_text())["args"]
    checkpoint = torch.load(ct_run.checkpoint, map_location="cpu", weights_only=False)
    for intensity in (config["intensity"], checkpoint["intensity"]):
        assert intensity["scheme"] == "ct" and intensity["lower"] < intensity["upper"]
        assert intensity["lower"] <= intensity["mean"] <= intensity["upper"] and intensity["std"] > 0
        assert intensity == pytest.approx(plan.intensity)
    assert checkpoint["network"]["strides"] == as_lists(plan.strides) == config["strides"]
    assert tuple(checkpoint["args"]["patch_size"]) == tuple(config["patch_size"]) == plan.patch_size
    assert list(checkpoint["args"]["window"]) == [plan.stride_xy, plan.stride_z]
    assert checkpoint["spacing"] == pytest.approx(plan.spacing)
    assert config["setting_sources"] == {"spacing": "plan", "patch_size": "plan", "strides": "plan",
                                         "window": "plan", "intensity": "plan"}
    # thick slices (5 mm against 0.8 mm in-plane): Z is not halved in the first stage
    assert plan.strides[0][2] == 1


def test_ct_checkpoint_evaluates_and_predicts_on_the_scan_grid(ct_run, tmp_path):
    proc = ok(run_script("inference.py", ["--root_path", ct_run.root, "--checkpoint", ct_run.checkpoint,
                                          "--test_list", "val.list", "--gpu", "-1", "--out", tmp_path / "eval"],
                         ct_run.cwd))
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    checkpoint = torch.load(ct_run.checkpoint, map_location="cpu", weights_only=False)
    assert summary["cases"] == 2 and summary["intensity"] == checkpoint["intensity"]
    assert [summary["stride_xy"], summary["stride_z"]] == list(checkpoint["args"]["window"])
    assert "(CT plan)" in proc.stdout and "clipped to" in proc.stdout
    with open(tmp_path / "eval" / "metrics.csv") as f:
        assert {row["case"] for row in csv.DictReader(f)} == {"ct_006", "ct_007"}

    scan = ct_run.root / "imagesTr" / "ct_004.nii.gz"  # an unlabeled training case
    ok(run_script("predict.py", ["-i", scan, "-o", tmp_path / "out", "--checkpoint", ct_run.checkpoint,
                                 "--gpu", "-1"], ct_run.cwd))
    source, result = nib.load(scan), nib.load(tmp_path / "out" / "ct_004.nii.gz")
    assert result.shape == source.shape
    assert result.header.get_zooms()[:3] == pytest.approx(source.header.get_zooms()[:3])
    np.testing.assert_allclose(result.affine, source.affine, atol=1e-5)
    assert set(np.unique(np.asarray(result.dataobj))) <= {0, 1}


# --- b. an anisotropic MRI folder -------------------------------------------------------------

@pytest.fixture(scope="module")
def mri(tmp_path_factory) -> Path:
    return mri_folder(tmp_path_factory.mktemp("mri_data") / "thick")


def test_thick_slice_mri_keeps_z_in_the_first_stage_and_trains_without_flags(mri, tmp_path):
    plan = planned(mri, 112 * 112 * 80, tmp_path / "fingerprints")
    assert plan.strides[0][2] == 1 and plan.strides[0][:2] == (2, 2)  # 1.5 mm in-plane against 6 mm slices
    assert plan.intensity == {"scheme": "zscore"}

    ok(run_script("train_mean_teacher.py", ["--root_path", mri, "--max_iterations", "4", *SMALL], tmp_path))
    run = tmp_path / "model" / "thick_vnet_3_labeled" / "MT"
    line = settings_line(run)
    assert line.count("(plan") == 5 and "z-scored per case" in line, line
    checkpoint = torch.load(run / "iter_4.pth", map_location="cpu", weights_only=False)
    assert checkpoint["network"]["strides"] == as_lists(plan.strides)
    assert checkpoint["network"]["strides"][0][2] == 1
    assert tuple(checkpoint["args"]["patch_size"]) == plan.patch_size

    proc = ok(run_script("inference.py", ["--root_path", mri, "--checkpoint", run / "iter_4.pth",
                                          "--test_list", "val.list", "--gpu", "-1"], tmp_path))
    assert (run / "test_iter_4" / "summary.json").is_file(), proc.stdout
    assert f"patch {plan.patch_size}" in proc.stdout


# --- c. flags against the plan ----------------------------------------------------------------

def test_plan_dataset_without_a_dataset_name_is_one_line(mri, tmp_path):
    line = one_line_error(run_script("train_mean_teacher.py", ["--root_path", mri, "--plan", "dataset",
                                                               "--max_iterations", "1", *SMALL], tmp_path))
    assert "--plan dataset needs a --dataset_name" in line and str(mri) in line
    assert not (tmp_path / "model").exists()


def test_patch_and_strides_given_by_flag_win_over_the_plan(mri, tmp_path):
    strides = ["2,2,1", "2,2,2", "2,2,1", "2,2,2"]  # not the plan's (2,2,1 2,2,1 2,2,2 2,2,2)
    ok(run_script("train_mean_teacher.py", ["--root_path", mri, "--max_iterations", "2", "--patch_size", "16", "16",
                                            "8", "--strides", *strides, "--exp", "flags", *SMALL], tmp_path))
    run = tmp_path / "model" / "thick_flags_3_labeled" / "MT"
    line = settings_line(run)
    assert "patch 16 x 16 x 8 (flag)" in line and f"VNet strides {' '.join(strides)} (flag;" in line, line
    assert "voxel size 1.5 x 1.5 x 6 mm (plan)" in line and "(plan)" in line.split("intensities")[1]
    checkpoint = torch.load(run / "iter_2.pth", map_location="cpu", weights_only=False)
    assert checkpoint["network"]["strides"] == [[int(f) for f in s.split(",")] for s in strides]
    assert tuple(checkpoint["args"]["patch_size"]) == (16, 16, 8)
    # a patch by flag alone gets strides planned for it (not the published 2,2,2 ones)
    proc = ok(run_script("train_mean_teacher.py", ["--root_path", mri, "--patch_size", "32", "32", "8",
                                                   "--check_data", *SMALL], tmp_path))
    assert "patch 32 x 32 x 8 (flag), VNet strides 2,2,1 2,2,1 2,2,2 2,2,2 (plan;" in proc.stdout, proc.stdout


# --- d. the fingerprint cache -----------------------------------------------------------------

def test_a_second_check_reads_no_case_and_a_changed_image_is_read_again(tmp_path):
    root = generate_ct_dataset(tmp_path / "ct", cases=4, labeled=2, val_cases=0, shape=(32, 32, 8))
    args = ["--root_path", root, "--check_data", "--patch_budget", "2048", *SMALL]
    first = ok(run_script("train_mean_teacher.py", args, tmp_path))
    cache = tmp_path / cache_path(root)
    assert cache.is_file(), first.stdout
    before, mtime = cache.read_bytes(), cache.stat().st_mtime_ns
    entries = json.loads(before)["cases"]
    assert set(entries) == {"ct_000", "ct_001", "ct_002", "ct_003"}
    assert "foreground" in entries["ct_000"] and "foreground" not in entries["ct_003"]  # labeled cases only

    second = ok(run_script("train_mean_teacher.py", args, tmp_path))
    assert cache.read_bytes() == before and cache.stat().st_mtime_ns == mtime  # nothing new to write
    settings = [line for line in second.stdout.splitlines() if line.startswith("settings:")]
    assert settings == [line for line in first.stdout.splitlines() if line.startswith("settings:")]

    # the unlabeled ct_003 rewritten with other voxels and another shape: its entry alone changes
    scan = root / "imagesTr" / "ct_003.nii.gz"
    old = nib.load(scan)
    write_nii(scan, np.full((30, 28, 7), -500, np.int16) + np.arange(7, dtype=np.int16), old.header.get_zooms()[:3])
    ok(run_script("train_mean_teacher.py", args, tmp_path))
    after = json.loads(cache.read_text())["cases"]
    assert after["ct_003"]["shape"] == [30, 28, 7] and after["ct_003"]["files"] != entries["ct_003"]["files"]
    assert {c: after[c] for c in ("ct_000", "ct_001", "ct_002")} == {c: entries[c] for c in ("ct_000", "ct_001",
                                                                                           "ct_002")}


def test_the_fingerprint_reads_only_the_cases_whose_files_changed(tmp_path, monkeypatch):
    """In-process: how many cases ``data_fingerprint`` reads (headers, CT foreground) each time."""
    root = generate_ct_dataset(tmp_path / "ct", cases=4, labeled=2, val_cases=0, shape=(32, 32, 8))
    data, ids = data_folder(root, "case"), ["ct_000", "ct_001", "ct_002", "ct_003"]
    read = []
    original = fingerprint_module._case_entry
    monkeypatch.setattr(fingerprint_module, "_case_entry",
                        lambda data, case_id, **kw: read.append(case_id) or original(data, case_id, **kw))
    first, _ = data_fingerprint(data, ids, ids[:2], cache_dir=tmp_path / "cache")
    assert read == ids
    read.clear()
    again, _ = data_fingerprint(data, ids, ids[:2], cache_dir=tmp_path / "cache")
    assert read == [] and again == first
    # a label changed (one voxel of foreground more) is a change of that labeled case
    label_file = root / "labelsTr" / "ct_001.nii.gz"
    label = nib.load(label_file)
    voxels = np.asarray(label.dataobj).copy()
    voxels[0, 0, 0] = 1
    write_nii(label_file, voxels, label.header.get_zooms()[:3])
    changed, _ = data_fingerprint(data, ids, ids[:2], cache_dir=tmp_path / "cache")
    assert read == ["ct_001"] and changed.foreground != first.foreground
    assert changed.spacings == first.spacings and changed.shapes == first.shapes


# --- e. a checkpoint from before plans --------------------------------------------------------

def test_a_checkpoint_without_strides_window_or_intensity_predicts_as_before(tmp_path):
    volumes = generate_dataset(tmp_path / "syn", num_train=4, num_test=2, size=(44, 44, 16))
    ok(run_script("train_mean_teacher.py", ["--dataset_name", "Synthetic", "--root_path", volumes,
                                            "--train_list", tmp_path / "syn" / "train.list", *TINY,
                                            "--max_iterations", "2", "--gpu", "-1"], tmp_path))
    run = tmp_path / "model" / "Synthetic_vnet_2_labeled" / "MT"
    new = torch.load(run / "iter_2.pth", map_location="cpu", weights_only=False)
    assert new["network"]["strides"] == as_lists(DEFAULT_STRIDES)
    old = torch.load(run / "iter_2.pth", map_location="cpu", weights_only=False)
    del old["network"]["strides"]
    old.pop("intensity", None)
    for key in ("window", "strides", "intensity", "setting_sources", "plan", "patch_budget", "plan_notes",
                "settings_text"):
        old["args"].pop(key, None)
    torch.save(old, run / "old.pth")
    assert network_strides(old) == DEFAULT_STRIDES
    assert default_window(old) == default_window(new)

    outputs = {}
    for name in ("iter_2", "old"):
        ok(run_script("inference.py", ["--dataset_name", "Synthetic", "--root_path", volumes, "--checkpoint",
                                       run / f"{name}.pth", "--test_list", tmp_path / "syn" / "test.list",
                                       "--save_pred", "--gpu", "-1", "--out", tmp_path / name], tmp_path))
        with open(tmp_path / name / "metrics.csv") as f:
            rows = [{k: v for k, v in row.items() if not k.endswith("_s")} for row in csv.DictReader(f)]
        predictions = {p.name: np.asarray(nib.load(p).dataobj) for p in sorted((tmp_path / name).glob("*_pred.nii.gz"))}
        outputs[name] = rows, predictions
    (new_rows, new_pred), (old_rows, old_pred) = outputs["iter_2"], outputs["old"]
    assert len(new_rows) == 2 and new_rows == old_rows
    assert new_pred.keys() == old_pred.keys() and len(new_pred) == 2
    for name in new_pred:
        np.testing.assert_array_equal(new_pred[name], old_pred[name])
