"""The run folder: ``log.txt``, TensorBoard scalars (also in ``scalars.csv``), ``config.json``
and checkpoints."""
import atexit
import csv
import gzip
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from utils.checkpoint import save_checkpoint
from utils.errors import UserError
from utils.folder_lock import LOCK_FILE, FolderLock


def run_folder_path(dataset_name: str, exp: str, labelnum: int, model: str, base="model") -> Path:
    """``model/{dataset}_{exp}_{labelnum}_labeled/{model}``, the layout of the original scripts."""
    return Path(base) / f"{dataset_name}_{exp}_{labelnum}_labeled" / model


def find_run_folder(dataset_name: str, exp: str, labelnum: int | None, model: str, base="model") -> Path:
    """The run folder of a finished run: ``run_folder_path``; without ``labelnum`` (None) the one
    ``{dataset}_{exp}_N_labeled/{model}`` there is, whatever N (a run without --labelnum is named
    by its number of labeled cases). None or several are a ``UserError`` saying what to pass."""
    if labelnum is not None:
        return run_folder_path(dataset_name, exp, labelnum, model, base)
    pattern = re.compile(rf"{re.escape(dataset_name)}_{re.escape(exp)}_\d+_labeled")
    found = sorted(p for p in Path(base).glob(f"*_labeled/{model}") if pattern.fullmatch(p.parent.name))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError(f"run folder not found: {Path(base) / f'{dataset_name}_{exp}_N_labeled' / model} (check "
                        "--dataset_name/--exp/--model, or pass --checkpoint)")
    raise UserError(f"{len(found)} run folders match ({', '.join(str(p) for p in found[:4])}"
                    f"{', ...' if len(found) > 4 else ''}); pass --labelnum N to choose one")


def run_checkpoint(run: Path, iteration: int | None = None, best: bool = False) -> Path:
    """In the run folder ``run``: ``best_model.pth`` (``best``), ``iter_{iteration}.pth``, or by
    default the last ``iter_N.pth``. A missing folder or no snapshot is a ``UserError``."""
    if not run.is_dir():
        raise UserError(f"run folder not found: {run} (check --dataset_name/--exp/--labelnum/--model, "
                        "or pass --checkpoint)")
    if best:
        return run / "best_model.pth"
    if iteration is not None:
        return run / f"iter_{iteration}.pth"
    snapshots = sorted(run.glob("iter_*.pth"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
    if not snapshots:
        raise UserError(f"no iter_N.pth checkpoint in {run}; has the training finished a save? "
                        "(or pass --checkpoint)")
    return snapshots[-1]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hold_run_folder(path) -> FolderLock:
    """Take the run folder's lock for this process until it exits, so that a second run started
    into the same folder stops with one line naming this one. Folders made for the lock are
    removed again at exit where the run wrote nothing into them: a refused run leaves nothing."""
    path = Path(path)
    made = [folder for folder in (path, *path.parents) if not folder.exists()]
    atexit.register(_remove_empty, made)  # registered before the lock's release, so it runs after it
    return FolderLock(path, "training run").acquire()


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote there), or gone
            return


def check_free(path, overwrite: bool) -> None:
    """A run folder holding anything a run or an evaluation wrote (checkpoints, log.txt,
    scalars.csv, config.json, test*/ ...) is only reused with ``overwrite``: never lose work
    silently, even where the checkpoints were deleted. Its lock file does not count."""
    held = earlier_files(path)
    if held and not overwrite:
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        raise UserError(f"run folder {path} already holds an earlier run's files ({shown}); continue it with "
                        "--resume, choose a new --exp, or pass --overwrite to delete them")


def earlier_files(path) -> list[str]:
    """What ``path`` holds besides its lock, checkpoints first, folders with a trailing "/"."""
    path = Path(path)
    if not path.is_dir():
        return []
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in path.iterdir() if entry.name != LOCK_FILE]
    return sorted(names, key=lambda name: (not name.endswith(".pth"), name))


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    after a kill finds the old file or the new one, never half of one."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)


def clear_folder(path: Path) -> list[str]:
    """Remove everything inside ``path`` (an earlier run's files) but its lock, held by this
    run; returns the names removed."""
    names = sorted(entry.name for entry in path.iterdir() if entry.name != LOCK_FILE) if path.is_dir() else []
    for name in names:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return names


class TrainingDiverged(UserError):
    """A loss became NaN or infinite."""


# What to do after a divergence: --resume accepts a lower --base_lr (and only a lower one).
DIVERGED_ADVICE = "continue from the last good checkpoint with --resume and a lower --base_lr (a tenth, say)"


class _TqdmHandler(logging.Handler):
    """Console logging that does not break the progress bar."""

    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stdout)


def _summary_writer(path: Path):
    """tensorboardX where installed, else torch's own writer, else no TensorBoard."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(str(path))


class RunFolder:
    """Everything a run writes. Scalars are buffered as device tensors and written every
    ``flush_scalars()`` call, so logging does not stall the GPU every iteration. With
    ``writes=False`` (torchrun ranks other than 0) nothing is written, while the scalars are
    still checked for a non-finite loss. ``average`` (under torchrun, ``Ranks.average``) turns
    each flush's tensors into their mean over ranks, so the log shows the losses of the whole
    batch and every rank stops together if one rank's loss is not finite."""

    def __init__(self, path, *, overwrite: bool = False, continues: bool = False, writes: bool = True,
                 average=None):
        self.path = Path(path)
        self.writes = writes
        self.average = average or (lambda values: values)
        self._pending: list[tuple[int, dict]] = []
        self.writer = None
        self.replaced: list[str] = []  # names of an earlier run's files removed to start afresh
        if not writes:
            return
        if continues:  # a resumed run adds to its log, scalars and checkpoints
            for stale in self.path.glob(".*.pth.*.tmp"):  # left by a process killed while saving
                stale.unlink(missing_ok=True)
        else:
            check_free(self.path, overwrite)
            self.replaced = clear_folder(self.path)  # old scalars or checkpoints must not mix with the new run's
        self.path.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"run.{self.path}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
        formatter = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
        for handler in (logging.FileHandler(self.path / "log.txt", mode="a"), _TqdmHandler()):
            handler.setFormatter(formatter)
            self.logger.addHandler(handler)
        self.writer = _summary_writer(self.path / "tensorboard")

    def info(self, message: str) -> None:
        if self.writes:
            self.logger.info(message)

    def write_config(self, config: dict) -> None:
        """``config.json``, written whole or not at all (a resumed run rewrites it with its flags)."""
        if self.writes:
            write_text_atomically(self.path / "config.json",
                                  json.dumps({**config, "git_commit": git_commit()}, indent=2, default=str))

    def add_scalars(self, iteration: int, scalars: dict) -> None:
        """Queue scalars (tensors or numbers) of one iteration."""
        self._pending.append((iteration, {k: v.detach() if torch.is_tensor(v) else v for k, v in scalars.items()}))

    def flush_scalars(self) -> dict:
        """Write queued scalars to TensorBoard and the last iteration's to the log; returns those."""
        if not self._pending:
            return {}
        tensors = [v.float().reshape(()) for _, s in self._pending for v in s.values() if torch.is_tensor(v)]
        fetched = iter(self.average(torch.stack(tensors)).cpu().tolist() if tensors else [])  # one device sync
        rows = [(iteration, {k: next(fetched) if torch.is_tensor(v) else float(v) for k, v in s.items()})
                for iteration, s in self._pending]
        self._pending.clear()
        for index, (iteration, scalars) in enumerate(rows):
            if any(name.startswith("loss") and not math.isfinite(v) for name, v in scalars.items()):
                self._write_scalars(rows[:index])
                terms = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
                self.info(f"STOPPED: non-finite loss at iteration {iteration + 1}: {terms}")
                raise TrainingDiverged(f"the loss became non-finite at iteration {iteration + 1} ({terms}); nothing "
                                       f"was saved after it; {DIVERGED_ADVICE}")
        self._write_scalars(rows)
        iteration, last = rows[-1]
        self.info(f"iteration {iteration + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
        return last

    def _write_scalars(self, rows) -> None:
        """To TensorBoard, and to ``scalars.csv`` (iteration, name, value; iterations 1-based as in
        the log) for plotting without TensorBoard. A resumed run appends; read the last value of
        each (iteration, name)."""
        if not self.writes:
            return
        csv_path = self.path / "scalars.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(["iteration", "name", "value"])
            out.writerows((iteration + 1, name, repr(value)) for iteration, scalars in rows
                          for name, value in scalars.items())
        if self.writer is not None:
            for iteration, scalars in rows:
                for name, value in scalars.items():
                    self.writer.add_scalar(name, value, iteration)

    def save(self, name: str, state: dict) -> Path:
        """Write the checkpoint ``name``; a save that a full disk or Ctrl-C stops is one line that
        says how to go on."""
        if not self.writes:
            return self.path / name
        resumable = (self.path / "latest.pth").is_file()
        then = ("then continue the run with --resume" if resumable else
                "then run the same command again with --overwrite (nothing to resume yet)")
        try:
            return save_checkpoint(state, self.path / name)
        except UserError as err:
            raise UserError(f"{err}; {then}") from None
        except KeyboardInterrupt as interrupt:
            if not str(interrupt):  # not during the write itself
                raise
            raise KeyboardInterrupt(f"{interrupt}; {then}") from None

    def close(self) -> None:
        self.flush_scalars()
        if self.writer is not None:
            self.writer.close()
        for handler in list(self.logger.handlers) if self.writes else []:
            handler.close()
            self.logger.removeHandler(handler)


def read_scalars(path) -> dict:
    """``{name: {iteration: value}}`` from a run folder's ``scalars.csv`` (``path``: the folder
    or the file, which may be gzipped as ``.csv.gz``; iterations 1-based; where a resumed run
    wrote an iteration twice, the later value counts)."""
    path = Path(path)
    path = path / "scalars.csv" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{path} not found: the run has not logged yet, or predates scalars.csv "
                        "(its scalars are in the TensorBoard events)")
    scalars: dict = {}
    with (gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")) as f:
        for row in csv.DictReader(f):
            scalars.setdefault(row["name"], {})[int(row["iteration"])] = float(row["value"])
    return scalars
