"""The checkpoint format, in one place: what a checkpoint holds, writing it atomically (a crash
or full disk while saving never harms the last good file), reading it, and rebuilding its network.

A checkpoint is one dict: ``iteration`` (iterations done), ``network`` (the VNet's
configuration), ``student`` and ``teacher`` weights (``teacher`` None for labeled-only runs),
``optimizer`` and ``scaler`` state, ``args`` (every flag of the run); the training schedule
adds ``random_states`` (and ``rank_random_states`` under torchrun) and ``best_val_dice``.
"""
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from networks.vnet import VNet
from utils.errors import UserError

# The network of the LA literature; stored in every checkpoint so inference can rebuild it.
VNET_CONFIG = {"n_channels": 1, "n_filters": 16, "normalization": "batchnorm", "has_dropout": True}


def build_vnet(num_classes: int, device: torch.device, memory_format=torch.contiguous_format) -> nn.Module:
    """The training scripts' VNet (``VNET_CONFIG``) for ``num_classes`` classes on ``device``."""
    return VNet(n_classes=num_classes, **VNET_CONFIG).to(device, memory_format=memory_format)


def checkpoint_state(iteration: int, *, flags: dict, num_classes: int, student: nn.Module,
                     teacher: nn.Module | None, optimizer: torch.optim.Optimizer, scaler) -> dict:
    """What a checkpoint holds after ``iteration`` (0-based) of a run with ``flags``; the
    schedule adds the random states."""
    return {"iteration": iteration + 1, "network": {**VNET_CONFIG, "n_classes": num_classes},
            "student": student.state_dict(), "teacher": teacher.state_dict() if teacher is not None else None,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "args": flags}


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


def load_network(checkpoint: dict, path: Path, *, teacher: bool, num_classes: int, device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """The VNet of ``checkpoint`` (read from ``path``; student or teacher weights) in eval mode
    on ``device``, its weights in ``memory_format``."""
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a checkpoint of this repository's training scripts")
    config = checkpoint.get("network")
    weights = checkpoint.get("teacher" if teacher else "student")
    if config is None or weights is None:
        if teacher and config:
            raise UserError(f"{path} has no teacher (a labeled-only run of train_sup.py); drop --teacher")
        raise UserError(f"{path} holds no network weights; pass a checkpoint written by this repository's "
                        "training scripts")
    if config.get("n_classes") != num_classes:
        raise UserError(f"{path} predicts {config.get('n_classes')} classes but the dataset has {num_classes}; "
                        "pick the checkpoint trained on this dataset")
    if config.get("n_channels") != 1:
        raise UserError(f"{path} expects {config.get('n_channels')} input channels but the images have 1; "
                        "pick the checkpoint trained on this dataset")
    try:
        model = VNet(**config)
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as err:
        raise UserError(f"{path} does not match the network: {str(err).strip().splitlines()[0]}") from None
    return model.to(device, memory_format=memory_format).eval()
