"""The output folder of an evaluation: held by one evaluation at a time, and never a mix of two.

    with EvaluationFolder(out, overwrite=False, ranks=ranks) as folder:
        ...                 # write every output into folder.staging
        folder.publish()    # then move them into place

The outputs grow in ``<out>/.incomplete/`` and replace the folder's earlier evaluation only
once this one has finished; an evaluation that stops early leaves the folder as it was. A
finished evaluation (its ``summary.json``) is replaced only with ``overwrite``; files that no
evaluation writes are left alone, and a training run folder is refused.
"""
import fnmatch
import shutil
from pathlib import Path

from utils.errors import UserError
from utils.folder_lock import FolderLock

# What inference.py writes; summary.json comes last, so it marks a finished evaluation.
OUTPUT_PATTERNS = ("log.txt", "metrics.csv", "summary.json", "*_pred.nii.gz", "*_img.nii.gz", "*_gt.nii.gz",
                   "*_overlay.png")
SUMMARY = "summary.json"
STAGING = ".incomplete"
RUN_FILES = ("*.pth", "config.json")  # a training run folder: its log.txt must not be taken for ours


def evaluation_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that an evaluation writes."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in OUTPUT_PATTERNS))


class EvaluationFolder:
    """``folder`` held (a lock file, see ``utils.folder_lock``) for one evaluation. Under
    torchrun rank 0 holds it and prepares ``staging``, where every rank may then write; a
    refusal on rank 0 stops every rank with the same line."""

    def __init__(self, folder, *, overwrite: bool, ranks):
        self.folder = Path(folder)
        self.staging = self.folder / STAGING
        self.overwrite, self.ranks = overwrite, ranks
        self.lock = FolderLock(self.folder, "evaluation")
        self.replaces = None   # "a finished evaluation", "an unfinished evaluation's files" or None
        self._created = False

    def __enter__(self) -> "EvaluationFolder":
        problem = None
        if self.ranks.is_main:
            try:
                self._hold()
            except UserError as err:
                problem = str(err)
        problem = self.ranks.gather(problem)[0]  # the other ranks wait here for rank 0's staging folder
        if problem:
            raise UserError(problem)
        return self

    def _hold(self) -> None:
        self._created = not self.folder.exists()
        try:
            self.lock.acquire()  # before looking: another evaluation may have finished here meanwhile
        except OSError as err:
            raise UserError(f"cannot write into {self.folder}: {err.strerror or err}; choose another --out") from None
        try:
            for pattern in RUN_FILES:
                found = sorted(self.folder.glob(pattern))
                if found:
                    raise UserError(f"--out {self.folder} holds a training run ({found[0].name}); an evaluation "
                                    f"writes its own log.txt, so give it a folder of its own, e.g. "
                                    f"--out {self.folder / 'test'}")
            finished = (self.folder / SUMMARY).is_file()
            if finished and not self.overwrite:
                raise UserError(f"{self.folder} holds a finished evaluation ({SUMMARY}); pass --overwrite to "
                                "replace it, or choose another folder with --out")
            if finished:
                self.replaces = "a finished evaluation"
            elif evaluation_files(self.folder) or self.staging.exists():
                self.replaces = "an unfinished evaluation's files"
            if self.staging.exists():  # left by an evaluation that was killed
                shutil.rmtree(self.staging)
            self.staging.mkdir()
        except BaseException:
            self._let_go()
            raise

    def publish(self) -> None:
        """Replace the folder's earlier evaluation by the staged one: the old files go (the
        summary first), the new come in (the summary last), so a summary.json is only ever
        beside files of its own evaluation, even after a kill in between."""
        for path in sorted(evaluation_files(self.folder), key=lambda p: p.name != SUMMARY):
            path.unlink()
        for path in sorted(self.staging.iterdir(), key=lambda p: p.name == SUMMARY):
            path.replace(self.folder / path.name)
        self.staging.rmdir()

    def _let_go(self) -> None:
        """Drop what is staged (an unfinished evaluation), release the lock, and remove the
        folder where this evaluation created it and left nothing in it."""
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.lock.release()
        if self._created and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def __exit__(self, *exc) -> None:
        if self.ranks.is_main:
            self._let_go()
