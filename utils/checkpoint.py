"""The checkpoint format, in one place: what a checkpoint holds, writing it atomically (a crash
or full disk while saving never harms the last good file), reading it, and rebuilding its network.

A checkpoint is one dict: ``iteration`` (iterations done), ``network`` (the VNet's
configuration, its stages' ``strides`` included), ``student`` and ``teacher`` weights
(``teacher`` None for labeled-only runs; AD-MT adds ``teacher_b``, its second teacher), ``optimizer`` and ``scaler`` state, ``args`` (every
flag of the run, the data-dependent settings among them: patch, strides, voxel size,
normalisation, window, and where each came from); what decides the data, which ``--resume``
compares: ``labeled_ids`` and ``unlabeled_ids`` (the training cases in order) and
``data_fingerprint`` ({case ID: its files' sizes and a hash of their first and last 64 KiB}),
``spacing`` (the training voxel size in mm along X, Y, Z), ``resampled`` (whether cases were
resampled to it), ``data_kind`` ("h5" or "msd") and ``intensity`` (a CT plan's normalisation,
or None); ``base_lr_changes`` (each lowering of ``--base_lr`` on a resume: iteration, from,
to). The training schedule adds ``random_states`` (and ``rank_random_states`` under torchrun)
and ``best_val_dice``, the training session the ``method`` that wrote it. Checkpoints from
before a key was added lack it; ``trained_settings`` reads what a predictor needs of them all.
"""
import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from networks.vnet import DEFAULT_STRIDES, VNet
from utils.errors import UserError

# The network of the LA literature; stored in every checkpoint so inference can rebuild it.
VNET_CONFIG = {"n_channels": 1, "n_filters": 16, "normalization": "batchnorm", "has_dropout": True}


def network_config(num_classes: int, strides=DEFAULT_STRIDES) -> dict:
    """The ``network`` entry of a checkpoint: ``VNET_CONFIG`` with the classes and the stages'
    strides (as lists, the way JSON and the plan write them)."""
    return {**VNET_CONFIG, "n_classes": num_classes, "strides": [list(stage) for stage in strides]}


def build_vnet(num_classes: int, device: torch.device, memory_format=torch.contiguous_format,
               strides=DEFAULT_STRIDES) -> nn.Module:
    """The training scripts' VNet (``VNET_CONFIG``, the stages' ``strides``) for ``num_classes``
    classes on ``device``."""
    return VNet(n_classes=num_classes, **VNET_CONFIG, strides=strides).to(device, memory_format=memory_format)


def checkpoint_state(iteration: int, *, flags: dict, num_classes: int, student: nn.Module,
                     teacher: nn.Module | None, optimizer: torch.optim.Optimizer, scaler, cases: dict | None = None,
                     base_lr_changes: list = (), strides=DEFAULT_STRIDES) -> dict:
    """What a checkpoint holds after ``iteration`` (0-based) of a run with ``flags``; ``cases``
    holds ``labeled_ids``, ``unlabeled_ids`` and ``data_fingerprint`` (and ``plan``). The
    schedule adds the random states."""
    return {"iteration": iteration + 1, "network": network_config(num_classes, strides),
            "student": student.state_dict(), "teacher": teacher.state_dict() if teacher is not None else None,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "args": flags, **(cases or {}),
            "base_lr_changes": list(base_lr_changes)}


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``. A full disk (or file-size limit) and Ctrl-C while writing leave ``path`` as it was and
    end in one line (a ``UserError``; a ``KeyboardInterrupt`` with its message)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        # torch.save turns an error of the file's write() into a RuntimeError ("[enforce fail at
        # inline_container.cc ...]"), with the original error as its context
        cause = err.__context__ if isinstance(err, RuntimeError) else err
        if isinstance(cause, (OSError, KeyboardInterrupt)):
            raise _save_failure(cause, path) from None
        raise
    return path


def _save_failure(cause: BaseException, path: Path) -> BaseException:
    """The one-line error for a save of ``path`` that ``cause`` (an OSError, or Ctrl-C) stopped."""
    before = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} was there"
    if isinstance(cause, KeyboardInterrupt):
        return KeyboardInterrupt(f"interrupted while writing checkpoint {path}; {before} (the partial file is removed)")
    what = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file size limit reached"}.get(cause.errno, "could not write")
    fix = ("raise the file size limit (ulimit -f)" if cause.errno == errno.EFBIG else
           "free space or choose a folder on another disk")
    return UserError(f"{what} while writing checkpoint {path} ({cause.strerror or cause}); {before}; {fix}")


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


def trained_spacing(checkpoint: dict) -> tuple | None:
    """The voxel size (mm, along X, Y, Z) the checkpoint's network was trained at, or None for
    checkpoints from before it was stored."""
    spacing = checkpoint.get("spacing") if isinstance(checkpoint, dict) else None
    return tuple(float(s) for s in spacing) if spacing else None


def trained_resampled(checkpoint: dict) -> bool:
    """Whether the checkpoint's run resampled its cases to its ``spacing`` (MSD cases of mixed
    voxel sizes), so that only scans within 1 % of it count as at its voxel size."""
    return bool(checkpoint.get("resampled")) if isinstance(checkpoint, dict) else False


def trained_data_kind(checkpoint: dict) -> str | None:
    """The layout the checkpoint's run read ("h5": UA-MT h5 files, "msd": NIfTI in the MSD
    layout, its images always z-scored per case), or None for checkpoints from before it was
    stored."""
    return checkpoint.get("data_kind") if isinstance(checkpoint, dict) else None


def trained_patch_size(checkpoint) -> tuple | None:
    """The patch the checkpoint's run trained on (voxels), or None where it does not say."""
    patch = (checkpoint.get("args") or {}).get("patch_size") if isinstance(checkpoint, dict) else None
    return tuple(patch) if patch else None


def trained_intensity(checkpoint: dict) -> dict | None:
    """How the checkpoint's run normalised NIfTI images (``dataloaders.msd.normalize_intensities``):
    a CT plan's clip and z-score, or None for the per-case z-score (every run before plans)."""
    intensity = checkpoint.get("intensity") if isinstance(checkpoint, dict) else None
    return dict(intensity) if intensity else None


def trained_window(checkpoint: dict) -> tuple | None:
    """The sliding-window steps (xy, z) in voxels the run chose (its plan's or its dataset's), or
    None for checkpoints from before runs stored them."""
    window = (checkpoint.get("args") or {}).get("window") if isinstance(checkpoint, dict) else None
    return tuple(int(w) for w in window) if window else None


@dataclass(frozen=True)
class TrainedSettings:
    """What a checkpoint's run decided about its inputs: everything ``inference.py``,
    ``predict.py`` and the grid need to predict as the network was trained, so that no training
    flag is repeated at prediction time. Each is None where the checkpoint predates it."""
    network: dict | None        # the VNet's configuration (classes, channels, strides)
    patch_size: tuple | None    # training patch, voxels
    window: tuple | None        # sliding-window steps (xy, z), voxels
    spacing: tuple | None       # training voxel size, mm
    resampled: bool             # whether cases were resampled to ``spacing``
    data_kind: str | None       # "h5" or "msd"
    normalize: str              # h5 images: "case" (z-scored) or "none" (as stored)
    intensity: dict | None      # NIfTI images: a CT plan's normalisation, None for the per-case z-score
    dataset_name: str | None    # the named dataset (or own data's folder name)


def trained_settings(checkpoint: dict) -> TrainedSettings:
    """The ``TrainedSettings`` of ``checkpoint``: the one place consumers read them from."""
    args = (checkpoint.get("args") or {}) if isinstance(checkpoint, dict) else {}
    return TrainedSettings(network=checkpoint.get("network") if isinstance(checkpoint, dict) else None,
                           patch_size=trained_patch_size(checkpoint), window=trained_window(checkpoint),
                           spacing=trained_spacing(checkpoint), resampled=trained_resampled(checkpoint),
                           data_kind=trained_data_kind(checkpoint), normalize=trained_normalization(checkpoint),
                           intensity=trained_intensity(checkpoint), dataset_name=args.get("dataset_name"))


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
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: its network entry {config} does not describe a VNet ({err})") from None
    problems = _weight_mismatches(weights, model.state_dict())
    if problems:
        raise UserError(f"{path} does not match the network it describes ("
                        + ", ".join(f"{k} {v}" for k, v in config.items()) + f"): {'; '.join(problems)}; "
                        "pass an unmodified checkpoint of this repository's training scripts")
    model.load_state_dict(weights)
    return model.to(device, memory_format=memory_format).eval()


def _weight_mismatches(weights: dict, expected: dict) -> list[str]:
    """What differs between a checkpoint's weights and the network's, each part with an example
    (torch's own message is one line per tensor, hundreds of lines)."""
    shapes = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    parts = [f"{len(shapes)} of its {len(weights)} weights have another shape (e.g. {shapes[0]}: "
             f"{tuple(weights[shapes[0]].shape)} in the file, {tuple(expected[shapes[0]].shape)} in the network)"
             ] if shapes else []
    parts += [f"{len(missing)} are missing (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} are not in the network (e.g. {unexpected[0]})"] if unexpected else []
    return parts
