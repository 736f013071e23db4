"""predict.py end to end on a Mean Teacher checkpoint trained for two iterations on tiny
synthetic data: NIfTI, NRRD and h5 copies of a case segmented as inference.py segments the h5,
in the scans' own geometry; a scan at another voxel size resampled and brought back; bad scans
one line each while the others go on; nothing overwritten unless asked; probabilities; teacher."""
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import predict
from conftest import TINY, run_script, write_case
from dataloaders.la_heart import read_case
from dataloaders.synthetic import generate_dataset
from utils.checkpoint import load_checkpoint, trained_settings, trained_spacing

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")

ANGLE = 0.4  # a rotation about Z, and a non-zero origin: a geometry no output may lose
DIRECTION = (math.cos(ANGLE), -math.sin(ANGLE), 0.0, math.sin(ANGLE), math.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)
ORIGIN = (12.5, -30.0, 4.0)


def ok(proc, code=0):
    assert proc.returncode == code, (f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                                     f"stderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Mean Teacher run (iter_2.pth) on 4 + 2 synthetic cases of about 48 x 48 x 24 voxels,
    the test case's image, and the checkpoint's training voxel size."""
    cwd = tmp_path_factory.mktemp("predict")
    volumes = generate_dataset(cwd / "syn", num_train=4, num_test=2, size=(48, 48, 24))
    ok(run_script("train_mean_teacher.py", ["--dataset_name", "Synthetic", "--root_path", volumes,
                                            "--train_list", cwd / "syn" / "train.list", *TINY,
                                            "--max_iterations", "2"], cwd))
    checkpoint = cwd / "model" / "Synthetic_vnet_2_labeled" / "MT" / "iter_2.pth"
    case_id = (cwd / "syn" / "test.list").read_text().split()[0]
    image, label = read_case(volumes, case_id)
    # the NIfTI copies are at the training voxel size (where the checkpoint stores one)
    spacing = trained_spacing(load_checkpoint(checkpoint)) or (0.7, 0.8, 1.1)
    return SimpleNamespace(cwd=cwd, volumes=volumes, checkpoint=checkpoint, case_id=case_id, image=image,
                           label=label, spacing=spacing)


def write_scan(path, array, spacing, origin=ORIGIN, direction=DIRECTION):
    """``array`` (X, Y, Z) as a scan file with this geometry (SimpleITK picks the format by name)."""
    image = sitk.GetImageFromArray(np.asarray(array).transpose(2, 1, 0))
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def run_in_process(monkeypatch, capsys, cwd, args):
    """predict.main() with ``args``; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # select_device rewrites it; restored afterwards
    monkeypatch.setattr(sys, "argv", ["predict.py", *map(str, args)])
    try:
        predict.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def voxels(path):
    return np.asarray(nib.load(path).dataobj)


def same_geometry(output, scan):
    """The output lies on the scan: shape, spacing, origin, direction (SimpleITK) and affine (nibabel)."""
    a, b = sitk.ReadImage(str(output)), sitk.ReadImage(str(scan))
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    if str(scan).endswith((".nii", ".nii.gz")):
        np.testing.assert_allclose(nib.load(output).affine, nib.load(scan).affine, atol=1e-5)


def test_scans_are_segmented_as_inference_segments_the_h5(trained, tmp_path):
    """The case as NIfTI (rotated, shifted, nnU-Net's _0000 name), as NRRD and as its h5: the
    same voxels as inference.py's prediction, each in its own scan's geometry."""
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "case_0000.nii.gz", trained.image, trained.spacing)
    write_scan(scans / "copy.nrrd", trained.image, trained.spacing)
    write_case(scans, trained.case_id, trained.image, trained.label)  # <ID>/mri_norm2.h5
    proc = ok(run_script("predict.py", ["-i", scans, "-o", tmp_path / "out", "--checkpoint", trained.checkpoint,
                                        "--lcc", "--save_prob"], trained.cwd))
    assert proc.stderr == ""
    (tmp_path / "test.list").write_text(trained.case_id + "\n")
    ok(run_script("inference.py", ["--dataset_name", "Synthetic", "--root_path", trained.volumes, "--test_list",
                                   tmp_path / "test.list", "--checkpoint", trained.checkpoint, "--lcc",
                                   "--save_pred", "--out", tmp_path / "eval"], trained.cwd))
    expected = voxels(tmp_path / "eval" / f"{trained.case_id}_pred.nii.gz")
    assert expected.any()  # something to compare

    out = tmp_path / "out"
    names = {"case": scans / "case_0000.nii.gz", "copy": scans / "copy.nrrd",
             trained.case_id: scans / trained.case_id / "mri_norm2.h5"}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}{s}.nii.gz" for n in names for s in ("", "_prob"))
    for name, scan in names.items():
        labels = voxels(out / f"{name}.nii.gz")
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, expected)
        probabilities = voxels(out / f"{name}_prob.nii.gz")[:, :, :, 0]  # (X, Y, Z, C)
        np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
        assert (probabilities.argmax(-1)[labels == 1] == 1).all()  # --lcc only removes voxels
        if scan.suffix != ".h5":
            same_geometry(out / f"{name}.nii.gz", scan)
            same_geometry(out / f"{name}_prob.nii.gz", scan)
    np.testing.assert_allclose(nib.load(out / f"{trained.case_id}.nii.gz").affine, np.diag([0.625] * 3 + [1]))
    lines = proc.stdout.strip().splitlines()
    assert "scans z-scored each on its own" in lines[0] and "lcc on" in lines[0] and "strides 16/8" in lines[0]
    assert lines[-1].startswith("3 predicted, 0 failed, 0 skipped of 3 scan(s); ") and lines[-1].endswith("device cpu")
    assert "and back" not in proc.stdout


LA_ROOT = os.environ.get("LA_ROOT")


@pytest.mark.skipif(not LA_ROOT or not Path(LA_ROOT).is_dir(), reason="LA_ROOT (the LA h5 case folders) is not set")
def test_a_real_la_case_as_nifti_and_nrrd_is_segmented_as_inference_segments_its_h5(trained, tmp_path):
    """A crop of a real LA case (64 x 64 x 32 voxels about its centre, 0.625 mm, rotated and
    shifted): the NIfTI and NRRD copies give inference.py's voxels on the h5, in their geometry."""
    case_id = sorted(p.name for p in Path(LA_ROOT).iterdir() if (p / "mri_norm2.h5").is_file())[0]
    image, label = read_case(LA_ROOT, case_id)
    centre = [n // 2 for n in image.shape]
    crop = tuple(slice(c - h, c + h) for c, h in zip(centre, (32, 32, 16)))
    image, label = image[crop], label[crop]
    folder = tmp_path / "la"
    write_case(folder, case_id, image, label)
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "la_nifti.nii.gz", image, (0.625,) * 3)
    write_scan(scans / "la_nrrd.nrrd", image, (0.625,) * 3)
    windows = ["--stride_xy", "16", "--stride_z", "8"]  # the same windows for both (LA's default is 18/4)
    ok(run_script("predict.py", ["-i", scans, "-o", tmp_path / "out", "--checkpoint", trained.checkpoint, *windows],
                  trained.cwd))
    (tmp_path / "test.list").write_text(case_id + "\n")
    ok(run_script("inference.py", ["--dataset_name", "LA", "--root_path", folder, "--test_list", tmp_path / "test.list",
                                   "--checkpoint", trained.checkpoint, "--save_pred", "--out", tmp_path / "eval",
                                   *windows],
                  trained.cwd))
    expected = voxels(tmp_path / "eval" / f"{case_id}_pred.nii.gz")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["la_nifti.nii.gz", "la_nrrd.nii.gz"]
    for scan in ("la_nifti.nii.gz", "la_nrrd.nrrd"):
        output = tmp_path / "out" / f"{scan.split('.')[0]}.nii.gz"
        np.testing.assert_array_equal(voxels(output), expected)
        same_geometry(output, scans / scan)


def test_a_scan_at_another_voxel_size_comes_back_on_its_own_grid(trained, monkeypatch, capsys, tmp_path):
    """The case at 1.6 times the training voxel size: resampled to it, predicted, and brought
    back (probabilities, then argmax); a checkpoint that stores no voxel size says so."""
    stored = load_checkpoint(trained.checkpoint)
    with_spacing, without = tmp_path / "spacing.pth", tmp_path / "old.pth"
    torch.save({**stored, "spacing": [0.625] * 3}, with_spacing)
    torch.save({k: v for k, v in stored.items() if k != "spacing"}, without)
    fine = sitk.GetImageFromArray(trained.image.transpose(2, 1, 0))
    fine.SetSpacing((0.625,) * 3)
    coarse = sitk.Resample(fine, [round(n / 1.6) for n in fine.GetSize()], sitk.Transform(), sitk.sitkLinear,
                           (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), fine.GetDirection(), 0.0, sitk.sitkFloat32)
    scan = write_scan(tmp_path / "coarse.nii.gz", sitk.GetArrayFromImage(coarse).transpose(2, 1, 0), (1.0, 1.0, 1.0))

    code, stdout, err = run_in_process(monkeypatch, capsys, trained.cwd, ["-i", scan, "-o", tmp_path / "a",
                                                                          "--checkpoint", with_spacing, "--save_prob"])
    assert code == 0, err
    assert "training voxel size 0.625 x 0.625 x 0.625 mm" in stdout
    size = coarse.GetSize()
    assert f"coarse: {size[0]} x {size[1]} x {size[2]} voxels" in stdout
    assert "predicted at the training 0.625 x 0.625 x 0.625 mm (its own 1 x 1 x 1 mm) and brought back" in stdout
    same_geometry(tmp_path / "a" / "coarse.nii.gz", scan)
    probabilities = voxels(tmp_path / "a" / "coarse_prob.nii.gz")[:, :, :, 0]
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(-1), voxels(tmp_path / "a" / "coarse.nii.gz"))

    code, stdout, err = run_in_process(monkeypatch, capsys, trained.cwd, ["-i", scan, "-o", tmp_path / "b",
                                                                          "--checkpoint", without])
    assert code == 0, err
    assert "the checkpoint does not store its training voxel size: every scan is predicted at its own spacing" in stdout
    assert "resampled" not in stdout
    same_geometry(tmp_path / "b" / "coarse.nii.gz", scan)


def test_bad_scans_are_one_line_each_and_the_others_are_predicted(trained, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "good.nii.gz", trained.image[:32, :32, :16], trained.spacing)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), scans / "four_d.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), scans / "two_d.nii.gz")
    (scans / "empty.nrrd").write_bytes(b"")
    whole = write_scan(scans / "truncated.nii.gz", trained.image, trained.spacing).read_bytes()
    (scans / "truncated.nii.gz").write_bytes(whole[:len(whole) // 2])
    proc = ok(run_script("predict.py", ["--input", scans, "--output", tmp_path / "out", "--checkpoint",
                                        trained.checkpoint], trained.cwd), code=1)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    expected = {"empty.nrrd": "the file is empty", "four_d.nii.gz": "a 4D image (8 x 8 x 8 x 2 voxels)",
                "truncated.nii.gz": "truncated", "two_d.nii.gz": "a 2D image (8 x 8)"}
    assert len(lines) == len(expected), proc.stderr
    for line, (name, what) in zip(lines, expected.items()):  # in the sorted order of the folder
        assert line.startswith(f"error: {scans / name}: ") and what in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.nii.gz"]
    assert proc.stdout.strip().splitlines()[-1].startswith("1 predicted, 4 failed, 0 skipped of 5 scan(s)")


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "nothing_here", "not found"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no scan"),
    (lambda d: (d / "scan.png").write_bytes(b"x") and d / "scan.png", "unknown scan format"),
    (lambda d: (d / "a.nii.gz").write_bytes(b"x") and (d / "a.nrrd").write_bytes(b"x") and d,
     "would both be written as"),
])
def test_input_without_usable_scans_is_one_line(make, expected, trained, monkeypatch, capsys, tmp_path):
    code, _, err = run_in_process(monkeypatch, capsys, trained.cwd, ["-i", make(tmp_path), "-o", tmp_path / "out",
                                                                     "--checkpoint", trained.checkpoint])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not (tmp_path / "out").exists()


def test_one_bad_scan_file_and_bad_flags(trained, monkeypatch, capsys, tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    code, stdout, err = run_in_process(monkeypatch, capsys, trained.cwd, ["-i", tmp_path / "empty.nii.gz", "-o",
                                                                          tmp_path / "out", "--checkpoint",
                                                                          trained.checkpoint])
    assert code == 1
    assert err.strip().splitlines() == [f"error: {tmp_path / 'empty.nii.gz'}: the file is empty (0 bytes)"]
    assert "0 predicted, 1 failed" in stdout
    scan = write_scan(tmp_path / "s.nii.gz", trained.image, trained.spacing)
    usual = ["-i", scan, "-o", tmp_path / "o"]
    for args, expected in (([*usual, "--checkpoint", trained.checkpoint, "--stride_xy", "40"],
                            "--stride_xy must be between 1 and the patch size 32"),
                           ([*usual, "--checkpoint", tmp_path / "none.pth"], "checkpoint not found"),
                           ([*usual, "--exp", "nothere"], "run folder not found"),
                           (["-i", scan, "-o", tmp_path, "--checkpoint", trained.checkpoint],
                            "would replace the scan itself"),
                           ([*usual, "--checkpoint", trained.checkpoint, "--lcc", "2"], "unrecognized arguments: 2")):
        code, _, err = run_in_process(monkeypatch, capsys, trained.cwd, args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_outputs_are_kept_unless_overwrite(trained, monkeypatch, capsys, tmp_path):
    scan = write_scan(tmp_path / "case.nrrd", trained.image[:32, :32, :16], trained.spacing)  # one window
    out = tmp_path / "out"
    args = ["-i", scan, "-o", out, "--checkpoint", trained.checkpoint]
    assert run_in_process(monkeypatch, capsys, trained.cwd, args)[0] == 0
    first = voxels(out / "case.nii.gz")
    (out / "case.nii.gz").write_bytes(b"someone's edited segmentation")
    code, stdout, _ = run_in_process(monkeypatch, capsys, trained.cwd, args)
    assert code == 0 and (out / "case.nii.gz").read_bytes() == b"someone's edited segmentation"
    assert f"case: {out / 'case.nii.gz'} exists, skipped (--overwrite replaces it)" in stdout
    assert "0 predicted, 0 failed, 1 skipped of 1 scan(s)" in stdout
    code, stdout, _ = run_in_process(monkeypatch, capsys, trained.cwd, [*args, "--overwrite"])
    assert code == 0 and "1 predicted" in stdout
    np.testing.assert_array_equal(voxels(out / "case.nii.gz"), first)
    assert sorted(p.name for p in out.iterdir()) == ["case.nii.gz"]  # no temporary file left


def test_teacher_run_folder_and_normalisation(trained, monkeypatch, capsys, tmp_path):
    """--teacher predicts with the teacher (refused for a labeled-only checkpoint); the run
    folder flags find the last iter_N.pth; a checkpoint from before --normalize reads an h5 as
    stored and z-scores other scans."""
    scan = write_scan(tmp_path / "s.nii.gz", trained.image[:32, :32, :16], trained.spacing)
    code, stdout, err = run_in_process(monkeypatch, capsys, trained.cwd,
                                       ["-i", scan, "-o", tmp_path / "t", "--dataset_name", "Synthetic",
                                        "--labelnum", "2", "--teacher"])
    assert code == 0, err
    assert str(Path("model/Synthetic_vnet_2_labeled/MT/iter_2.pth")) in stdout and "teacher weights" in stdout
    checkpoint = load_checkpoint(trained.checkpoint)
    torch.save({**checkpoint, "teacher": None}, tmp_path / "sup.pth")
    code, _, err = run_in_process(monkeypatch, capsys, trained.cwd, ["-i", scan, "-o", tmp_path / "u", "--checkpoint",
                                                                     tmp_path / "sup.pth", "--teacher"])
    assert code == 2 and err.strip().splitlines() == [
        f"error: {tmp_path / 'sup.pth'} has no teacher (a labeled-only run of train_sup.py); drop --teacher"]

    old = {**checkpoint, "args": {k: v for k, v in checkpoint["args"].items() if k != "normalize"}}
    assert predict.input_rule(trained_settings(checkpoint)) == "case" and predict.input_rule(trained_settings(old)) == "none"
    assert predict.input_rule(trained_settings({**checkpoint, "data_kind": "msd"})) == "msd"
    stored = trained.image
    np.testing.assert_array_equal(predict.normalized(stored, Path("c/mri_norm2.h5"), "none"), stored)
    zscored = predict.normalized(stored, Path("c.nii.gz"), "none")
    assert zscored.dtype == np.float32 and abs(zscored.mean()) < 1e-5 and abs(zscored.std() - 1) < 1e-5
    np.testing.assert_array_equal(predict.normalized(stored, Path("c.nii.gz"), "case"), zscored)
