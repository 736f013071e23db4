"""utils/folder_lock.py: a second process is refused with one line; stale locks are taken over."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from utils.errors import UserError
from utils.folder_lock import LOCK_FILE, FolderLock

HOLD = ("import sys, time; sys.path.insert(0, sys.argv[1]); from utils.folder_lock import FolderLock; "
        "lock = FolderLock(sys.argv[2], 'training run').acquire(); print('held', flush=True); time.sleep(60)")


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"in use by another training run \(PID {holder.pid} on "):
            FolderLock(tmp_path, "evaluation").acquire()
    finally:
        holder.kill()
        holder.wait()
    # killed with SIGKILL: its lock is left behind, and is stale now
    assert (tmp_path / LOCK_FILE).is_file()
    with FolderLock(tmp_path, "evaluation"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["what"] == "evaluation"
    assert not (tmp_path / LOCK_FILE).exists()


def test_an_empty_or_broken_lock_file_is_stale(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with FolderLock(tmp_path, "training run"):
        pass
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_from_another_host_is_respected(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "what": "training run",
                                                   "started": "2026-12-01 10:00:00"}))
    with pytest.raises(UserError, match="PID 1 on elsewhere"):
        FolderLock(tmp_path, "training run").acquire()
