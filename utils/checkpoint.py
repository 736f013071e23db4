"""Checkpoints written atomically: a crash or full disk while saving never harms the last good file."""
import os
import tempfile
from pathlib import Path

import torch

from utils.errors import UserError


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"could not write checkpoint {path}: {err.strerror or err}; "
                        "free disk space or choose another run folder (the previous checkpoint is intact)") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # a truncated or foreign file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot load checkpoint {path}: it is truncated or not a torch checkpoint ({reason}); "
                        "pass a .pth written by this repository's training scripts") from None


def trained_normalization(checkpoint: dict) -> str:
    """How the checkpoint's run read its images (``--normalize``); runs from before that flag
    read the h5 values as stored."""
    return (checkpoint.get("args") or {}).get("normalize", "none")


def trained_patch_size(checkpoint) -> tuple | None:
    """The patch the checkpoint's run trained on (voxels), or None where it does not say."""
    patch = (checkpoint.get("args") or {}).get("patch_size") if isinstance(checkpoint, dict) else None
    return tuple(patch) if patch else None
