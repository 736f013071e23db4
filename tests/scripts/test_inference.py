"""inference.py end to end on a checkpoint trained for two iterations on synthetic data, its
outputs (CSV, JSON, NIfTI, PNG), empty masks, bad input, and the overlay pictures."""
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import inference
from conftest import REPO, TINY, decode_png, png_size, script_env, run_script, write_case
from dataloaders.la_heart import read_case, read_case_zscored
from networks.vnet import VNet
from utils.checkpoint import load_checkpoint
from utils.device import amp_dtype, precision_text
from utils.metrics import METRICS, multiclass_metrics

WINDOWS = ["--patch_size", "32", "32", "16", "--stride_xy", "32", "--stride_z", "16"]  # few windows per case


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def run_folder(cwd) -> Path:
    return Path(cwd) / "model" / "Synthetic_vnet_2_labeled" / "MT"


@pytest.fixture(scope="module")
def trained(syn, tmp_path_factory):
    """A Mean Teacher run folder with iter_2.pth, trained from its own working directory."""
    cwd = tmp_path_factory.mktemp("inference")
    ok(run_script("train_mean_teacher.py", ["--dataset_name", "Synthetic", "--root_path", syn.root,
                                            "--train_list", syn.train_list, *TINY, "--max_iterations", "2"], cwd))
    assert (run_folder(cwd) / "iter_2.pth").is_file()
    return cwd


def crop_around_label(image, label, shape):
    """A sub-volume of ``shape`` centred on the label's centre of mass (clipped to the volume)."""
    centre = np.argwhere(label > 0).mean(0).astype(int)
    sl = tuple(slice(max(0, min(c - s // 2, n - s)), max(0, min(c - s // 2, n - s)) + s)
               for c, s, n in zip(centre, shape, label.shape))
    return image[sl], label[sl]


@pytest.fixture(scope="module")
def small(syn, tmp_path_factory):
    """Small cases (one or two 32 x 32 x 16 windows) for quick runs: two cut from the synthetic
    test cases (one narrower than the patch, so padded), one with an empty label; broken ones:
    a label value 3 (outside the two classes), NaN and inf image voxels, a 2D volume; and case
    lists."""
    out = tmp_path_factory.mktemp("small")
    root = out / "volumes"
    image, label = read_case(syn.root, syn.test_ids[0])
    write_case(root, "fit", *crop_around_label(image, label, (32, 32, 16)))
    write_case(root, "narrow", *crop_around_label(image, label, (28, 40, 16)))
    empty_image, _ = crop_around_label(image, label, (32, 32, 16))
    write_case(root, "empty_gt", empty_image, np.zeros(empty_image.shape, np.uint8))
    bad = np.zeros((32, 32, 16), np.uint8)
    bad[10:20, 10:20, 5:10] = 3
    write_case(root, "bad_label", empty_image, bad)
    fit_image, fit_label = crop_around_label(image, label, (32, 32, 16))
    nan_image = fit_image.copy()
    nan_image[:8, :8, :4] = np.nan  # 256 NaN voxels and one infinite
    nan_image[20, 20, 10] = np.inf
    write_case(root, "nan", nan_image, fit_label)
    write_case(root, "flat", fit_image[:, :, 8], fit_label[:, :, 8])  # a 2D slice
    lists = {}
    for name, ids in {"good": ["fit", "narrow"], "with_empty": ["fit", "empty_gt"], "bad_label": ["bad_label"],
                      "missing": ["fit", "ghost_1", "ghost_2"], "nan": ["fit", "nan"],
                      "all_bad": ["fit", "nan", "flat", "bad_label"]}.items():
        lists[name] = out / f"{name}.list"
        lists[name].write_text("\n".join(ids) + "\n")
    return root, lists


def run_in_process(monkeypatch, capsys, cwd, args):
    """inference.main() with ``args``; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # select_device rewrites it; restored afterwards
    monkeypatch.setattr(sys, "argv", ["inference.py", *map(str, args)])
    try:
        inference.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def small_args(small, list_name="good", windows=WINDOWS):
    root, lists = small
    return ["--dataset_name", "Synthetic", "--labelnum", "2", "--root_path", root, "--test_list", lists[list_name],
            *windows]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- #
# PNG reading for the checks (our encoder writes filter type 0 only)
# --------------------------------------------------------------------------- #
# --------------------------------------------------------------------------- #
# end to end
# --------------------------------------------------------------------------- #
def test_end_to_end_with_nifti_and_png(trained, syn):
    proc = ok(run_script("inference.py", ["--dataset_name", "Synthetic", "--labelnum", "2", "--root_path", syn.root,
                                          "--test_list", syn.test_list, *WINDOWS, "--lcc", "--save_pred",
                                          "--save_png"], trained))
    out = run_folder(trained) / "test_lcc"
    rows = read_csv(out / "metrics.csv")
    assert [r["case"] for r in rows] == syn.test_ids and all(r["class"] == "1" for r in rows)
    assert set(rows[0]) >= {"case", "class", "dice", "jaccard", "hd95", "asd", "empty_pred", "empty_gt", "lcc",
                            "predict_s", "metrics_s", "total_s"}
    assert all(r["lcc"] == "True" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"].endswith("iter_2.pth") and summary["iteration"] == 2
    assert summary["lcc"] is True and summary["flags"]["lcc"] is True and summary["model"] == "student"
    assert summary["cases"] == 2 and summary["units"] == "voxels" and summary["stride_xy"] == 32
    stats = summary["classes"]["class_1"]
    for metric in METRICS:
        values = [float(r[metric]) for r in rows]
        assert stats[metric]["mean"] == pytest.approx(np.mean(values))
        assert stats[metric]["std"] == pytest.approx(np.std(values))
    # the console: one line per case with its time, then the table, all in log.txt too
    log = (out / "log.txt").read_text()
    for case_id in syn.test_ids:
        assert any(line.startswith(f"{case_id}: class 1 Dice") and "s windows" in line for line in log.splitlines())
        assert f"{case_id}: class 1 Dice" in proc.stdout
    assert "lcc on" in proc.stdout and "95HD" in proc.stdout

    nib = pytest.importorskip("nibabel")
    for row, case_id in zip(rows, syn.test_ids):
        image, label = read_case_zscored(syn.root, case_id)  # the image as the run saw it (--normalize case)
        pred = nib.load(out / f"{case_id}_pred.nii.gz")
        assert pred.shape == label.shape and np.allclose(np.diag(pred.affine), 1.0)
        predicted = np.asarray(pred.dataobj)
        assert set(np.unique(predicted)) <= {0, 1}
        np.testing.assert_array_equal(np.asarray(nib.load(out / f"{case_id}_gt.nii.gz").dataobj), label)
        np.testing.assert_array_equal(np.asarray(nib.load(out / f"{case_id}_img.nii.gz").dataobj), image)
        (m,) = multiclass_metrics(predicted, label, 2)  # the CSV describes the saved prediction
        assert float(row["dice"]) == pytest.approx(m["dice"])
        png = (out / f"{case_id}_overlay.png").read_bytes()
        width, height = png_size(png)
        # axial (X across, Y down), coronal (X across, Z up), sagittal (Y across, Z up), 2x, 4-pixel gaps
        x, y, z = label.shape
        assert (width, height) == (2 * (x + x + y) + 8, 2 * max(y, z))
        assert decode_png(png).shape == (height, width, 3)


def test_teacher_iteration_and_lcc_off_are_recorded(trained, small, monkeypatch, capsys, tmp_path):
    code, stdout, _ = run_in_process(monkeypatch, capsys, trained,
                                     [*small_args(small, windows=WINDOWS[:4]), "--teacher", "--iteration", "2",
                                      "--out", tmp_path])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["lcc"] is False and summary["model"] == "teacher" and summary["iteration"] == 2
    assert (summary["stride_xy"], summary["stride_z"]) == (16, 8)  # the Synthetic defaults
    assert summary["checkpoint"].endswith("iter_2.pth")
    assert all(r["lcc"] == "False" for r in read_csv(tmp_path / "metrics.csv"))
    assert "lcc off" in stdout
    assert not list(tmp_path.glob("*.nii.gz")) and not list(tmp_path.glob("*.png"))


def test_images_are_read_as_the_run_read_them(trained, small, monkeypatch, capsys, tmp_path):
    """--normalize is taken from the checkpoint: "case" (the default) z-scores each image on
    its own; a checkpoint from before the flag sees the stored values."""
    seen = []
    predict = inference.sliding_window_predict
    monkeypatch.setattr(inference, "sliding_window_predict",
                        lambda model, image, *a, **k: seen.append(image) or predict(model, image, *a, **k))
    current = run_folder(trained) / "iter_2.pth"
    checkpoint = load_checkpoint(current)
    assert checkpoint["args"]["normalize"] == "case"
    torch.save({**checkpoint, "args": {k: v for k, v in checkpoint["args"].items() if k != "normalize"}},
               tmp_path / "old.pth")
    stored = [read_case(small[0], case_id)[0] for case_id in ("fit", "narrow")]
    for path, normalize in ((current, "case"), (tmp_path / "old.pth", "none")):
        seen.clear()
        code, stdout, _ = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--checkpoint", path,
                                                                         "--out", tmp_path / normalize])
        assert code == 0 and json.loads((tmp_path / normalize / "summary.json").read_text())["normalize"] == normalize
        assert ("images z-scored per case" if normalize == "case" else "images as stored") in stdout
        assert len(seen) == len(stored)
        for image, original in zip(seen, stored):
            if normalize == "none":
                np.testing.assert_array_equal(image, original)
            else:
                assert abs(image.mean()) < 1e-4 and image.std() == pytest.approx(1, abs=1e-4)
                np.testing.assert_allclose(image, (original - original.mean()) / original.std(), atol=1e-4)


def test_the_window_is_the_patch_the_checkpoint_was_trained_on(trained, small, monkeypatch, capsys, tmp_path):
    """The run trained on 32x32x16 patches (Synthetic's default is 48x48x32): without
    --patch_size the sliding window is the training patch."""
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, windows=["--stride_xy", "16",
                                                                                            "--stride_z", "8"]),
                                                                 "--out", tmp_path / "out"])
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["patch_size"] == [32, 32, 16]


@pytest.mark.parametrize("flags, amp, memory_format", [([], None, torch.channels_last_3d),
                                                 (["--amp", "1"], True, torch.channels_last_3d),
                                                 (["--amp", "0", "--channels_last", "0"], False,
                                                  torch.contiguous_format)])
def test_precision_and_layout_flags(flags, amp, memory_format, trained, small, monkeypatch, capsys, tmp_path):
    """The network runs in the layout and precision asked for (bf16 only when asked for, and
    only on a CPU with bf16 units), and the log says which."""
    seen = []
    predict = inference.sliding_window_predict
    monkeypatch.setattr(inference, "sliding_window_predict", lambda model, *a, **k: seen.append(
        (model.enc2[0].weight.is_contiguous(memory_format=memory_format), k["amp_dtype"])) or predict(model, *a, **k))
    code, stdout, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), *flags, "--out", tmp_path])
    assert code == 0, err
    assert seen and all(entry == (True, amp_dtype(torch.device("cpu"), amp)) for entry in seen)
    channels_last = ", channels_last_3d" if memory_format == torch.channels_last_3d else ""
    assert f"{precision_text(torch.device('cpu'), amp)}{channels_last}, patch" in stdout


def test_evaluations_do_not_overwrite_each_other(trained, small):
    folder = run_folder(trained)
    for extra, name in (([], "test"), (["--teacher"], "test_teacher"), (["--iteration", "2", "--teacher"],
                                                                        "test_iter_2_teacher")):
        ok(run_script("inference.py", [*small_args(small, windows=WINDOWS[:4]), *extra], trained))
        summary = json.loads((folder / name / "summary.json").read_text())
        assert summary["model"] == ("teacher" if "--teacher" in extra else "student")
    assert json.loads((folder / "test" / "summary.json").read_text())["model"] == "student"


def empty_checkpoint(trained, path):
    """The trained checkpoint with an output layer that always says background."""
    ckpt = torch.load(run_folder(trained) / "iter_2.pth", map_location="cpu", weights_only=False)
    for key in ("student", "teacher"):
        ckpt[key]["out_conv.weight"].zero_()
        ckpt[key]["out_conv.bias"].copy_(torch.tensor([20.0, -20.0]))
    torch.save(ckpt, path)
    return path


def test_empty_predictions_and_ground_truth_are_flagged(trained, small, monkeypatch, capsys, tmp_path):
    ckpt = empty_checkpoint(trained, tmp_path / "empty.pth")
    out = tmp_path / "out"
    code, stdout, _ = run_in_process(monkeypatch, capsys, trained,
                                     [*small_args(small, "with_empty"), "--checkpoint", ckpt, "--out", out])
    assert code == 0
    rows = read_csv(out / "metrics.csv")
    for row in rows:
        assert float(row["dice"]) == 0.0 and float(row["jaccard"]) == 0.0
        assert math.isnan(float(row["hd95"])) and math.isnan(float(row["asd"]))
        assert row["empty_pred"] == "True"
    assert [r["empty_gt"] for r in rows] == ["False", "True"]
    summary = json.loads((out / "summary.json").read_text())
    stats = summary["classes"]["class_1"]
    assert stats["empty_predictions"] == 2 and stats["empty_ground_truth"] == 1
    assert stats["flagged_cases"] == ["fit", "empty_gt"]
    assert stats["dice"] == {"mean": 0.0, "std": 0.0, "cases": 2}
    assert stats["hd95"] == {"mean": None, "std": None, "cases": 0}  # NaN is written as null
    assert "Dice 0" in summary["empty_masks"] and "left out" in summary["empty_masks"]
    assert "warning: case fit class 1: empty prediction" in stdout
    assert "warning: case empty_gt class 1: empty prediction and empty ground truth" in stdout
    assert "empty masks:" in stdout and "0 of 2" in stdout


def test_runs_without_nibabel_and_medpy(trained, small, monkeypatch, capsys, tmp_path):
    """The GPU machine has neither: only --save_pred needs nibabel, nothing needs medpy."""
    monkeypatch.setitem(sys.modules, "nibabel", None)  # any import of them now fails
    monkeypatch.setitem(sys.modules, "medpy", None)
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--save_png", "--out", tmp_path])
    assert code == 0, err
    assert (tmp_path / "fit_overlay.png").is_file() and (tmp_path / "narrow_overlay.png").is_file()
    code = subprocess.run([sys.executable, "-c", "import sys, inference; "
                           "sys.exit(any(m in sys.modules for m in ('nibabel', 'medpy')))"],
                          cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=120).returncode
    assert code == 0, "inference.py imports nibabel or medpy at start-up"


def test_nifti_affine_has_the_spacing(trained, small, monkeypatch, capsys, tmp_path):
    nib = pytest.importorskip("nibabel")
    code, _, err = run_in_process(monkeypatch, capsys, trained,
                                  [*small_args(small), "--save_pred", "--spacing", "0.5", "0.75", "2.0",
                                   "--out", tmp_path])
    assert code == 0, err
    for name in ("fit_pred", "narrow_img", "narrow_gt"):
        img = nib.load(tmp_path / f"{name}.nii.gz")
        np.testing.assert_allclose(img.header.get_zooms(), (0.5, 0.75, 2.0))
        np.testing.assert_allclose(np.diag(img.affine), (0.5, 0.75, 2.0, 1.0))
    assert nib.load(tmp_path / "narrow_pred.nii.gz").shape == (28, 40, 16)  # padded, cropped back
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["units"] == "mm" and summary["nifti_voxel_size"] == [0.5, 0.75, 2.0]


def test_msd_folder_with_three_classes(trained, monkeypatch, capsys, tmp_path):
    """An MSD folder (dataset.json, NIfTI): two foreground classes, per-case voxel sizes from
    the image headers in the NIfTI outputs, 95HD/ASD in voxels unless --spacing."""
    nib = pytest.importorskip("nibabel")
    root = tmp_path / "msd"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"},
                                                   "modality": {"0": "MRI"}}))
    rng = np.random.default_rng(5)
    for case_id, shape, spacing in (("m1", (32, 36, 16), (1.0, 1.0, 2.0)), ("m2", (30, 32, 18), (0.5, 0.5, 1.5))):
        label = np.zeros(shape, np.uint8)
        label[4:14, 5:20, 3:10] = 1
        label[16:26, 8:28, 5:14] = 2
        image = rng.normal(size=shape).astype(np.float32) + label
        for folder, array in (("imagesTr", image), ("labelsTr", label)):
            nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), root / folder / f"{case_id}.nii.gz")
    (root / "test.list").write_text("m1\nm2\n")
    ckpt = checkpoint_with(trained, tmp_path / "c3.pth", {"n_classes": 3})
    code, _, err = run_in_process(monkeypatch, capsys, trained,
                                  ["--dataset_name", "Synthetic", "--root_path", root, "--checkpoint", ckpt,
                                   *WINDOWS, "--save_pred", "--out", tmp_path / "out"])
    assert code == 0, err
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert [(r["case"], r["class"]) for r in rows] == [("m1", "1"), ("m1", "2"), ("m2", "1"), ("m2", "2")]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["classes"]) == {"class_1", "class_2"} and summary["units"] == "voxels"
    assert summary["nifti_voxel_size"] == "each case's image header"
    np.testing.assert_allclose(nib.load(tmp_path / "out" / "m2_pred.nii.gz").header.get_zooms(), (0.5, 0.5, 1.5))
    assert nib.load(tmp_path / "out" / "m2_pred.nii.gz").shape == (30, 32, 18)


# --------------------------------------------------------------------------- #
# bad input: exit 2 and one line
# --------------------------------------------------------------------------- #
def checkpoint_with(trained, path, claim: dict, build: dict | None = None):
    """The trained checkpoint, its network description updated with ``claim`` and its weights
    those of a VNet built with ``build`` (default: the claimed description)."""
    ckpt = torch.load(run_folder(trained) / "iter_2.pth", map_location="cpu", weights_only=False)
    config = {**ckpt["network"], **claim}
    ckpt["student"] = ckpt["teacher"] = VNet(**{**config, **(build or {})}).state_dict()
    ckpt["network"] = config
    torch.save(ckpt, path)
    return path


def labeled_only(trained, path):
    """The trained checkpoint as train_sup.py writes it: no teacher."""
    torch.save({**torch.load(run_folder(trained) / "iter_2.pth", map_location="cpu", weights_only=False),
                "teacher": None}, path)
    return path


def text_file(path):
    path.write_text("not a checkpoint")
    return path


BAD = {
    "wrong classes": (lambda t, d: ["--checkpoint", checkpoint_with(t, d / "c3.pth", {"n_classes": 3})], "3 classes"),
    "wrong channels": (lambda t, d: ["--checkpoint", checkpoint_with(t, d / "ch2.pth", {"n_channels": 2})], "2 input channels"),
    "weights do not fit": (lambda t, d: ["--checkpoint", checkpoint_with(t, d / "f8.pth", {}, {"n_filters": 8})],
                           "175 of its 205 weights have another shape (e.g. enc1.0.weight: (8, 1, 3, 3, 3) in the file"),
    "missing checkpoint": (lambda t, d: ["--checkpoint", d / "nothing.pth"], "checkpoint not found"),
    "missing iteration": (lambda t, d: ["--iteration", "99"], "iter_99.pth"),
    "no best model": (lambda t, d: ["--use_best"], "best_model.pth"),
    "no run folder": (lambda t, d: ["--exp", "nothere"], "run folder not found"),
    "not a checkpoint": (lambda t, d: ["--checkpoint", text_file(d / "text.pth")],
                         "cannot load checkpoint"),
    "stride_xy 0": (lambda t, d: ["--stride_xy", "0"], "--stride_xy"),
    "stride_xy above patch": (lambda t, d: ["--stride_xy", "33"], "--stride_xy"),
    "stride_z above patch": (lambda t, d: ["--stride_z", "17"], "--stride_z"),
    "patch not a multiple of 16": (lambda t, d: ["--patch_size", "32", "30", "16"], "multiple of 16"),
    "sw_batch 0": (lambda t, d: ["--sw_batch", "0"], "--sw_batch"),
    "iteration and best": (lambda t, d: ["--iteration", "2", "--use_best"], "not both"),
    "teacher of a labeled-only run": (lambda t, d: ["--checkpoint", labeled_only(t, d / "sup.pth"), "--teacher"],
                                      "has no teacher (a labeled-only run of train_sup.py); drop --teacher"),
}


def test_out_that_is_a_file_is_one_line(trained, small, monkeypatch, capsys, tmp_path):
    (tmp_path / "a_file").write_text("")
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--out", tmp_path / "a_file"])
    assert code == 2 and err.strip().count("\n") == 0 and "a_file is a file; name a folder" in err, err


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(case, trained, small, monkeypatch, capsys, tmp_path):
    make_args, expected = BAD[case]
    code, _, err = run_in_process(monkeypatch, capsys, trained,
                                  [*small_args(small), *make_args(trained, tmp_path), "--out", tmp_path / "out"])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


def test_missing_cases_are_one_line(trained, small, monkeypatch, capsys, tmp_path):
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "missing"), "--out", tmp_path])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 2 case(s)") and "ghost_1, ghost_2" in lines[0], err


def test_a_wrong_flag_is_one_line(trained, small, monkeypatch, capsys):
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--overwrite_all"])
    assert code == 2
    assert err.strip().splitlines() == ["error: unrecognized arguments: --overwrite_all (see inference.py --help)"]


def test_bad_input_in_a_subprocess_has_no_traceback(trained, small):
    proc = run_script("inference.py", [*small_args(small), "--checkpoint", "no/such.pth"], trained)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: checkpoint not found: no/such.pth"]


# --------------------------------------------------------------------------- #
# no silent wrong number, no lost work (issue 20)
# --------------------------------------------------------------------------- #
def predictions_made(monkeypatch):
    """The case images that reach the sliding window, recorded as inference.py runs."""
    seen = []
    predict = inference.sliding_window_predict
    monkeypatch.setattr(inference, "sliding_window_predict",
                        lambda model, image, *a, **k: seen.append(image) or predict(model, image, *a, **k))
    return seen


def files_of(folder):
    """Every file under ``folder`` with its bytes (the lock and staging folder included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_nan_image_voxels_are_refused_before_any_prediction(trained, small, monkeypatch, capsys, tmp_path):
    """Scored with exit 0 before (a Dice 6 points low on a synthetic case with a NaN block)."""
    seen = predictions_made(monkeypatch)
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "nan"), "--out", tmp_path / "out"])
    assert code == 2 and not seen
    assert err.strip().splitlines() == ["error: 1 problem(s) in the data:",
                                        f"  case nan: 257 image voxel(s) are NaN or infinite in "
                                        f"{small[0] / 'nan' / 'mri_norm2.h5'}"]
    assert not (tmp_path / "out").exists()  # nothing written, not even an empty folder


def test_every_bad_case_is_reported_at_once(trained, small, monkeypatch, capsys, tmp_path):
    """A 2D volume was a traceback in the sliding window; a bad label stopped the loop after the
    cases before it. Now: one line per problem, naming the case and file, before any prediction."""
    seen = predictions_made(monkeypatch)
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "all_bad"), "--out", tmp_path])
    assert code == 2 and not seen and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == "error: 3 problem(s) in the data:" and len(lines) == 4, err
    for line, case_id, what in zip(lines[1:], ("nan", "flat", "bad_label"),
                                   ("NaN or infinite", "expected a 3D volume", "label value(s) 3 outside")):
        assert line.startswith(f"  case {case_id}: ") and what in line and f"{case_id}/mri_norm2.h5" in line, line


def test_training_cases_are_refused_or_flagged(trained, syn, monkeypatch, capsys, tmp_path):
    """Scored with no word before. The run trained on syn.train_ids (2 labeled, 4 unlabeled)."""
    root = tmp_path / "volumes"  # one-window crops of a test case and of an unlabeled training case, under their IDs
    for case_id in (syn.test_ids[0], syn.train_ids[3]):
        write_case(root, case_id, *crop_around_label(*read_case(syn.root, case_id), (32, 32, 16)))
    mixed = tmp_path / "mixed.list"
    mixed.write_text(f"{syn.test_ids[0]}\n{syn.train_ids[3]}\n")
    args = ["--dataset_name", "Synthetic", "--labelnum", "2", "--root_path", root, "--test_list", mixed, *WINDOWS]
    seen = predictions_made(monkeypatch)
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*args, "--out", tmp_path / "refused"])
    lines = err.strip().splitlines()
    assert code == 2 and not seen and len(lines) == 1, err
    assert lines[0].startswith(f"error: 1 of the 2 cases of {mixed} were trained on (e.g. {syn.train_ids[3]}, one "
                               "of the 2 labeled and 4 unlabeled cases")
    assert "--allow_overlap" in lines[0] and not (tmp_path / "refused").exists()

    code, stdout, err = run_in_process(monkeypatch, capsys, trained,
                                       [*args, "--allow_overlap", "--out", tmp_path / "a"])
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["overlap_with_training"] == [syn.train_ids[3]] and summary["flags"]["allow_overlap"] is True
    warning = (f"warning: 1 of the 2 cases were trained on, so these scores are not held out (--allow_overlap): "
               f"{syn.train_ids[3]}")
    table_end = stdout.strip().splitlines()[-2]  # the last line says where the files went
    assert table_end == warning and (tmp_path / "a" / "log.txt").read_text().strip().splitlines()[-2] == warning

    # an old checkpoint whose training list is not on this machine: said, not refused
    checkpoint = load_checkpoint(run_folder(trained) / "iter_2.pth")
    for key in ("labeled_ids", "unlabeled_ids"):
        checkpoint.pop(key, None)
    checkpoint["args"] = {**checkpoint["args"], "train_list": "/elsewhere/train.list"}
    torch.save(checkpoint, tmp_path / "moved.pth")
    code, stdout, err = run_in_process(monkeypatch, capsys, trained,
                                       [*args, "--checkpoint", tmp_path / "moved.pth", "--out", tmp_path / "u"])
    assert code == 0, err
    summary = json.loads((tmp_path / "u" / "summary.json").read_text())
    reason = "the checkpoint's training list /elsewhere/train.list is not on this machine"
    assert summary["overlap_with_training"] is None and summary["training_cases"] == reason
    assert f"overlap with the training cases not checked: {reason}" in stdout.strip().splitlines()[-2]
    assert f"overlap with the training cases not checked: {reason}" in (tmp_path / "u" / "log.txt").read_text()


def test_a_finished_evaluation_is_kept_unless_overwrite(trained, small, monkeypatch, capsys, tmp_path):
    """Before: a bad second case left the new log.txt beside the old metrics.csv and summary.json,
    and any new evaluation replaced a finished one without a word."""
    out = tmp_path / "test"
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--save_png", "--out", out])
    assert code == 0, err
    finished = files_of(out)
    assert {"log.txt", "metrics.csv", "summary.json", "fit_overlay.png"} <= set(finished)

    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "with_empty"), "--out", out])
    assert code == 2 and files_of(out) == finished
    assert err.strip().splitlines() == [f"error: {out} holds a finished evaluation (summary.json); pass --overwrite "
                                        "to replace it, or choose another folder with --out"]
    # with --overwrite, bad data (a bad second case included) is refused before the folder is touched
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "all_bad"), "--overwrite",
                                                                 "--out", out])
    assert code == 2 and "3 problem(s)" in err and files_of(out) == finished

    code, stdout, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "with_empty"),
                                                                      "--overwrite", "--out", out])
    assert code == 0, err
    assert f"replacing a finished evaluation in {out} once this evaluation has finished" in stdout
    assert [r["case"] for r in read_csv(out / "metrics.csv")] == ["fit", "empty_gt"]
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "metrics.csv", "summary.json"]  # no old picture


def test_a_second_evaluation_waits_its_turn_and_a_killed_one_loses_nothing(trained, syn, small, monkeypatch, capsys,
                                                                           tmp_path):
    """Before: two evaluations into one folder both ran (exit 0, their log lines interleaved in
    one log.txt), and a killed one left its files beside the earlier evaluation's."""
    out = tmp_path / "test"
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--out", out])
    assert code == 0, err
    finished = files_of(out)
    slow = ["--stride_xy", "4", "--stride_z", "4"]  # hundreds of windows per case: still running when killed
    first = subprocess.Popen([sys.executable, str(REPO / "inference.py"), "--dataset_name", "Synthetic",
                              "--labelnum", "2", "--root_path", str(syn.root), "--test_list", str(syn.test_list),
                              "--patch_size", "32", "32", "16", *slow, "--overwrite", "--out", str(out)],
                             cwd=trained, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        staged_log = out / ".incomplete" / "log.txt"
        deadline = time.monotonic() + 120
        while not (staged_log.is_file() and staged_log.read_text().startswith("evaluating")):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first evaluation did not start"
            time.sleep(0.1)
        code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small), "--overwrite", "--out", out])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith(f"error: {out} is in use by another evaluation (PID {first.pid} on ")
    finally:
        first.kill()  # SIGKILL: no clean-up at all
        first.wait()
    assert {k: v for k, v in files_of(out).items() if not k.startswith(".")} == finished
    code, _, err = run_in_process(monkeypatch, capsys, trained, [*small_args(small, "with_empty"), "--overwrite",
                                                                 "--out", out])
    assert code == 0, err  # the dead process's lock is taken over, its staged files dropped
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "metrics.csv", "summary.json"]
    assert [r["case"] for r in read_csv(out / "metrics.csv")] == ["fit", "empty_gt"]
