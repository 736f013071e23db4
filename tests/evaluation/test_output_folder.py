"""evaluation/output_folder.py on real folders: one evaluation at a time (a second, real process
is refused; a killed one's lock is taken over), a finished evaluation replaced only with
overwrite, and a folder that is never a mix of two evaluations."""
import json
import signal
import subprocess
import sys

import pytest

from conftest import REPO
from evaluation.output_folder import STAGING, EvaluationFolder
from utils.distributed import Ranks
from utils.errors import UserError
from utils.folder_lock import LOCK_FILE

# A real evaluation's hold on the folder, in another process, until it is killed.
HOLD = ("import sys, time; sys.path.insert(0, sys.argv[1]); from evaluation.output_folder import EvaluationFolder; "
        "from utils.distributed import Ranks; folder = EvaluationFolder(sys.argv[2], overwrite=True, ranks=Ranks()); "
        "folder.__enter__(); (folder.staging / 'log.txt').write_text('new'); print('held', flush=True); time.sleep(60)")

OLD = {"log.txt": "old log", "metrics.csv": "old rows", "summary.json": "{}", "a_pred.nii.gz": "old a",
       "a_overlay.png": "old picture"}


def finished_evaluation(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in OLD.items():
        (folder / name).write_text(text)
    return folder


def contents(folder):
    """The visible files (not the lock, not the staging folder) and their text."""
    return {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def evaluate(folder, files, overwrite=False):
    with EvaluationFolder(folder, overwrite=overwrite, ranks=Ranks()) as held:
        for name, text in files.items():
            (held.staging / name).write_text(text)
        held.publish()
    return held


def test_a_finished_evaluation_is_replaced_only_with_overwrite(tmp_path):
    out = finished_evaluation(tmp_path / "test")
    with pytest.raises(UserError) as caught:
        evaluate(out, {"summary.json": "new"})
    assert str(caught.value) == (f"{out} holds a finished evaluation (summary.json); pass --overwrite to replace "
                                 "it, or choose another folder with --out")
    assert contents(out) == OLD and not (out / LOCK_FILE).exists()
    (out / "reproduce.json").write_text("kept")  # not an evaluation's file: left alone
    held = evaluate(out, {"log.txt": "new log", "summary.json": "new", "b_pred.nii.gz": "new b"}, overwrite=True)
    assert held.replaces == "a finished evaluation"
    # nothing of the old evaluation is left beside the new one (its a_* files included)
    assert contents(out) == {"b_pred.nii.gz": "new b", "log.txt": "new log", "reproduce.json": "kept",
                             "summary.json": "new"}
    assert sorted(p.name for p in out.iterdir()) == ["b_pred.nii.gz", "log.txt", "reproduce.json", "summary.json"]


def test_an_evaluation_that_stops_early_leaves_the_folder_as_it_was(tmp_path):
    out = finished_evaluation(tmp_path / "test")
    with pytest.raises(RuntimeError, match="stopped"):
        with EvaluationFolder(out, overwrite=True, ranks=Ranks()) as held:
            (held.staging / "log.txt").write_text("new, unfinished")
            raise RuntimeError("stopped")
    assert sorted(p.name for p in out.iterdir()) == sorted(OLD) and contents(out) == OLD
    # a folder it created is removed again, so a failed evaluation leaves nothing behind
    new = tmp_path / "new" / "test"
    with pytest.raises(KeyboardInterrupt):
        with EvaluationFolder(new, overwrite=False, ranks=Ranks()):
            raise KeyboardInterrupt
    assert not new.exists()


def test_unfinished_leftovers_are_replaced_without_overwrite(tmp_path):
    out = tmp_path / "test"
    out.mkdir()
    (out / "log.txt").write_text("an evaluation killed before its summary")
    (out / "x_pred.nii.gz").write_text("stale")
    held = evaluate(out, {"log.txt": "new", "metrics.csv": "rows", "summary.json": "{}"})
    assert held.replaces == "an unfinished evaluation's files"
    assert contents(out) == {"log.txt": "new", "metrics.csv": "rows", "summary.json": "{}"}


def test_a_training_run_folder_is_refused(tmp_path):
    run = tmp_path / "MT"
    run.mkdir()
    (run / "log.txt").write_text("the training log")
    (run / "iter_2.pth").write_text("weights")
    with pytest.raises(UserError, match=r"holds a training run \(iter_2.pth\); .* --out .*MT/test"):
        evaluate(run, {"log.txt": "evaluation log"}, overwrite=True)
    assert (run / "log.txt").read_text() == "the training log" and not (run / LOCK_FILE).exists()


def test_a_second_evaluation_is_refused_and_a_killed_ones_hold_taken_over(tmp_path):
    out = finished_evaluation(tmp_path / "test")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as caught:
            evaluate(out, {"summary.json": "second"}, overwrite=True)
        assert f"{out} is in use by another evaluation (PID {holder.pid} on " in str(caught.value)
        assert "\n" not in str(caught.value)
        assert (out / STAGING / "log.txt").read_text() == "new"  # the holder's files, untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # killed: its lock and staged files stay, the finished evaluation beside them is intact
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    assert contents(out) == OLD
    evaluate(out, {"log.txt": "third", "summary.json": "third"}, overwrite=True)
    assert contents(out) == {"log.txt": "third", "summary.json": "third"}
    assert not (out / STAGING).exists() and not (out / LOCK_FILE).exists()
