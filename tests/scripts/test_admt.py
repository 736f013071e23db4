"""End-to-end runs of train_admt.py on the tiny synthetic dataset: it trains with two
alternating teachers (and with one), logs its own terms and the poly learning rate, saves both
teachers, resumes exactly, its checkpoints evaluate with inference.py, and bad flags or another
run's checkpoint are one error line."""
import csv
from pathlib import Path

import pytest
import torch

from conftest import TINY, log_lines, run_script
from training.schedule import poly_lr_at
from utils.dual_teachers import TeacherTurns

ADMT = "train_admt.py"
COMMON = [*TINY, "--max_iterations", "4", "--save_every", "2", "--snapshot_every", "2", "--log_every", "1",
          "--switch_period", "2"]


def data_args(syn):
    return ["--dataset_name", "Synthetic", "--root_path", syn.root, "--train_list", syn.train_list]


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def run_dir(cwd, exp="vnet", model="ADMT"):
    return Path(cwd) / "model" / f"Synthetic_{exp}_2_labeled" / model


def scalars_csv(folder) -> dict:
    """{(iteration, name): value} of the run's scalars.csv, the last value of each."""
    with open(Path(folder) / "scalars.csv", newline="") as f:
        return {(int(r["iteration"]), r["name"]): r["value"] for r in csv.DictReader(f)}


def named(scalars: dict, name: str) -> dict:
    return {i: float(v) for (i, n), v in scalars.items() if n == name}


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def one_error_line(proc, message):
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def admt_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("admt")
    ok(run_script(ADMT, [*data_args(syn), *COMMON], cwd))
    return cwd, run_dir(cwd)


@pytest.fixture(scope="module")
def one_teacher_run(syn, tmp_path_factory):
    """One teacher, and the official code's fixed confidence threshold."""
    cwd = tmp_path_factory.mktemp("admt1")
    ok(run_script(ADMT, [*data_args(syn), *COMMON, "--teachers", "1", "--threshold_rule", "fixed"], cwd))
    return cwd, run_dir(cwd)


def test_logs_its_terms_every_iteration(admt_run):
    _, folder = admt_run
    lines = log_lines(folder)
    assert len(lines) == 4
    assert all("loss/unsupervised" in line and "train/turn" in line for line in lines)
    scalars = scalars_csv(folder)
    for name in ("loss/total", "loss/supervised", "loss/unsupervised", "train/consistency_weight",
                 "train/confident_share", "train/teacher_conflict", "train/from_student", "train/turn", "train/lr"):
        assert sorted(named(scalars, name)) == [1, 2, 3, 4], name
    for name in ("train/confident_share", "train/teacher_conflict", "train/from_student"):
        assert all(0.0 <= v <= 1.0 for v in named(scalars, name).values()), name
    assert set(named(scalars, "train/turn").values()) <= {0.0, 1.0}
    assert named(scalars, "train/turn")[1] == 0.0  # teacher A's turn first
    # the student only settles voxels where the teachers conflict
    conflict, from_student = named(scalars, "train/teacher_conflict"), named(scalars, "train/from_student")
    assert all(from_student[i] <= conflict[i] for i in conflict)
    # total = supervised + weight x unsupervised
    total, sup, unsup = (named(scalars, n) for n in ("loss/total", "loss/supervised", "loss/unsupervised"))
    weight = named(scalars, "train/consistency_weight")
    assert all(total[i] == pytest.approx(sup[i] + weight[i] * unsup[i], rel=1e-5) for i in total)


def test_class_thresholds_start_at_the_global_one_and_follow_the_reach(admt_run):
    """--threshold_rule reach (the default): every class at 0.8 before any batch, then the best
    class at 0.8 and the others at most that; the checkpoint keeps the reach."""
    _, folder = admt_run
    scalars = scalars_csv(folder)
    per_class = [named(scalars, f"train/threshold_class{c}") for c in (0, 1)]
    assert all(sorted(t) == [1, 2, 3, 4] for t in per_class)
    assert [t[1] for t in per_class] == [pytest.approx(0.8), pytest.approx(0.8)]
    for i in (2, 3, 4):
        assert max(t[i] for t in per_class) == pytest.approx(0.8)
        assert all(0.0 < t[i] <= 0.8 + 1e-6 for t in per_class)
    reach = load(folder / "iter_4.pth")["class_reach"]["reach"]
    assert reach.shape == (2,) and bool(((reach > 0) & (reach <= 1)).all())


def test_turns_follow_the_seeded_alternation(admt_run):
    """The logged turns are TeacherTurns(--switch_period 2, seed 1337)'s (the scripts' default seed)."""
    _, folder = admt_run
    turns = named(scalars_csv(folder), "train/turn")
    expected = TeacherTurns(2, 1337)
    assert [int(turns[i]) for i in range(1, 5)] == [expected.turn(i) for i in range(4)]


def test_learning_rate_follows_poly_decay(admt_run):
    _, folder = admt_run
    lr = named(scalars_csv(folder), "train/lr")
    assert lr[1] == 0.01
    assert all(lr[i] > lr[i + 1] for i in (1, 2, 3))
    assert all(lr[i] == pytest.approx(poly_lr_at(i - 1, 0.01, 4), rel=1e-9) for i in lr)
    assert "train/lr 0.01" in log_lines(folder)[0]


def test_checkpoint_holds_student_and_both_teachers(admt_run):
    _, folder = admt_run
    for name in ("iter_2.pth", "iter_4.pth", "latest.pth"):
        assert (folder / name).is_file(), name
    state = load(folder / "iter_4.pth")
    assert state["method"] == "AD-MT"
    assert state["iteration"] == 4
    for key in ("student", "teacher", "teacher_b"):
        assert isinstance(state[key], dict) and state[key], key
    assert state["student"].keys() == state["teacher"].keys() == state["teacher_b"].keys()
    # each teacher follows the student in its own turns only: the two differ
    differing = [k for k, v in state["teacher"].items()
                 if v.is_floating_point() and not torch.equal(v, state["teacher_b"][k])]
    assert differing
    # BatchNorm's integer batch count is not averaged: each model counts its own train-mode
    # passes (the student every iteration, a teacher in its own turns only)
    turns = [TeacherTurns(2, 1337).turn(i) for i in range(4)]
    assert 0 in turns and 1 in turns  # both teachers had a turn in these 4 iterations
    for key, passes in (("student", 4), ("teacher", turns.count(0)), ("teacher_b", turns.count(1))):
        counts = {int(v) for k, v in state[key].items() if k.endswith("num_batches_tracked")}
        assert counts == {passes}, (key, counts)


def test_resume_continues_exactly(syn, admt_run, tmp_path):
    """Resumed from the uninterrupted run's iter_2.pth in another folder: iterations 3 and 4 log
    the same losses, to the last digit, and end with the same weights."""
    _, whole = admt_run
    ok(run_script(ADMT, [*data_args(syn), *COMMON, "--exp", "resumed", "--resume", whole / "iter_2.pth"], tmp_path))
    folder = run_dir(tmp_path, exp="resumed")
    resumed, uninterrupted = scalars_csv(folder), scalars_csv(whole)
    later = {k: v for k, v in uninterrupted.items() if k[0] > 2 and (k[1].startswith("loss") or k[1].startswith("train"))}
    assert len(later) >= 2 * 9
    assert all(resumed[k] == v for k, v in later.items()), {k: (resumed.get(k), v) for k, v in later.items()}
    assert log_lines(folder, "resumed after iteration 2")
    a, b = load(folder / "iter_4.pth"), load(whole / "iter_4.pth")
    for key in ("student", "teacher", "teacher_b"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in b[key]), key


def test_one_teacher_runs_without_conflicts(one_teacher_run):
    _, folder = one_teacher_run
    lines = log_lines(folder)
    assert len(lines) == 4 and all("train/teacher_conflict 0," in line for line in lines)
    scalars = scalars_csv(folder)
    assert all(v == 0.0 for v in named(scalars, "train/teacher_conflict").values())
    assert all(v == 0.0 for v in named(scalars, "train/from_student").values())
    state = load(folder / "iter_4.pth")
    assert state["method"] == "AD-MT"
    assert state["student"] and state["teacher"]
    assert "teacher_b" not in state  # the session saves only the models a run has
    assert "class_reach" not in state  # --threshold_rule fixed keeps no reach
    assert not named(scalars, "train/threshold_class0")
    assert state["args"]["teachers"] == 1
    # the one teacher follows (in train mode) every iteration
    assert {int(v) for k, v in state["teacher"].items() if k.endswith("num_batches_tracked")} == {4}


@pytest.mark.parametrize("which", ["two", "one"])
def test_checkpoints_evaluate_with_inference(which, syn, admt_run, one_teacher_run):
    cwd, _ = admt_run if which == "two" else one_teacher_run
    proc = ok(run_script("inference.py", ["--dataset_name", "Synthetic", "--root_path", syn.root, "--test_list",
                                          syn.test_list, "--labelnum", "2", "--model", "ADMT", "--teacher",
                                          "--patch_size", "32", "32", "16"], cwd))
    assert "written to" in proc.stdout


@pytest.mark.parametrize("flags,message", [
    (["--conf_threshold", "1.5"], "--conf_threshold is a softmax probability"),
    (["--conf_threshold", "-0.1"], "--conf_threshold is a softmax probability"),
    (["--consistency", "-1"], "--consistency must be a non-negative number"),
    (["--consistency", "nan"], "--consistency must be a non-negative number"),
    (["--consistency_rampup", "-5"], "--consistency_rampup must be a non-negative number"),
    (["--switch_period", "0"], "--switch_period must be at least 1"),
    (["--ema_decay", "1.5"], "--ema_decay must be between 0 and 1"),
    (["--teachers", "3"], "--teachers"),
    (["--lr_schedule", "cosine"], "--lr_schedule"),
    (["--threshold_rule", "adaptive"], "--threshold_rule"),
    (["--labeled_bs", "4", "--batch_size", "4"], "--labeled_bs (4) must be smaller than --batch_size (4)"),
])
def test_bad_flags_are_one_error_line(flags, message, syn, tmp_path):
    proc = run_script(ADMT, [*data_args(syn), *COMMON, *flags], tmp_path)
    one_error_line(proc, message)
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").rglob("*.pth"))


def test_a_mean_teacher_checkpoint_is_not_resumed(syn, tmp_path):
    ok(run_script("train_mean_teacher.py", [*data_args(syn), *TINY, "--max_iterations", "2", "--log_every", "1"],
                  tmp_path))
    checkpoint = run_dir(tmp_path, model="MT")
    assert load(checkpoint / "iter_2.pth")["method"] == "Mean Teacher"
    proc = run_script(ADMT, [*data_args(syn), *COMMON, "--exp", "other", "--resume", checkpoint / "iter_2.pth"],
                      tmp_path)
    one_error_line(proc, "is a Mean Teacher checkpoint and this is AD-MT training")
    assert not run_dir(tmp_path, exp="other").exists() or not any(run_dir(tmp_path, exp="other").glob("*.pth"))


def test_a_two_teacher_checkpoint_is_not_resumed_with_one(syn, admt_run, tmp_path):
    _, folder = admt_run
    proc = run_script(ADMT, [*data_args(syn), *COMMON, "--teachers", "1", "--exp", "other",
                             "--resume", folder / "iter_2.pth"], tmp_path)
    one_error_line(proc, "--teachers 2 (not 1)")


def test_a_one_teacher_checkpoint_is_not_resumed_with_two(syn, one_teacher_run, tmp_path):
    _, folder = one_teacher_run
    proc = run_script(ADMT, [*data_args(syn), *COMMON, "--exp", "other", "--resume", folder / "iter_2.pth"], tmp_path)
    one_error_line(proc, "--teachers 1 (not 2)")


def test_a_checkpoint_from_before_the_threshold_rule_resumes_only_with_the_fixed_one(syn, one_teacher_run, tmp_path):
    """A checkpoint saved before --threshold_rule existed (no such flag, no reach) was trained with
    the fixed threshold: the default rule refuses it in one line, --threshold_rule fixed goes on."""
    _, folder = one_teacher_run
    state = load(folder / "iter_2.pth")
    del state["args"]["threshold_rule"]
    old = tmp_path / "old.pth"
    torch.save(state, old)
    proc = run_script(ADMT, [*data_args(syn), *COMMON, "--teachers", "1", "--exp", "other", "--resume", old],
                      tmp_path)
    one_error_line(proc, "resume it with --threshold_rule fixed")
    assert not run_dir(tmp_path, exp="other").exists()  # refused before anything is written
    ok(run_script(ADMT, [*data_args(syn), *COMMON, "--teachers", "1", "--threshold_rule", "fixed", "--exp", "other",
                         "--resume", old], tmp_path))
    assert load(run_dir(tmp_path, exp="other") / "iter_4.pth")["iteration"] == 4
