"""Runs that survive: a run killed mid-training continues with --resume exactly as if it had
never stopped, a checkpoint interrupted while being written (Ctrl-C, a full disk) never harms
the previous one, a loss that becomes NaN stops the run before anything is saved, and --resume
continues only the run it was trained as, on the data it was trained on."""
import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import utils.checkpoint as checkpoint_module
from conftest import REPO, TINY, log_lines, read_scalars, script_env
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError
from training.resume import check_same_data
from training.run_folder import RunFolder, TrainingDiverged
from training.run_folder import read_scalars as read_scalars_csv
from training.schedule import Periodic, Schedule

MT, SUP, ADMT = "train_mean_teacher.py", "train_sup.py", "train_admt.py"
LOSS_TAGS = ("loss/total", "loss/supervised", "loss/consistency")
# AD-MT's own terms, its turns included: they come from a seeded stream that is not saved
ADMT_TAGS = ("loss/total", "loss/supervised", "loss/unsupervised", "train/confident_share",
             "train/teacher_conflict", "train/from_student", "train/turn")
ITERATIONS = 10
KILL_AFTER = 5  # kill once this iteration is in the log
# latest.pth every 2 iterations; iter_N.pth only at the end
RESUMABLE = [*TINY, "--max_iterations", str(ITERATIONS), "--save_every", "2", "--log_every", "1",
             "--deterministic", "1"]
PATHS = {"on device": ["--data_on_device", "1"], "loader, 2 workers": ["--data_on_device", "0", "--num_workers", "2"]}


def env() -> dict:
    """One thread per process: these runs compare exact losses between processes, and two
    OpenMP threads per process on a busy 2-core machine spin-wait many times slower."""
    return {**script_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_script(script: str, args, cwd, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / script), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def data_args(syn):
    return ["--dataset_name", "Synthetic", "--root_path", syn.root, "--train_list", syn.train_list]


def run_dir(cwd, model="MT", exp="vnet"):
    return Path(cwd) / "model" / f"Synthetic_{exp}_2_labeled" / model


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def one_error_line(proc, only: bool = True) -> str:
    """The ``error:`` line of a run that exited with 2; with ``only``, stderr holds nothing else."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    if only:
        assert len(lines) == 1, proc.stderr
    return errors[0]


def logged_iterations(folder: Path) -> list[int]:
    if not (folder / "log.txt").is_file():
        return []
    return [int(re.match(r"iteration (\d+):", line).group(1)) for line in log_lines(folder, "iteration ")]


def scalars_of(event_files, scratch: Path) -> dict:
    """read_scalars over only the given TensorBoard event files."""
    (scratch / "tensorboard").mkdir(parents=True)
    for path in event_files:
        shutil.copy(path, scratch / "tensorboard" / path.name)
    return read_scalars(scratch)


def event_files(folder: Path) -> set:
    return set((folder / "tensorboard").glob("events.out.tfevents.*"))


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_mid_run(args, cwd, folder: Path, after: int = KILL_AFTER, timeout: float = 120, script: str = MT) -> None:
    """Start a run, wait until iteration ``after`` is logged, then SIGKILL it (and its DataLoader workers)."""
    with open(Path(cwd) / "killed.out", "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while max(logged_iterations(folder), default=0) < after:
            assert proc.poll() is None, ("the run ended before it could be killed:\n"
                                         + (Path(cwd) / "killed.out").read_text()[-3000:])
            assert time.monotonic() < deadline, "the run did not reach the kill point in time"
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        try:  # DataLoader workers left behind by the killed main process: same process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL


# ------------------------------------------------------------------ (a) killed, then resumed
# (script, its model folder, its logged terms, flags): Mean Teacher on both data paths, and
# AD-MT, whose two teachers, turns and strong views must come back as they were
KILLED_RUNS = {f"MT, {path}": (MT, "MT", LOSS_TAGS, flags) for path, flags in PATHS.items()}
KILLED_RUNS["ADMT, on device"] = (ADMT, "ADMT", ADMT_TAGS, [*PATHS["on device"], "--switch_period", "3"])


@pytest.mark.parametrize("case", list(KILLED_RUNS))
def test_killed_run_resumes_with_the_same_losses(case, syn, tmp_path):
    script, model, tags, flags = KILLED_RUNS[case]
    args = [*data_args(syn), *RESUMABLE, *flags]
    reference_cwd, cwd = tmp_path / "uninterrupted", tmp_path / "killed"
    reference_cwd.mkdir()
    cwd.mkdir()
    ok(run_script(script, args, reference_cwd))
    reference = read_scalars(run_dir(reference_cwd, model))
    assert sorted(reference["loss/total"]) == list(range(ITERATIONS))

    folder = run_dir(cwd, model)
    kill_mid_run(args, cwd, folder, script=script)
    saved = load_checkpoint(folder / "latest.pth")
    start = saved["iteration"]
    assert 4 <= start < ITERATIONS and start % 2 == 0, f"killed with latest.pth at iteration {start}"
    assert not (folder / f"iter_{ITERATIONS}.pth").exists(), "the killed run must not have finished"
    before = event_files(folder)

    proc = ok(run_script(script, [*args, "--resume"], cwd))
    assert f"resumed after iteration {start}" in (folder / "log.txt").read_text()
    done = log_lines(folder, "done:")
    assert len(done) == 1 and done[0].startswith(
        f"done: {ITERATIONS} iterations ({ITERATIONS - start} in this process, "), done
    assert "Traceback" not in proc.stderr

    resumed = scalars_of(event_files(folder) - before, tmp_path / "resumed")
    for tag in (*tags, "train/consistency_weight", "train/lr"):
        assert sorted(resumed[tag]) == list(range(start, ITERATIONS)), tag
        for step in range(start, ITERATIONS):
            assert resumed[tag][step] == reference[tag][step], (tag, step)  # exactly, not approximately
    # scalars.csv (1-based, float32 values as Python floats): the killed-and-resumed run's file
    # agrees with the uninterrupted one's wherever the killed run wrote a row twice
    csv_reference, csv_resumed = read_scalars_csv(run_dir(reference_cwd, model)), read_scalars_csv(folder)
    for tag in (*tags, "train/lr"):
        assert sorted(csv_resumed[tag]) == list(range(1, ITERATIONS + 1)), tag
        assert csv_resumed[tag] == csv_reference[tag], tag
        assert all(abs(csv_reference[tag][step + 1] - reference[tag][step]) <= 1e-6 * abs(reference[tag][step])
                   for step in range(ITERATIONS)), tag

    # ... and it ends with the very same weights, teacher and optimizer state
    final, expected = load_checkpoint(folder / f"iter_{ITERATIONS}.pth"), \
        load_checkpoint(run_dir(reference_cwd, model) / f"iter_{ITERATIONS}.pth")
    assert final["iteration"] == expected["iteration"] == ITERATIONS
    for key in ("student", "teacher", *(["teacher_b"] if script == ADMT else [])):
        assert tensors_equal(final[key], expected[key]), key
    for a, b in zip(final["optimizer"]["state"].values(), expected["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_sup_resumes_from_a_snapshot_path(syn, tmp_path):
    """train_sup.py, and --resume PATH into a new run folder: the iterations after the snapshot
    are those of the run that wrote it."""
    args = [*data_args(syn), *TINY, "--max_iterations", "6", "--save_every", "3", "--snapshot_every", "3",
            "--log_every", "1", "--data_on_device", "0", "--num_workers", "0"]
    ok(run_script(SUP, args, tmp_path))
    original = run_dir(tmp_path, "SUP")
    ok(run_script(SUP, [*args, "--exp", "continued", "--resume", original / "iter_3.pth"], tmp_path))
    continued = run_dir(tmp_path, "SUP", exp="continued")
    a, b = read_scalars(original), read_scalars(continued)
    assert sorted(b["loss/total"]) == [3, 4, 5]
    for step in (3, 4, 5):
        assert a["loss/total"][step] == b["loss/total"][step], step
    assert tensors_equal(load_checkpoint(original / "iter_6.pth")["student"],
                         load_checkpoint(continued / "iter_6.pth")["student"])
    assert "resumed after iteration 3" in (continued / "log.txt").read_text()


# ------------------------------------------------------------------ (b) interrupted or failed saves
def tmp_files(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def old_checkpoint(tmp_path):
    path = tmp_path / "latest.pth"
    state = {"iteration": 2, "weights": torch.arange(1000.0)}
    save_checkpoint(state, path)
    return path, state


def assert_old_intact(path, state):
    loaded = load_checkpoint(path)
    assert loaded["iteration"] == state["iteration"] and torch.equal(loaded["weights"], state["weights"])
    assert tmp_files(path.parent) == [], "no temporary file left behind"


def half_then(exception):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        import io
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        f.flush()
        raise exception

    return save


def test_save_writes_and_leaves_no_temporary_file(tmp_path):
    path = save_checkpoint({"iteration": 1, "w": torch.ones(3)}, tmp_path / "sub" / "latest.pth")
    assert path == tmp_path / "sub" / "latest.pth"
    assert load_checkpoint(path)["iteration"] == 1
    assert tmp_files(path.parent) == []
    save_checkpoint({"iteration": 2, "w": torch.ones(3)}, path)  # replaces
    assert load_checkpoint(path)["iteration"] == 2


def test_interrupt_while_writing_keeps_previous_checkpoint(old_checkpoint, monkeypatch):
    path, state = old_checkpoint
    monkeypatch.setattr(torch, "save", half_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"iteration": 4, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert_old_intact(path, state)


def test_interrupt_at_rename_keeps_previous_checkpoint(old_checkpoint, monkeypatch):
    path, state = old_checkpoint

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"iteration": 4, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert_old_intact(path, state)


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_full_disk_is_user_error_and_keeps_previous_checkpoint(old_checkpoint, monkeypatch, where):
    path, state = old_checkpoint
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "write":
        monkeypatch.setattr(torch, "save", half_then(full))
    else:
        def fail(*args):
            raise full
        monkeypatch.setattr(checkpoint_module.os, "fsync" if where == "fsync" else "replace", fail)
    with pytest.raises(UserError) as info:
        save_checkpoint({"iteration": 4, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    message = str(info.value)
    assert str(path) in message and os.strerror(errno.ENOSPC) in message and "\n" not in message, message
    assert_old_intact(path, state)


def test_truncated_checkpoint_is_user_error(old_checkpoint):
    path, _ = old_checkpoint
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(path.parent / "missing.pth")


def test_a_real_full_disk_during_a_save_is_one_line_and_keeps_the_checkpoint(syn, tmp_path):
    """A file-size limit (RLIMIT_FSIZE, in the training process only) makes the save fail in the
    kernel as a full disk would. Before: 30 lines ending in ``RuntimeError: [enforce fail at
    inline_container.cc ...]``, torch's wrapping of the OSError."""
    args = [*data_args(syn), *TINY, "--save_every", "1", "--log_every", "1"]
    ok(run_script(SUP, [*args, "--max_iterations", "1"], tmp_path))
    folder = run_dir(tmp_path, "SUP")
    before = (folder / "latest.pth").stat()
    limit = 10 * 2 ** 20  # a labeled-only checkpoint is 75 MB; the log and scalars stay far below

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # its first save, latest.pth after iteration 2 (iteration 3 is the last, with the snapshot), hits the limit
    proc = subprocess.run([sys.executable, str(REPO / SUP), *map(str, args), "--max_iterations", "3", "--resume"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=240, preexec_fn=limited)
    line = one_error_line(proc)
    latest = folder.relative_to(tmp_path) / "latest.pth"  # as the run names it, from its working directory
    assert line.startswith(f"error: file size limit reached while writing checkpoint {latest} "
                           f"({os.strerror(errno.EFBIG)}); the previous latest.pth is intact"), line
    assert line.endswith("then continue the run with --resume"), line
    after = (folder / "latest.pth").stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert load_checkpoint(folder / "latest.pth")["iteration"] == 1 and tmp_files(folder) == []


def being_written(folder: Path) -> bool:
    """Whether a new latest.pth is being written over an earlier one: its temporary file holds
    part of the 75 MB (torch.save is writing it, not yet fsync)."""
    try:
        sizes = [os.path.getsize(folder / n) for n in os.listdir(folder) if n.startswith(".latest.pth.")]
        return (folder / "latest.pth").is_file() and any(1000 < size < 30_000_000 for size in sizes)
    except OSError:  # the folder not made yet, or the file renamed meanwhile
        return False


def test_ctrl_c_during_a_real_save_is_one_line_and_keeps_the_checkpoint(syn, tmp_path):
    """SIGINT sent to a real run while torch.save writes latest.pth. Before: 27 lines ending in
    ``RuntimeError: [enforce fail at inline_container.cc ...]`` (torch wraps the KeyboardInterrupt)."""
    folder = run_dir(tmp_path, "SUP")
    args = [*data_args(syn), *TINY, "--max_iterations", "30", "--save_every", "1", "--snapshot_every", "1000"]
    for attempt in range(3):  # the signal must land inside a save; where it landed just after one, again
        shutil.rmtree(tmp_path / "model", ignore_errors=True)
        proc = subprocess.Popen([sys.executable, str(REPO / SUP), *map(str, args)], cwd=tmp_path, env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:  # polled without pause: a save is brief
            if being_written(folder):
                proc.send_signal(signal.SIGINT)
                break
        _, stderr = proc.communicate(timeout=120)
        if "while writing checkpoint" in stderr:
            break
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"interrupted while writing checkpoint {folder.relative_to(tmp_path) / 'latest.pth'}; "
                               "the previous "
                               "latest.pth is intact"), lines[0]
    assert lines[0].endswith("then continue the run with --resume"), lines[0]
    assert tmp_files(folder) == [] and load_checkpoint(folder / "latest.pth")["iteration"] >= 1


# ------------------------------------------------------------------ (c) a loss that becomes NaN
DIVERGING = [*TINY, "--max_iterations", "10", "--save_every", "2", "--snapshot_every", "2", "--log_every", "1",
             "--base_lr", "1e6", "--deterministic", "1"]
# Either the loss turns non-finite first, or (checked before every save) the weights or
# BatchNorm statistics do while the loss still looks finite.
STOP_MESSAGE = re.compile(r"error: the (loss|student's [\w.]+|teacher's [\w.]+) became non-finite "
                          r"(?:at|by) iteration (\d+)(?: \((.*)\))?")


@pytest.fixture(scope="module")
def diverged(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("nan")
    proc = run_script(MT, [*data_args(syn), *DIVERGING], cwd)
    return proc, cwd, run_dir(cwd)


def bad_iteration(proc) -> int:
    line = one_error_line(proc, only=False)
    match = STOP_MESSAGE.match(line)
    assert match, line
    return int(match.group(2))


def test_nan_stops_the_run_with_one_error_line(diverged):
    proc, _, folder = diverged
    line = one_error_line(proc, only=False)
    bad = bad_iteration(proc)
    assert 2 <= bad <= 10, line
    match = STOP_MESSAGE.match(line)
    if match.group(1) == "loss":
        for tag in LOSS_TAGS:
            assert tag in match.group(3), (tag, line)
        assert re.search(r"loss/total (nan|inf|-inf)", match.group(3)), line
        assert max(logged_iterations(folder)) == bad - 1, "the bad iteration is not logged as a normal one"
    else:
        assert max(logged_iterations(folder)) <= bad
    assert "--resume" in line
    stopped = log_lines(folder, "STOPPED")
    assert len(stopped) == 1 and f"iteration {bad}" in stopped[0], stopped
    assert not log_lines(folder, "done:")


def test_flush_stops_on_a_non_finite_loss_without_writing_it(tmp_path):
    """The loss check itself: the iteration and every term in the message and the log,
    the scalars before it in TensorBoard, the NaN not."""
    run = RunFolder(tmp_path / "run")
    run.add_scalars(0, {"loss/total": torch.tensor(0.5), "loss/supervised": torch.tensor(0.4)})
    run.add_scalars(1, {"loss/total": torch.tensor(float("nan")), "loss/supervised": torch.tensor(0.3)})
    with pytest.raises(TrainingDiverged, match=r"non-finite at iteration 2 \(loss/total nan, loss/supervised 0.3\)"):
        run.flush_scalars()
    run.close()
    assert "STOPPED: non-finite loss at iteration 2" in (tmp_path / "run" / "log.txt").read_text()
    scalars = read_scalars(tmp_path / "run")
    assert scalars["loss/total"] == {0: 0.5}
    assert read_scalars_csv(tmp_path / "run") == {"loss/total": {1: 0.5}, "loss/supervised": {1: pytest.approx(0.4)}}


def test_nan_saves_nothing_at_or_after_the_bad_iteration(diverged):
    proc, _, folder = diverged
    bad = bad_iteration(proc)
    checkpoints = {p.name: load_checkpoint(p)["iteration"] for p in folder.glob("*.pth")}
    assert "latest.pth" in checkpoints, "the good iterations before the NaN were saved"
    assert all(iteration < bad for iteration in checkpoints.values()), (bad, checkpoints)
    assert checkpoints["latest.pth"] == max(checkpoints.values())
    assert not [name for name in checkpoints if name.startswith("iter_") and int(name[5:-4]) >= bad]
    assert tmp_files(folder) == []


def test_resume_after_nan_starts_from_the_last_good_checkpoint(diverged, syn):
    """With the same flags the resumed run meets the same NaN at the same iteration: it really
    continued from the saved iteration with the saved state."""
    proc, cwd, folder = diverged
    bad = bad_iteration(proc)
    last_good = load_checkpoint(folder / "latest.pth")["iteration"]
    first_log = (folder / "log.txt").read_text()
    again = run_script(MT, [*data_args(syn), *DIVERGING, "--resume"], cwd)
    assert bad_iteration(again) == bad
    assert one_error_line(again, only=False) == one_error_line(proc, only=False)
    added = (folder / "log.txt").read_text()[len(first_log):]
    assert f"resumed after iteration {last_good}" in added
    assert len(re.findall(rf"STOPPED: .*iteration {bad}\b", added)) == 1
    assert load_checkpoint(folder / "latest.pth")["iteration"] == last_good


def test_the_advice_after_a_nan_can_be_followed(diverged, syn, tmp_path):
    """The message says --resume with a lower --base_lr, and --resume takes it, recorded in the
    log, config.json and the checkpoints. Before: refused ("--base_lr 1000000.0 (not 0.001)")."""
    proc, cwd, folder = diverged
    assert "--resume and a lower --base_lr" in one_error_line(proc, only=False)
    copy = tmp_path / folder.relative_to(cwd)
    shutil.copytree(folder, copy)
    last_good = load_checkpoint(copy / "latest.pth")["iteration"]
    again = run_script(MT, [*data_args(syn), *DIVERGING, "--base_lr", "1e-3", "--resume"], tmp_path)
    assert again.returncode == 0 or STOP_MESSAGE.match(one_error_line(again, only=False)), again.stderr
    assert f"--base_lr lowered from the checkpoint's 1e+06 to 0.001 after iteration {last_good}" in \
        (copy / "log.txt").read_text()
    change = [{"iteration": last_good, "from": 1e6, "to": 1e-3}]
    assert json.loads((copy / "config.json").read_text())["base_lr_changes"] == change
    rates = read_scalars_csv(copy)["train/lr"]
    resumed = [rate for iteration, rate in rates.items() if iteration > last_good]
    assert resumed and all(rate == pytest.approx(1e-3) for rate in resumed), rates
    newer = [p for p in copy.glob("*.pth") if load_checkpoint(p)["iteration"] > last_good]
    assert all(load_checkpoint(p)["base_lr_changes"] == change for p in newer)
    line = one_error_line(run_script(MT, [*data_args(syn), *DIVERGING, "--base_lr", "1e7", "--resume"], tmp_path))
    assert "--base_lr" in line and "never raise it" in line


def test_nan_stderr_is_only_the_error_line(diverged):
    one_error_line(diverged[0], only=True)


def test_saved_checkpoints_hold_finite_tensors(diverged):
    proc, _, folder = diverged
    bad_iteration(proc)
    for path in folder.glob("*.pth"):
        state = load_checkpoint(path)
        for key in ("student", "teacher"):
            broken = [name for name, value in state[key].items()
                      if value.is_floating_point() and not torch.isfinite(value).all()]
            assert not broken, f"{path.name} {key}: non-finite {broken[:4]}"


# ------------------------------------------------------------------ (d) nothing to resume
@pytest.mark.parametrize("script", [MT, SUP])
def test_resume_with_nothing_to_resume(script, syn, tmp_path):
    line = one_error_line(run_script(script, [*data_args(syn), *TINY, "--max_iterations", "2", "--resume"], tmp_path))
    assert "nothing to resume" in line and "latest.pth" in line
    assert not list(tmp_path.rglob("*.pth")) and not (tmp_path / "model").exists()


def test_resume_from_bad_paths(syn, tmp_path):
    args = [*data_args(syn), *TINY, "--max_iterations", "2"]
    line = one_error_line(run_script(MT, [*args, "--resume", tmp_path / "nowhere.pth"], tmp_path))
    assert "nothing to resume" in line and "nowhere.pth" in line
    truncated = tmp_path / "truncated.pth"
    save_checkpoint({"iteration": 1, "w": torch.arange(10000.0)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    line = one_error_line(run_script(MT, [*args, "--resume", truncated], tmp_path))
    assert "cannot load checkpoint" in line and "truncated.pth" in line
    weights_only = tmp_path / "weights_only.pth"
    save_checkpoint({"iteration": 1, "student": {}}, weights_only)
    line = one_error_line(run_script(MT, [*args, "--resume", weights_only], tmp_path))
    assert "cannot be resumed from" in line and "weights_only.pth" in line
    assert not (tmp_path / "model").exists()


def test_resume_with_another_normalization_is_refused(syn, tmp_path):
    """A run continues with the images it was trained on: a checkpoint from before --normalize
    (values as stored) resumes only with --normalize none."""
    args = [*data_args(syn), *TINY, "--max_iterations", "2", "--save_every", "1"]
    ok(run_script(SUP, [*args, "--normalize", "none"], tmp_path))
    latest = run_dir(tmp_path, "SUP") / "latest.pth"
    state = load_checkpoint(latest)
    save_checkpoint({**state, "args": {k: v for k, v in state["args"].items() if k != "normalize"}}, latest)
    line = one_error_line(run_script(SUP, [*args, "--max_iterations", "3", "--resume"], tmp_path))
    assert "trained with --normalize none" in line and "latest.pth" in line
    ok(run_script(SUP, [*args, "--max_iterations", "3", "--resume", "--normalize", "none"], tmp_path))
    assert (run_dir(tmp_path, "SUP") / "iter_3.pth").is_file()


# ------------------------------------------------------------------ (e) resuming the right run
def test_resume_refuses_other_settings_another_method_and_a_finished_run(syn, tmp_path):
    args = [*data_args(syn), *TINY, "--max_iterations", "2", "--save_every", "1"]
    ok(run_script(SUP, args, tmp_path))
    folder = run_dir(tmp_path, "SUP")
    config = (folder / "config.json").read_text()
    line = one_error_line(run_script(SUP, [*args, "--max_iterations", "3", "--resume", "--seed", "5",
                                           "--base_lr", "0.02"], tmp_path))
    assert "--seed 1337 (not 5)" in line and "--base_lr 0.01 (not 0.02)" in line and "another --exp" in line
    line = one_error_line(run_script(MT, [*args, "--max_iterations", "3", "--exp", "other", "--resume",
                                          folder / "latest.pth"], tmp_path))
    assert "labeled-only checkpoint" in line and "train_sup.py" in line
    line = one_error_line(run_script(SUP, [*args, "--resume"], tmp_path))
    assert "at iteration 2 already" in line and "larger --max_iterations" in line
    assert (folder / "config.json").read_text() == config, "a refused resume leaves the run's config alone"
    assert sorted(p.name for p in folder.glob("*.pth")) == ["iter_2.pth", "latest.pth"]
    assert not (tmp_path / "model" / "Synthetic_other_2_labeled").exists()
    # flags that do not change what is computed may change, and the run goes on
    ok(run_script(SUP, [*args, "--max_iterations", "3", "--resume", "--log_every", "1", "--snapshot_every", "1"],
                  tmp_path))
    assert load_checkpoint(folder / "iter_3.pth")["iteration"] == 3


def test_resume_refuses_other_cases_or_other_data_and_takes_a_moved_copy(syn, tmp_path):
    """Before: a resume with another --train_list (other labeled cases) or another --root_path
    (other data) continued silently."""
    ids = syn.train_ids
    data = tmp_path / "data"
    shutil.copytree(syn.out, data)
    args = ["--dataset_name", "Synthetic", "--root_path", data / "volumes", *TINY, "--save_every", "1"]
    ok(run_script(SUP, [*args, "--max_iterations", "1"], tmp_path))
    latest = run_dir(tmp_path, "SUP") / "latest.pth"
    state = load_checkpoint(latest)
    assert state["labeled_ids"] == ids[:2] and state["unlabeled_ids"] == []
    assert sorted(state["data_fingerprint"]) == sorted(ids[:2])
    resume = [*args, "--max_iterations", "2", "--resume"]

    swapped = tmp_path / "swapped.list"  # the same cases, labeled in another order
    swapped.write_text("\n".join([ids[1], ids[0], *ids[2:]]) + "\n")
    line = one_error_line(run_script(SUP, [*resume, "--train_list", swapped], tmp_path))
    assert f"trained on other labeled cases (case 1 was {ids[0]}, is {ids[1]} now)" in line and "--exp" in line

    other = tmp_path / "other"  # another data folder: the same case IDs, one of them another scan
    shutil.copytree(data, other)
    shutil.copy(data / "volumes" / ids[4] / "mri_norm2.h5", other / "volumes" / ids[1] / "mri_norm2.h5")
    line = one_error_line(run_script(SUP, [*resume, "--root_path", other / "volumes"], tmp_path))
    assert f"trained on other data: the files of case {ids[1]} differ" in line and "--root_path" in line
    assert load_checkpoint(latest)["iteration"] == 1, "a refused resume trains nothing"

    moved = tmp_path / "moved"  # the same data elsewhere: neither path nor modification time counts
    data.rename(moved)
    ok(run_script(SUP, [*resume, "--root_path", moved / "volumes"], tmp_path))
    assert load_checkpoint(latest)["iteration"] == 2

    # a checkpoint from before the cases were stored is not compared
    check_same_data({"iteration": 2}, latest, labeled_ids=[ids[1]], unlabeled_ids=[], fingerprints={ids[1]: "1:ab"})


def test_resume_path_does_not_overwrite_another_runs_checkpoints(syn, tmp_path):
    """--resume PATH from run A into run B's folder (B chosen by --exp) would replace B's
    checkpoints: refused unless --overwrite, which then starts B's folder afresh."""
    args = [*data_args(syn), *TINY, "--max_iterations", "2", "--save_every", "1", "--snapshot_every", "1"]
    ok(run_script(SUP, [*args, "--exp", "A"], tmp_path))
    ok(run_script(SUP, [*args, "--exp", "B"], tmp_path))
    a, b = run_dir(tmp_path, "SUP", exp="A"), run_dir(tmp_path, "SUP", exp="B")
    before = {p.name: p.stat().st_mtime_ns for p in b.iterdir()}
    continue_a_in_b = [*args, "--max_iterations", "3", "--exp", "B", "--resume", a / "iter_1.pth"]
    line = one_error_line(run_script(SUP, continue_a_in_b, tmp_path))
    assert "already holds an earlier run's files (iter_1.pth, iter_2.pth, latest.pth" in line and "--overwrite" in line
    assert {p.name: p.stat().st_mtime_ns for p in b.iterdir()} == before
    ok(run_script(SUP, [*continue_a_in_b, "--overwrite"], tmp_path))
    assert sorted(p.name for p in b.glob("*.pth")) == ["iter_2.pth", "iter_3.pth", "latest.pth"]
    assert sorted(read_scalars(b)["loss/total"]) == [1, 2], "only the continued run's iterations"
    log = (b / "log.txt").read_text()
    assert log.count("run folder ") == 1 and "removed the earlier run's files" in log


def test_latest_is_saved_with_every_snapshot(tmp_path):
    """--resume takes latest.pth, so it must not be older than the newest iter_N.pth."""
    run = RunFolder(tmp_path / "run")
    periodic = Periodic(run, Schedule(max_iterations=7, log_every=100, save_every=5, snapshot_every=3))
    latest = []
    for iteration in range(7):
        periodic.after(iteration, {"loss/total": 1.0},
                       lambda: {"iteration": iteration + 1, "student": {}, "teacher": None}, model=None)
        latest.append(load_checkpoint(tmp_path / "run" / "latest.pth")["iteration"] if iteration >= 2 else None)
    run.close()
    assert latest[2:] == [3, 3, 5, 6, 7]
