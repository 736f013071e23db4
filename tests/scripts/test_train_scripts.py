"""End-to-end runs of train_mean_teacher.py and train_sup.py on a tiny synthetic dataset,
each from its own scratch working directory (the scripts write model/... relative to it)."""
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, TINY, log_lines, read_scalars, run_script, script_env, write_case
from networks.vnet import VNet
from utils.checkpoint import load_checkpoint
from utils.device import precision_text

MT, SUP = "train_mean_teacher.py", "train_sup.py"
LOSS_TAGS = ("loss/total", "loss/supervised", "loss/consistency")


def data_args(syn):
    return ["--dataset_name", "Synthetic", "--root_path", syn.root, "--train_list", syn.train_list]


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def run_dir(cwd, model="MT", exp="vnet", labelnum=2, dataset="Synthetic"):
    return Path(cwd) / "model" / f"{dataset}_{exp}_{labelnum}_labeled" / model


def rebuild(ckpt, key):
    network = ckpt["network"]
    model = VNet(n_classes=network["n_classes"], **{k: v for k, v in network.items() if k != "n_classes"})
    model.load_state_dict(ckpt[key], strict=True)
    return model


# latest.pth every 3 iterations (and at the end), iter_N.pth every 2
FULL = [*TINY, "--max_iterations", "4", "--save_every", "3", "--snapshot_every", "2", "--log_every", "1",
        "--val_every", "2"]


def dev_split(syn, cwd) -> list:
    """The flags of a development split written into ``cwd``: the first 4 training cases to
    train on, the last 2 to validate on (the test list may not be a validation list)."""
    (cwd / "dev_train.list").write_text("\n".join(syn.train_ids[:4]) + "\n")
    (cwd / "dev_val.list").write_text("\n".join(syn.train_ids[4:]) + "\n")
    return [*data_args(syn), "--train_list", cwd / "dev_train.list", "--val_list", cwd / "dev_val.list"]


@pytest.fixture(scope="module")
def mt_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("mt")
    proc = run_script(MT, [*dev_split(syn, cwd), *FULL], cwd)
    return proc, run_dir(cwd, "MT")


@pytest.fixture(scope="module")
def sup_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sup")
    # bf16 where the CPU has it, with the default learning rate: the 2x2x1 bottleneck of this patch
    # is where oneDNN's bf16 weight gradient broke before networks.vnet.Conv3x3x3
    proc = run_script(SUP, [*dev_split(syn, cwd), *FULL, "--amp", "1"], cwd)
    return proc, run_dir(cwd, "SUP")


SHORT = [*TINY, "--max_iterations", "3", "--save_every", "3", "--log_every", "1", "--deterministic", "1"]
# The fast path in fp32 (its channels_last layout and in-memory data included) against the
# original path, whatever this CPU's bf16 support.
FAST_FP32 = ["--data_on_device", "1", "--foreach", "1", "--channels_last", "1", "--amp", "0"]
PLAIN = ["--data_on_device", "0", "--num_workers", "0", "--foreach", "0", "--channels_last", "0", "--amp", "0"]


@pytest.fixture(scope="module")
def fast_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("fast")
    proc = run_script(MT, [*data_args(syn), *SHORT, *FAST_FP32], cwd)
    return ok(proc), run_dir(cwd, "MT")


@pytest.fixture(scope="module")
def plain_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("plain")
    proc = run_script(MT, [*data_args(syn), *SHORT, *PLAIN], cwd)
    return proc, run_dir(cwd, "MT")


# ------------------------------------------------------------------ full runs
@pytest.mark.parametrize("which", ["mt", "sup"])
def test_run_writes_everything(which, mt_run, sup_run, syn):
    proc, folder = mt_run if which == "mt" else sup_run
    ok(proc)
    for name in ("iter_2.pth", "iter_4.pth", "latest.pth", "best_model.pth", "log.txt", "config.json"):
        assert (folder / name).is_file(), name
    assert sorted(p.name for p in folder.glob("iter_*.pth")) == ["iter_2.pth", "iter_4.pth"]
    assert not list(folder.glob(".*.tmp")), "no temporary checkpoint left behind"
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((folder / "config.json").read_text())
    assert {"args", "runtime", "git_commit"} <= set(config)
    assert config["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", config["git_commit"])
    assert config["runtime"]["torch"] == torch.__version__
    args = config["args"]
    assert args["patch_size"] == [32, 32, 16] and args["labelnum"] == 2 and args["max_iterations"] == 4
    assert args["dataset_name"] == "Synthetic" and args["model"] == ("MT" if which == "mt" else "SUP")
    lines = log_lines(folder)
    for i in range(1, 5):
        assert any(line.startswith(f"iteration {i}: loss/total ") for line in lines), i
    assert sum("val/dice" in line for line in lines) == 2
    assert "2 labeled" in (folder / "log.txt").read_text()
    amp = True if which == "sup" else None  # the labeled-only run asks for bf16, where the CPU has it
    assert f"{precision_text(torch.device('cpu'), amp)}, channels_last_3d layout" in log_lines(folder, "")
    done = log_lines(folder, "done:")
    assert len(done) == 1 and re.fullmatch(r"done: 4 iterations \(4 in this process, [0-9.]+ s\); speed: .*", done[0]), done


@pytest.mark.parametrize("which", ["mt", "sup"])
def test_checkpoints_rebuild_strictly(which, mt_run, sup_run):
    proc, folder = mt_run if which == "mt" else sup_run
    ok(proc)
    ckpt = load_checkpoint(folder / "iter_4.pth")
    assert ckpt["iteration"] == 4
    assert load_checkpoint(folder / "iter_2.pth")["iteration"] == 2
    latest = load_checkpoint(folder / "latest.pth")
    assert latest["iteration"] == 4
    assert {"optimizer", "scaler", "random_states", "args"} <= set(latest)
    assert {"python", "numpy", "torch"} <= set(latest["random_states"])
    for key in ("student", "teacher"):
        if ckpt[key] is not None:
            assert all(torch.equal(latest[key][k], v) for k, v in ckpt[key].items()), key
    assert ckpt["network"]["n_classes"] == 2 and ckpt["network"]["n_channels"] == 1
    student = rebuild(ckpt, "student").eval()
    with torch.no_grad():
        out = student(torch.zeros(1, 1, 32, 32, 16))
    assert out.shape == (1, 2, 32, 32, 16) and torch.isfinite(out).all()
    if which == "mt":
        teacher = rebuild(ckpt, "teacher")
        differs = [not torch.equal(a, b) for a, b in zip(student.parameters(), teacher.parameters())]
        assert any(differs), "after 4 updates the EMA teacher is not a copy of the student"
    else:
        assert ckpt["teacher"] is None
    best = load_checkpoint(folder / "best_model.pth")
    assert 0.0 <= best["val_dice"] <= 1.0
    assert best["iteration"] in (2, 4)
    rebuild(best, "student")


def test_mt_logs_consistency_terms(mt_run):
    ok(mt_run[0])
    scalars = read_scalars(mt_run[1])
    for tag in (*LOSS_TAGS, "train/consistency_weight", "train/lr", "val/dice"):
        assert tag in scalars, tag
    assert sorted(scalars["loss/total"]) == [0, 1, 2, 3]
    # iteration // 150 == 0 in a 4-iteration run: weight = 0.1 * exp(-5)
    for w in scalars["train/consistency_weight"].values():
        assert w == pytest.approx(0.1 * math.exp(-5), rel=1e-5)
    for step, total in scalars["loss/total"].items():
        expected = scalars["loss/supervised"][step] + 0.1 * math.exp(-5) * scalars["loss/consistency"][step]
        assert total == pytest.approx(expected, rel=1e-5)
    assert all(v == pytest.approx(0.01) for v in scalars["train/lr"].values())


# ------------------------------------------------------------------ data paths and determinism
def test_plain_data_path_runs(plain_run):
    proc, folder = plain_run
    ok(proc)
    ckpt = load_checkpoint(folder / "iter_3.pth")
    rebuild(ckpt, "student")
    rebuild(ckpt, "teacher")
    assert len(log_lines(folder)) == 3


def test_deterministic_runs_log_identical_losses(syn, fast_run, tmp_path):
    _, first = fast_run
    ok(run_script(MT, [*data_args(syn), *SHORT, *FAST_FP32], tmp_path))
    second = run_dir(tmp_path, "MT")
    a, b = log_lines(first), log_lines(second)
    assert len(a) == 3 and a == b
    sa, sb = read_scalars(first), read_scalars(second)
    for tag in LOSS_TAGS:
        assert sa[tag] == sb[tag], tag


def compare_losses(plain_dir, fast_dir):
    """The first step's losses agree to float rounding (same batch, same weights); later ones
    drift a little, as the two layouts sum the convolutions in different orders."""
    plain, fast = read_scalars(plain_dir), read_scalars(fast_dir)
    for tag in LOSS_TAGS:
        assert sorted(plain[tag]) == sorted(fast[tag]) == [0, 1, 2]
        for step in plain[tag]:
            assert plain[tag][step] == pytest.approx(fast[tag][step], rel=1e-5 if step == 0 else 2e-3), (tag, step)


def test_plain_and_fast_paths_log_same_losses(plain_run, fast_run):
    ok(plain_run[0])
    compare_losses(plain_run[1], fast_run[1])


# ------------------------------------------------------------------ paths with spaces
@pytest.fixture(scope="module")
def spaces_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("spaces")
    data = cwd / "my data"
    shutil.copytree(syn.out, data)
    (data / "train.list").write_text("\n".join(syn.train_ids[:4]) + "\n")
    (data / "val.list").write_text("\n".join(syn.train_ids[4:]) + "\n")
    args = ["--dataset_name", "Synthetic", "--root_path", "my data/volumes", "--val_list", "my data/val.list",
            "--exp", "with space", *TINY, "--max_iterations", "2", "--val_every", "2", "--save_every", "2"]
    return run_script(MT, args, cwd), run_dir(cwd, "MT", exp="with space")


def test_paths_with_spaces(spaces_run):
    proc, folder = spaces_run
    ok(proc)
    assert (folder / "iter_2.pth").is_file() and (folder / "best_model.pth").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["args"]["root_path"].endswith("my data/volumes")
    assert config["args"]["train_list"].endswith("my data/train.list")  # the default list beside the data


def test_config_paths_are_absolute(spaces_run):
    proc, folder = spaces_run
    ok(proc)
    args = json.loads((folder / "config.json").read_text())["args"]
    for key in ("root_path", "train_list", "val_list"):
        assert os.path.isabs(args[key]), (key, args[key])


# ------------------------------------------------------------------ real data
def test_real_la_data(tmp_path):
    la_root = os.environ.get("LA_ROOT")
    if not la_root or not Path(la_root).is_dir():
        pytest.skip("set LA_ROOT to the LA training folder (with mri_norm2.h5 cases) to run this test")
    cases = sorted(p.name for p in Path(la_root).iterdir() if (p / "mri_norm2.h5").is_file())[:2]
    assert len(cases) == 2, f"need 2 cases in {la_root}"
    train_list = tmp_path / "train.list"
    train_list.write_text("\n".join(cases) + "\n")
    proc = ok(run_script(MT, ["--root_path", la_root, "--train_list", train_list, "--labelnum", "1",
                              "--batch_size", "2", "--labeled_bs", "1", "--patch_size", "64", "64", "48",
                              "--max_iterations", "2"], tmp_path))
    folder = run_dir(tmp_path, "MT", labelnum=1, dataset="LA")
    ckpt = load_checkpoint(folder / "iter_2.pth")
    rebuild(ckpt, "student")
    rebuild(ckpt, "teacher")
    assert "1 labeled case, 1 unlabeled (1 with labels not used: --labelnum 1)" in proc.stdout


# ------------------------------------------------------------------ bad input
def assert_user_error(proc, *fragments):
    """Exit 2 and one ``error:`` line on stderr, or, for problems in the data, an
    ``error: N problem(s) in the data:`` line followed by N indented lines."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), proc.stderr
    problems = re.fullmatch(r"error: (\d+) problem\(s\) in the data:", lines[0])
    if problems:
        assert len(lines) == 1 + int(problems.group(1)), proc.stderr
        assert all(line.startswith("  case ") for line in lines[1:]), proc.stderr
    else:
        assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    return lines


def bad_lists(tmp_path, syn):
    ids = syn.train_ids
    (tmp_path / "missing_case.list").write_text("\n".join([ids[0], "ghost_case", *ids[1:]]) + "\n")
    (tmp_path / "twice.list").write_text("\n".join([*ids, ids[1]]) + "\n")
    (tmp_path / "some_train.list").write_text("\n".join(ids[:4]) + "\n")
    (tmp_path / "val_with_a_test_case.list").write_text(f"{ids[5]}\n{syn.test_ids[0]}\n")


def flat_case_folder(tmp_path, syn) -> list:
    """The synthetic cases with a 2D image and label (one slice) in place of the second case."""
    root = tmp_path / "flat" / "volumes"
    shutil.copytree(syn.root, root)
    image = np.zeros((64, 64), np.float32)
    write_case(root, syn.train_ids[1], image, image.astype(np.uint8))
    return ["--dataset_name", "Synthetic", "--root_path", root, "--train_list", syn.train_list]


def msd_folder_without_json(tmp_path, syn) -> list:
    (tmp_path / "msd" / "imagesTr").mkdir(parents=True)
    (tmp_path / "msd" / "labelsTr").mkdir()
    return ["--dataset_name", "Hippocampus", "--root_path", tmp_path / "msd"]


BAD_INPUT = {
    "missing data folder": (MT, lambda t, s: ["--dataset_name", "LA", "--root_path", t / "nowhere", *TINY],
                            ["data folder not found", "nowhere"]),
    "missing data folder sup": (SUP, lambda t, s: ["--dataset_name", "LA", "--root_path", t / "nowhere", *TINY],
                                ["data folder not found"]),
    "missing list": (MT, lambda t, s: [*data_args(s), "--train_list", t / "nolist.list", *TINY],
                     ["case list not found", "nolist.list"]),
    "missing val list": (MT, lambda t, s: [*data_args(s), "--val_list", t / "noval.list", *TINY],
                         ["case list not found", "noval.list"]),
    "missing case": (MT, lambda t, s: [*data_args(s), "--train_list", t / "missing_case.list", *TINY],
                     ["1 problem(s) in the data", "case ghost_case:", "'ghost_case'", "does not exist"]),
    "missing case sup": (SUP, lambda t, s: [*data_args(s), "--train_list", t / "missing_case.list", *TINY],
                         ["'ghost_case'"]),
    "case twice": (MT, lambda t, s: [*data_args(s), "--train_list", t / "twice.list", *TINY],
                   ["listed twice", "lines 2 and 7"]),
    "labelnum too large": (MT, lambda t, s: [*data_args(s), *TINY, "--labelnum", "10"],
                           ["--labelnum 10", "6 cases"]),
    "labelnum too large sup": (SUP, lambda t, s: [*data_args(s), *TINY, "--labelnum", "7"], ["--labelnum 7"]),
    "all labeled mt": (MT, lambda t, s: [*data_args(s), *TINY, "--labelnum", "6"], ["no unlabeled"]),
    "labeled_bs == batch_size": (MT, lambda t, s: [*data_args(s), *TINY, "--labeled_bs", "4"],
                                 ["--labeled_bs (4)", "--batch_size (4)"]),
    "labeled_bs > batch_size": (MT, lambda t, s: [*data_args(s), *TINY, "--labeled_bs", "5"], ["--labeled_bs"]),
    "patch too large": (MT, lambda t, s: [*data_args(s), *TINY, "--patch_size", "96", "32", "16"],
                        ["larger than every volume", "axis 0"]),
    # the volumes have at most 36 slices: 48 (the VNet's next multiple of 16) is padded, 64 is a wrong flag
    "patch too large sup": (SUP, lambda t, s: [*data_args(s), *TINY, "--patch_size", "32", "32", "64"],
                            ["axis 2"]),
    "patch not multiple of 16": (MT, lambda t, s: [*data_args(s), *TINY, "--patch_size", "30", "32", "16"],
                                 ["multiples of 16", "30 32 16"]),
    "patch zero": (SUP, lambda t, s: [*data_args(s), *TINY, "--patch_size", "32", "0", "16"], ["multiples of 16"]),
    "negative crop_margin": (SUP, lambda t, s: [*data_args(s), *TINY, "--crop_margin", "0", "0", "-2"],
                             ["--crop_margin", "0 0 -2"]),
    "max_iterations 0": (MT, lambda t, s: [*data_args(s), *TINY, "--max_iterations", "0"], ["--max_iterations"]),
    "save_every 0": (MT, lambda t, s: [*data_args(s), *TINY, "--save_every", "0"], ["--save_every"]),
    "snapshot_every 0": (SUP, lambda t, s: [*data_args(s), *TINY, "--snapshot_every", "0"], ["--snapshot_every"]),
    "max_samples 0": (MT, lambda t, s: [*data_args(s), *TINY, "--max_samples", "0"], ["--max_samples", "got 0"]),
    "negative lr decay": (SUP, lambda t, s: [*data_args(s), *TINY, "--lr_decay_every", "-5"], ["--lr_decay_every"]),
    "negative base_lr": (SUP, lambda t, s: [*data_args(s), *TINY, "--base_lr", "-1"], ["--base_lr", "positive"]),
    "base_lr nan": (MT, lambda t, s: [*data_args(s), *TINY, "--base_lr", "nan"], ["--base_lr", "got nan"]),
    "ema_decay above 1": (MT, lambda t, s: [*data_args(s), *TINY, "--ema_decay", "1.5"], ["--ema_decay", "1.5"]),
    "negative consistency": (MT, lambda t, s: [*data_args(s), *TINY, "--consistency", "-0.1"], ["--consistency"]),
    "negative noise": (MT, lambda t, s: [*data_args(s), *TINY, "--noise_std", "-1"], ["--noise_std"]),
    "negative seed": (SUP, lambda t, s: [*data_args(s), *TINY, "--seed", "-1"], ["--seed", "got -1"]),
    "seed too large": (MT, lambda t, s: [*data_args(s), *TINY, "--seed", str(2 ** 32)], ["--seed"]),
    "negative workers": (MT, lambda t, s: [*data_args(s), *TINY, "--data_on_device", "0", "--num_workers", "-1"],
                         ["--num_workers", "got -1"]),
    "crop_margin as large as the patch": (SUP, lambda t, s: [*data_args(s), *TINY, "--crop_margin", "0", "0", "16"],
                                          ["--crop_margin", "less than the patch", "0 0 16"]),
    "batch_size 0": (SUP, lambda t, s: [*data_args(s), *TINY, "--batch_size", "0"], ["--batch_size"]),
    # before: tracebacks, a misleading message, or the 26-line usage first (issue 20)
    "2D volume": (MT, lambda t, s: [*flat_case_folder(t, s), *TINY], ["1 problem(s) in the data",
                                                                     "expected a 3D volume (X, Y, Z)", "(64, 64)"]),
    "2D volume check_data": (SUP, lambda t, s: [*flat_case_folder(t, s), *TINY, "--check_data"],
                             ["expected a 3D volume"]),
    "MSD folder without dataset.json": (MT, lambda t, s: [*msd_folder_without_json(t, s), *TINY],
                                        ["imagesTr/ folder", "no dataset.json"]),
    "unknown flag": (MT, lambda t, s: [*data_args(s), *TINY, "--bogus", "1"],
                     ["unrecognized arguments: --bogus 1", "train_mean_teacher.py --help"]),
    "bad choice sup": (SUP, lambda t, s: [*data_args(s), *TINY, "--normalize", "zscore"],
                       ["--normalize: invalid choice: 'zscore'", "train_sup.py --help"]),
    "check_data patch larger than every volume": (SUP, lambda t, s: [*data_args(s), *TINY, "--patch_size", "96", "32",
                                                                     "16", "--check_data"],
                                                  ["larger than every volume", "axis 0"]),
    "val list is the test list": (MT, lambda t, s: [*data_args(s), "--train_list", t / "some_train.list",
                                                    "--val_list", s.test_list, *TINY],
                                  ["is the dataset's test list", "best_model.pth would be chosen on test cases"]),
    "val list with a test case": (SUP, lambda t, s: [*data_args(s), "--train_list", t / "some_train.list",
                                                     "--val_list", t / "val_with_a_test_case.list", *TINY],
                                  ["shares 1 case(s)", "test list"]),
    "val list overlaps training": (MT, lambda t, s: [*data_args(s), "--val_list", s.train_list, *TINY],
                                   ["6 of its cases are training cases of this run", "held out of training"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(case, syn, tmp_path):
    script, make_args, fragments = BAD_INPUT[case]
    bad_lists(tmp_path, syn)
    proc = run_script(script, [*make_args(tmp_path, syn), "--max_iterations", "1"] if case != "max_iterations 0"
                      else make_args(tmp_path, syn), tmp_path)
    assert_user_error(proc, *fragments)
    assert not list(tmp_path.rglob("*.pth")), "a refused run writes no checkpoint"


@pytest.mark.parametrize("script", [MT, SUP])
def test_labelnum_below_labeled_bs_is_user_error(script, syn, tmp_path):
    proc = run_script(script, [*data_args(syn), *TINY, "--labelnum", "1", "--max_iterations", "1"], tmp_path)
    assert_user_error(proc, "--labeled_bs")


def test_rerun_needs_overwrite_which_starts_the_folder_afresh(syn, tmp_path):
    args = [*data_args(syn), *TINY, "--max_iterations", "2", "--save_every", "1", "--snapshot_every", "1",
            "--log_every", "1"]
    ok(run_script(SUP, args, tmp_path))
    folder = run_dir(tmp_path, "SUP")
    first = (folder / "iter_1.pth").stat().st_mtime_ns
    assert_user_error(run_script(SUP, args, tmp_path), "already holds an earlier run's files (iter_1.pth, ",
                      "--resume", "--overwrite")
    assert (folder / "iter_1.pth").stat().st_mtime_ns == first, "the refused run must not touch the checkpoint"
    # An evaluation of the old run, and its checkpoints deleted (113 MB each): still an earlier
    # run's results. Before: only *.pth counted, and the next run deleted these without a word.
    (folder / "test").mkdir()
    (folder / "test" / "summary.json").write_text("{}")
    saved = {p.name: p.read_bytes() for p in folder.glob("*.pth")}
    for name in saved:
        (folder / name).unlink()
    kept = sorted(p.name for p in folder.iterdir())
    assert_user_error(run_script(SUP, args, tmp_path), "already holds an earlier run's files (config.json, log.txt, "
                      "scalars.csv, tensorboard/ and 1 more)")
    assert sorted(p.name for p in folder.iterdir()) == kept and (folder / "test" / "summary.json").is_file()
    for name, data in saved.items():
        (folder / name).write_bytes(data)
    (folder / ".lock").write_text('{"pid": 999999999, "host": "%s"}' % socket.gethostname())  # left by a killed run
    ok(run_script(SUP, [*args, "--max_iterations", "1", "--overwrite", "--seed", "7"], tmp_path))
    # nothing of the old run is left to be taken for the new one (inference.py picks the last iter_N.pth)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "iter_1.pth", "latest.pth", "log.txt",
                                                        "scalars.csv", "tensorboard"]
    assert (folder / "iter_1.pth").stat().st_mtime_ns != first
    assert sorted(read_scalars(folder)["loss/total"]) == [0]
    log = (folder / "log.txt").read_text()
    assert log.count("run folder ") == 1 and "removed the earlier run's files from the folder" in log
    assert ".lock" not in log, "the lock is this run's, never an earlier run's file"


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(syn, tmp_path):
    """Before: a second run started before the first had saved a checkpoint passed the check,
    wiped the first's files, and both wrote into one scalars.csv."""
    args = [*data_args(syn), *TINY, "--max_iterations", "1000", "--save_every", "1000", "--log_every", "1"]
    folder = run_dir(tmp_path, "SUP")
    first = subprocess.Popen([sys.executable, str(REPO / SUP), *map(str, args)], cwd=tmp_path, env=script_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not ((folder / "log.txt").is_file() and log_lines(folder)):  # training, nothing saved yet
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.05)
        files = {p.name for p in folder.iterdir()}
        second = run_script(SUP, [*args, "--max_iterations", "1"], tmp_path)
        assert_user_error(second, f"{folder.relative_to(tmp_path)} is in use by another training run (PID "
                                  f"{first.pid} on {socket.gethostname()}")
        assert first.poll() is None, "the first run goes on"
        assert files <= {p.name for p in folder.iterdir()} and log_lines(folder, "run folder") == [
            f"run folder {folder.relative_to(tmp_path)}"], "the second run wrote nothing there"
    finally:
        first.kill()
        first.wait(timeout=30)
    # killed, its lock stays behind, stale (a run takes such a lock over: the test above)
    assert json.loads((folder / ".lock").read_text())["pid"] == first.pid


def test_sup_takes_more_labeled_samples_than_the_mean_teacher_batch(syn, tmp_path):
    """--batch_size is Mean Teacher's (labeled + unlabeled); labeled-only training uses --labeled_bs alone."""
    ok(run_script(SUP, [*data_args(syn), *TINY, "--labelnum", "5", "--labeled_bs", "5", "--max_iterations", "1"],
                  tmp_path))


@pytest.mark.parametrize("fill", ["zero", "mirror"])
def test_crop_margin_runs_and_is_recorded(syn, tmp_path, fill):
    ok(run_script(SUP, [*data_args(syn), *SHORT, "--crop_margin", "0", "0", "8", "--crop_fill", fill], tmp_path))
    config = json.loads((run_dir(tmp_path, "SUP") / "config.json").read_text())
    assert config["args"]["crop_margin"] == [0, 0, 8] and config["args"]["crop_fill"] == fill
