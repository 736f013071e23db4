"""The uncertainty of a segmentation end to end, on one labeled-only model trained for 20
iterations on the tiny synthetic data: predict.py --uncertainty (voxel map in the scan's
geometry, uncertainty.csv most uncertain first, the segmentation unchanged, reruns, flags),
inference.py --uncertainty (score columns, Spearman, the picture, the same Dice), and suggest.py
(a deliberately noisy unlabeled case ranked first, the lists it writes, one-line errors)."""
import csv
import json
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import spearmanr

import inference
import predict
import suggest
from conftest import TINY, run_script, write_case
from test_predict import same_geometry, voxels  # predict.py's own geometry checks
from dataloaders.la_heart import read_case, zscore_finite
from evaluation.predictor import Predictor
from evaluation.scans import read_scan
from utils.checkpoint import load_checkpoint, trained_spacing

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")

ANGLE = 0.4  # a rotation about Z, and a non-zero origin: a geometry no output may lose
DIRECTION = (math.cos(ANGLE), -math.sin(ANGLE), 0.0, math.sin(ANGLE), math.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)
ORIGIN = (12.5, -30.0, 4.0)
OTHER_SPACING = (0.7, 0.8, 1.1)  # not the training voxel size: resampled to it and brought back
STRIDES = ["--stride_xy", "32", "--stride_z", "16"]  # few windows per scan (the patch is 32 x 32 x 16)
TABLE_COLUMNS = ["scan", "score", "volume_ml_1", "components_1", "expected_dice_error", "flip_disagreement",
                 "entropy", "segmentation", "flagged", "reason"]


def ok(proc, code=0):
    assert proc.returncode == code, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                                     f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def one_line_error(proc_or_err, expected, code=2):
    """A subprocess (or in-process stderr) that stopped on one ``error: ...`` line, no traceback."""
    err = proc_or_err.stderr if hasattr(proc_or_err, "stderr") else proc_or_err
    if hasattr(proc_or_err, "returncode"):
        assert proc_or_err.returncode == code, (proc_or_err.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


def run_in_process(module, monkeypatch, capsys, cwd, args):
    """``module.main()`` with ``args``; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # select_device rewrites it; restored afterwards
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, args)])
    try:
        module.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def crop_around_label(image, label, shape):
    """A sub-volume of ``shape`` centred on the label's centre of mass (clipped to the volume)."""
    centre = np.argwhere(label > 0).mean(0).astype(int)
    sl = tuple(slice(max(0, min(c - s // 2, n - s)), max(0, min(c - s // 2, n - s)) + s)
               for c, s, n in zip(centre, shape, label.shape))
    return image[sl], label[sl]


def write_scan(path, array, spacing, origin=ORIGIN, direction=DIRECTION):
    """``array`` (X, Y, Z) as a scan file with this geometry (SimpleITK picks the format by name)."""
    image = sitk.GetImageFromArray(np.asarray(array, np.float32).transpose(2, 1, 0))
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path




def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(syn, tmp_path_factory):
    """A labeled-only run (train_sup.py, iter_20.pth) on the 2 labeled synthetic cases: the other
    four training cases were never seen (a labeled-only checkpoint has no unlabeled cases), so
    they can be test cases too."""
    cwd = tmp_path_factory.mktemp("uncertainty")
    ok(run_script("train_sup.py", ["--dataset_name", "Synthetic", "--root_path", syn.root,
                                   "--train_list", syn.train_list, *TINY, "--max_iterations", "20"], cwd))
    checkpoint = cwd / "model" / "Synthetic_vnet_2_labeled" / "SUP" / "iter_20.pth"
    stored = load_checkpoint(checkpoint)
    assert stored["teacher"] is None and stored["unlabeled_ids"] == []
    return SimpleNamespace(cwd=cwd, checkpoint=checkpoint, spacing=trained_spacing(stored) or (0.625,) * 3)


@pytest.fixture(scope="module")
def scans(syn, trained, tmp_path_factory):
    """Three 48 x 48 x 24 NIfTI scans, rotated and shifted: a test case's crop at the training
    voxel size (nnU-Net's _0000 name), the other test case's at another voxel size, and noise."""
    folder = tmp_path_factory.mktemp("scans")
    first = crop_around_label(*read_case(syn.root, syn.test_ids[0]), (48, 48, 24))[0]
    second = crop_around_label(*read_case(syn.root, syn.test_ids[1]), (48, 48, 24))[0]
    noise = np.random.default_rng(5).normal(size=(48, 48, 24))
    paths = {"atrium": write_scan(folder / "atrium_0000.nii.gz", first, trained.spacing),
             "other": write_scan(folder / "other.nii.gz", second, OTHER_SPACING),
             "noise": write_scan(folder / "noise.nii.gz", noise, trained.spacing)}
    return SimpleNamespace(folder=folder, paths=paths)


@pytest.fixture(scope="module")
def predicted(trained, scans, tmp_path_factory):
    """predict.py on the scans with --uncertainty, and without it, each into its own folder."""
    out = tmp_path_factory.mktemp("predicted")
    common = ["-i", scans.folder, "--checkpoint", trained.checkpoint, "--save_prob", *STRIDES]
    with_flag = ok(run_script("predict.py", [*common, "-o", out / "with", "--uncertainty"], trained.cwd))
    without = ok(run_script("predict.py", [*common, "-o", out / "without"], trained.cwd))
    assert without.stderr == ""
    return SimpleNamespace(with_=out / "with", without=out / "without", stdout=with_flag.stdout,
                           stderr=with_flag.stderr)


# --- predict.py ------------------------------------------------------------------------------

def test_predict_writes_the_voxel_map_in_the_scans_geometry(predicted, scans):
    assert predicted.stderr == ""
    assert sorted(p.name for p in predicted.with_.iterdir()) == sorted(
        [f"{name}{suffix}.nii.gz" for name in scans.paths for suffix in ("", "_prob", "_uncertainty")]
        + ["uncertainty.csv"])
    for name, scan in scans.paths.items():
        path = predicted.with_ / f"{name}_uncertainty.nii.gz"
        same_geometry(path, scan)
        uncertainty = voxels(path)
        assert uncertainty.dtype == np.float32 and uncertainty.shape == voxels(scan).shape
        assert uncertainty.min() >= 0 and uncertainty.max() <= 1
        assert uncertainty.max() > 0  # a 20-iteration network is unsure somewhere
    lines = predicted.stdout.strip().splitlines()
    assert lines[-1].startswith("3 predicted, 0 failed, 0 skipped of 3 scan(s)")
    # the summary of the flags: under 5 scans and without --flag_score only an empty class flags a scan
    empty = sum(not voxels(predicted.with_ / f"{name}.nii.gz").any() for name in scans.paths)
    assert lines[-2] == (f"{empty} of 3 scan(s) flagged" + (f" ({empty} an empty class)" if empty else "")
                         + f"; no fence under 5 scans; most uncertain first in {predicted.with_ / 'uncertainty.csv'}")
    assert all(any(line.startswith(f"{name}: ") and ", uncertainty " in line for line in lines) for name in scans.paths)


def test_predict_table_is_one_row_per_scan_most_uncertain_first(predicted, scans, trained):
    table = predicted.with_ / "uncertainty.csv"
    with open(table, newline="") as f:
        assert next(csv.reader(f)) == TABLE_COLUMNS
    rows = read_csv(table)
    assert sorted(r["scan"] for r in rows) == sorted(scans.paths)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for row in rows:
        scan = scans.paths[row["scan"]]
        labels = voxels(predicted.with_ / f"{row['scan']}.nii.gz")
        spacing = sitk.ReadImage(str(scan)).GetSpacing()
        # the volume: the segmentation's voxels times the scan's own voxel volume, in mL
        assert float(row["volume_ml_1"]) == pytest.approx(np.count_nonzero(labels == 1) * np.prod(spacing) / 1000,
                                                          abs=6e-5)
        assert int(row["components_1"]) == ndimage.label(labels == 1, structure=np.ones((3, 3, 3)))[1]
        assert row["segmentation"] == str(predicted.with_ / f"{row['scan']}.nii.gz")
        # under 5 scans there is no fence and no --flag_score: only an empty segmentation is flagged
        empty = not (labels == 1).any()
        assert row["flagged"] == ("yes" if empty else "no")
        assert row["reason"] == ("no voxel of class 1" if empty else "")
        assert float(row["score"]) == pytest.approx(
            (float(row["expected_dice_error"]) + float(row["flip_disagreement"])) / 2, abs=2e-6)
    assert float(next(r for r in rows if r["scan"] == "other")["volume_ml_1"]) > 0  # a real volume to check


def test_predict_score_and_map_are_the_predictors(predicted, scans, trained):
    """The scan at the training voxel size, z-scored as predict.py reads it, through the
    Predictor's own predict_with_uncertainty: the same score, segmentation and voxel map."""
    scan = read_scan(scans.paths["atrium"])
    predictor = Predictor(load_checkpoint(trained.checkpoint), trained.checkpoint, device=torch.device("cpu"),
                          stride_xy=32, stride_z=16)
    labels, _, uncertainty = predictor.predict_with_uncertainty(zscore_finite(scan.voxels))
    np.testing.assert_array_equal(voxels(predicted.with_ / "atrium.nii.gz"), labels)
    np.testing.assert_allclose(voxels(predicted.with_ / "atrium_uncertainty.nii.gz"), uncertainty.voxel_map, atol=1e-6)
    row = next(r for r in read_csv(predicted.with_ / "uncertainty.csv") if r["scan"] == "atrium")
    assert float(row["score"]) == pytest.approx(uncertainty.score, abs=1e-6)


def test_predict_segmentation_is_the_same_without_the_flag(predicted, scans):
    assert "(its own 0.7 x 0.8 x 1.1 mm) and brought back" in predicted.stdout  # both paths are exercised
    assert sorted(p.name for p in predicted.without.iterdir()) == sorted(
        f"{name}{suffix}.nii.gz" for name in scans.paths for suffix in ("", "_prob"))
    for name in scans.paths:
        np.testing.assert_array_equal(voxels(predicted.with_ / f"{name}.nii.gz"),
                                      voxels(predicted.without / f"{name}.nii.gz"))
        np.testing.assert_array_equal(voxels(predicted.with_ / f"{name}_prob.nii.gz"),
                                      voxels(predicted.without / f"{name}_prob.nii.gz"))


def test_predict_rerun_skips_scans_and_keeps_their_rows(predicted, scans, trained, syn, monkeypatch, capsys, tmp_path):
    """The scored scans are skipped and keep their rows; a new scan is added to the table; scans
    predicted before without --uncertainty are skipped and named as having no score."""
    folder = tmp_path / "scans"
    shutil.copytree(scans.folder, folder)
    small = crop_around_label(*read_case(syn.root, syn.test_ids[1]), (32, 32, 16))[0]
    write_scan(folder / "new.nii.gz", small, trained.spacing)
    out = tmp_path / "out"
    shutil.copytree(predicted.with_, out)
    before = {r["scan"]: r for r in read_csv(out / "uncertainty.csv")}
    old_files = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "uncertainty.csv"}
    args = ["-i", folder, "-o", out, "--checkpoint", trained.checkpoint, "--save_prob", "--uncertainty", *STRIDES]
    code, stdout, err = run_in_process(predict, monkeypatch, capsys, trained.cwd, args)
    assert code == 0, err
    for name in scans.paths:
        assert f"{name}: {out / name}.nii.gz exists, skipped (--overwrite replaces it)" in stdout
    assert "1 predicted, 0 failed, 3 skipped of 4 scan(s)" in stdout and "have no score" not in stdout
    rows = read_csv(out / "uncertainty.csv")
    assert sorted(r["scan"] for r in rows) == sorted([*scans.paths, "new"])
    for row in rows:
        if row["scan"] != "new":
            assert row == before[row["scan"]]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all((out / name).read_bytes() == data for name, data in old_files.items())

    # the plain run's folder: its scans have segmentations but no score
    plain = tmp_path / "plain"
    shutil.copytree(predicted.without, plain)
    code, stdout, err = run_in_process(predict, monkeypatch, capsys, trained.cwd, [*args[:3], plain, *args[4:]])
    assert code == 0, err
    assert [r["scan"] for r in read_csv(plain / "uncertainty.csv")] == ["new"]
    assert "3 skipped scan(s) have no score (predicted before without --uncertainty: --overwrite scores them)" \
        in stdout
    assert not (plain / "atrium_uncertainty.nii.gz").exists()


def test_flag_score_0_flags_every_scan(trained, syn, monkeypatch, capsys, tmp_path):
    for number, case in enumerate(syn.test_ids):
        small = crop_around_label(*read_case(syn.root, case), (32, 32, 16))[0]
        write_scan(tmp_path / f"small_{number}.nii.gz", small, trained.spacing)
    out = tmp_path / "out"
    code, stdout, err = run_in_process(predict, monkeypatch, capsys, trained.cwd,
                                       ["-i", tmp_path, "-o", out, "--checkpoint", trained.checkpoint,
                                        "--uncertainty", "--flag_score", "0"])
    assert code == 0, err
    rows = read_csv(out / "uncertainty.csv")
    assert sorted(r["scan"] for r in rows) == ["small_0", "small_1"]
    for row in rows:
        assert row["flagged"] == "yes"
        assert f"score {float(row['score']):.4f} >= --flag_score 0" in row["reason"]
    assert "2 of 2 scan(s) flagged (" in stdout and "2 --flag_score" in stdout and ", --flag_score 0;" in stdout


def test_flag_score_errors_are_one_line(trained, scans, monkeypatch, capsys, tmp_path):
    usual = ["-i", scans.paths["atrium"], "-o", tmp_path / "out", "--checkpoint", trained.checkpoint]
    one_line_error(run_script("predict.py", [*usual, "--flag_score", "0.5"], trained.cwd),
                   "--flag_score flags scans by their uncertainty score; add --uncertainty")
    for value in ("2", "-0.1"):
        code, _, err = run_in_process(predict, monkeypatch, capsys, trained.cwd,
                                      [*usual, "--uncertainty", "--flag_score", value])
        assert code == 2
        one_line_error(err, f"--flag_score must be between 0 and 1 (an expected Dice error), got {float(value)}")
    assert not (tmp_path / "out").exists()


# --- inference.py ----------------------------------------------------------------------------

def test_inference_scores_the_cases_and_keeps_their_dice(trained, syn, monkeypatch, capsys, tmp_path):
    """The two test cases and one training case the labeled-only run never saw: three cases, so
    the rank correlation is defined."""
    cases = [*syn.test_ids, syn.train_ids[-1]]
    (tmp_path / "cases.list").write_text("\n".join(cases) + "\n")
    args = ["--dataset_name", "Synthetic", "--root_path", syn.root, "--test_list", tmp_path / "cases.list",
            "--checkpoint", trained.checkpoint, "--patch_size", "32", "32", "16", *STRIDES]
    code, stdout, err = run_in_process(inference, monkeypatch, capsys, trained.cwd,
                                       [*args, "--uncertainty", "--out", tmp_path / "with"])
    assert code == 0, err
    code, _, err = run_in_process(inference, monkeypatch, capsys, trained.cwd, [*args, "--out", tmp_path / "without"])
    assert code == 0, err

    rows = read_csv(tmp_path / "with" / "metrics.csv")
    plain = read_csv(tmp_path / "without" / "metrics.csv")
    assert [r["case"] for r in rows] == [r["case"] for r in plain] == cases
    assert {"uncertainty", "expected_dice_error", "flip_disagreement", "scan_uncertainty",
            "scan_entropy"} <= set(rows[0])
    assert "uncertainty" not in plain[0]
    for row, other in zip(rows, plain):
        for metric in ("dice", "jaccard", "hd95", "asd"):
            assert row[metric] == other[metric], (row["case"], metric)
        assert 0 <= float(row["scan_uncertainty"]) <= 1
        assert row["uncertainty"] == row["scan_uncertainty"]  # one foreground class: the scan's score is its
        assert float(row["uncertainty"]) == pytest.approx(
            (float(row["expected_dice_error"]) + float(row["flip_disagreement"])) / 2, abs=2e-6)

    summary = json.loads((tmp_path / "with" / "summary.json").read_text())
    found = summary["uncertainty"]
    scores, dice = [float(r["scan_uncertainty"]) for r in rows], [float(r["dice"]) for r in rows]
    assert found["cases"] == 3
    assert found["spearman"] == pytest.approx(spearmanr(scores, dice).statistic)
    assert found["worst_by_dice"] == [cases[int(np.argmin(dice))]]
    assert found["top_by_score"] == [cases[int(np.argmax(scores))]]
    assert json.loads((tmp_path / "without" / "summary.json").read_text())["uncertainty"] is None
    assert summary["classes"] == json.loads((tmp_path / "without" / "summary.json").read_text())["classes"]
    png = (tmp_path / "with" / "uncertainty_vs_dice.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "without" / "uncertainty_vs_dice.png").exists()
    assert f"uncertainty against Dice over 3 cases: Spearman {found['spearman']:.3f}" in stdout


# --- suggest.py ------------------------------------------------------------------------------

def write_unlabeled(root: Path, case_id: str, image: np.ndarray) -> None:
    """An unlabeled h5 case: an ``image`` dataset and no ``label``."""
    (root / case_id).mkdir(parents=True, exist_ok=True)
    with h5py.File(root / case_id / "mri_norm2.h5", "w") as f:
        f.create_dataset("image", data=image.astype(np.float32))


@pytest.fixture(scope="module")
def pool(syn, tmp_path_factory):
    """An h5 training folder of 48 x 48 x 24 crops of the six synthetic training cases (the
    first two labeled, as the model's) and one unlabeled case made by burying a crop under
    Gaussian noise of three times the image's standard deviation; its list puts the noisy
    case in the middle of the unlabeled ones, so only its score can rank it first."""
    out = tmp_path_factory.mktemp("pool")
    root = out / "volumes"
    for case in syn.train_ids:
        write_case(root, case, *crop_around_label(*read_case(syn.root, case), (48, 48, 24)))
    image = crop_around_label(*read_case(syn.root, syn.train_ids[-1]), (48, 48, 24))[0]
    noisy = image + 3 * image.std() * np.random.default_rng(7).normal(size=image.shape)
    write_unlabeled(root, "noisy", noisy)
    ids = [*syn.train_ids[:4], "noisy", *syn.train_ids[4:]]
    (out / "train.list").write_text("\n".join(ids) + "\n")
    return SimpleNamespace(root=root, train_list=out / "train.list", ids=ids, labeled=ids[:2],
                           unlabeled=ids[2:])


def test_suggest_ranks_the_noisy_case_first(trained, pool, tmp_path):
    out = tmp_path / "next" / "suggested.list"
    proc = ok(run_script("suggest.py", ["--checkpoint", trained.checkpoint, "--root_path", pool.root,
                                        "--train_list", pool.train_list, "--labelnum", "2", "-n", "1",
                                        "--spread", "0", "--out", out], trained.cwd))
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"ranking 5 unlabeled cases of {pool.train_list}, the first 2 labeled (2 labeled) "
                               f"with {trained.checkpoint}")
    assert "suggested 1 of 5 ranked cases (the most uncertain):" in lines
    (pick,) = [line for line in lines if line.startswith("  ")]
    assert pick.split()[0] == "noisy" and pick.endswith("rank 1")
    # the files it wrote, and how to train once the suggested case is labeled
    assert lines[-1].startswith(f"written {out}, ") and str(out.with_suffix(".csv")) in lines[-1]
    assert lines[-1].endswith(f"--train_list {out.with_name('suggested_train.list')} --labelnum 3")

    assert out.read_text() == "noisy\n"
    # the next training list: the labeled cases, the suggested one, then the other unlabeled ones in their order
    assert out.with_name("suggested_train.list").read_text().split() == [
        *pool.labeled, "noisy", *(c for c in pool.unlabeled if c != "noisy")]
    rows = read_csv(out.with_suffix(".csv"))
    assert list(rows[0]) == ["rank", "case", "score", "suggested"]
    assert sorted(r["case"] for r in rows) == sorted(pool.unlabeled)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert rows[0]["case"] == "noisy" and [r["suggested"] for r in rows] == ["yes", "no", "no", "no", "no"]
    assert f"score {scores[0]:.4f}" in pick


def test_suggest_spread_starts_with_the_most_uncertain_and_writes_beside_the_checkpoint(
        trained, pool, monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = shutil.copy(trained.checkpoint, run / "iter_20.pth")
    code, stdout, err = run_in_process(suggest, monkeypatch, capsys, trained.cwd,
                                       ["--checkpoint", checkpoint, "--root_path", pool.root, "--train_list",
                                        pool.train_list, "--labelnum", "2", "-n", "2"])
    assert code == 0, err
    assert "suggested 2 of 5 ranked cases (spread over the 3N most uncertain):" in stdout
    picks = run.joinpath("suggested_2.list").read_text().split()
    assert len(picks) == 2 and picks[0] == "noisy" and set(picks) <= set(pool.unlabeled)
    rows = read_csv(run / "suggested_2.csv")
    assert sorted(r["case"] for r in rows if r["suggested"] == "yes") == sorted(picks)
    assert run.joinpath("suggested_2_train.list").read_text().split()[:4] == [*pool.labeled, *picks]


def test_suggest_refusals_are_one_line(trained, pool, monkeypatch, capsys, tmp_path):
    usual = ["--root_path", pool.root, "--train_list", pool.train_list, "--out", tmp_path / "s.list"]
    stored = load_checkpoint(trained.checkpoint)
    three = tmp_path / "three_classes.pth"
    torch.save({**stored, "network": {**stored["network"], "n_classes": 3}}, three)
    one_line_error(run_script("suggest.py", ["--checkpoint", three, *usual, "--labelnum", "2"], trained.cwd),
                   f"{three} predicts 3 classes (background included) but {pool.root} has 2")
    labeled_only = tmp_path / "labeled.list"  # the four labeled crops, all labeled: nothing to rank
    labeled_only.write_text("\n".join(pool.ids[:4]) + "\n")
    for args, expected in (
            (["--root_path", pool.root, "--train_list", labeled_only, "--labelnum", "4", "--out", tmp_path / "s.list"],
             f"no unlabeled case among the 4 training cases of {labeled_only}, the first 4 labeled"),
            ([*usual, "--labelnum", "2", "-n", "0"], "-n must be at least 1, got 0"),
            ([*usual, "--labelnum", "2", "-n", "6"], "-n 6: there are only 5 unlabeled cases")):
        code, _, err = run_in_process(suggest, monkeypatch, capsys, trained.cwd,
                                      ["--checkpoint", trained.checkpoint, *args])
        assert code == 2, (args, err)
        one_line_error(err, expected)
    assert not list(tmp_path.glob("s.*")) and not list(tmp_path.glob("s_*"))


def test_suggest_names_an_unreadable_case_and_ranks_the_others(trained, pool, tmp_path):
    root = tmp_path / "volumes"
    shutil.copytree(pool.root, root)
    whole = (root / pool.unlabeled[0] / "mri_norm2.h5").read_bytes()
    (root / pool.unlabeled[0] / "mri_norm2.h5").write_bytes(whole[:len(whole) // 3])  # truncated
    out = tmp_path / "s.list"
    proc = ok(run_script("suggest.py", ["--checkpoint", trained.checkpoint, "--root_path", root, "--train_list",
                                        pool.train_list, "--labelnum", "2", "-n", "1", "--spread", "0", "--out", out],
                         trained.cwd), code=1)
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(root / pool.unlabeled[0]) in line
    assert out.read_text() == "noisy\n"
    assert sorted(r["case"] for r in read_csv(out.with_suffix(".csv"))) == sorted(pool.unlabeled[1:])
    assert "suggested 1 of 4 ranked cases" in proc.stdout
    assert proc.stdout.strip().endswith("; 1 case(s) could not be read")
