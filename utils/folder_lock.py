"""One process at a time in an output folder: a lock file naming the process (PID, host,
start time, command), removed when the process ends; a lock left by a process that is gone
(killed, or the machine restarted) is taken over.

    with FolderLock(run_folder, "training run"):
        ...  # a second process that asks for the same folder stops with one line naming this one
"""
import atexit
import json
import os
import socket
import sys
import time
from pathlib import Path

from utils.errors import UserError

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class FolderLock:
    """The lock of ``folder`` for ``what`` (e.g. "training run", "evaluation"), named in the
    message a second process gets."""

    def __init__(self, folder, what: str):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self.held = False

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        for _ in range(3):  # a stale lock is removed and the creation tried again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder):
                    raise UserError(f"{self.folder} is in use by another {holder.get('what', 'process')} (PID "
                                    f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}); "
                                    "wait for it to end or choose another folder (if that process is gone, delete "
                                    f"{self.path})") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            atexit.register(self.release)
            return self
        raise UserError(f"could not take the lock {self.path}; delete it if no other process uses {self.folder}")

    def _holder(self) -> dict | None:
        """The lock's contents, or None where it is empty or unreadable (a process killed while
        writing it: stale)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _stale(holder: dict) -> bool:
        """Gone: on this host, no process with that PID (or it is this process, a lock left by an
        earlier run in it). On another host nothing can be checked, so the lock holds."""
        if holder.get("host") != socket.gethostname():
            return False
        pid = int(holder.get("pid", -1))
        return pid == os.getpid() or not _alive(pid)

    def release(self) -> None:
        if self.held:
            self.held = False
            holder = self._holder()
            if holder is None or holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
