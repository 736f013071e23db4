"""Continuing a run with ``--resume``: which checkpoint, whether this run may continue it, and
putting its state back."""
from pathlib import Path

from utils.checkpoint import trained_normalization
from utils.device import restore_random_states
from utils.distributed import Ranks
from utils.errors import UserError

# Flags that decide what a run computes: --resume refuses a checkpoint trained with other
# values (max_iterations may grow; speed, logging and path flags may change).
RUN_DEFINING_FLAGS = ("dataset_name", "num_classes", "labelnum", "max_samples", "patch_size", "crop_margin",
                      "crop_fill", "batch_size", "labeled_bs", "base_lr", "lr_decay_every", "seed", "consistency_type",
                      "consistency", "consistency_rampup", "ema_decay", "noise_std")


def resume_path(resume: str, folder: Path) -> Path:
    """The checkpoint ``--resume`` names: the run folder's latest.pth ("latest"), or the PATH given."""
    return folder / "latest.pth" if resume == "latest" else Path(resume)


def check_resumable(state: dict, path: Path, *, flags: dict, with_teacher: bool) -> None:
    """One-line errors for a checkpoint that a run with ``flags`` cannot continue: no training
    state, the other method, other settings, or nothing left to do."""
    if "random_states" not in state:
        raise UserError(f"{path} cannot be resumed from (it has no training state); use latest.pth or iter_N.pth")
    if with_teacher != (state.get("teacher") is not None):
        this_method, its_method = ("Mean Teacher", "labeled-only") if with_teacher else ("labeled-only", "Mean Teacher")
        raise UserError(f"{path} is a {its_method} checkpoint and this is {this_method} training; resume it with "
                        f"{'train_sup.py' if with_teacher else 'train_mean_teacher.py'}")
    trained = trained_normalization(state)
    if trained != flags["normalize"]:
        raise UserError(f"{path} was trained with --normalize {trained}; resume it with --normalize {trained}")
    saved = state.get("args", {})  # a flag newer than the checkpoint is not compared
    compared = [(flag, _flag_text(saved[flag]), _flag_text(flags[flag]))
                for flag in RUN_DEFINING_FLAGS if flag in saved and flag in flags]
    differing = [f"--{flag} {then} (not {now})" for flag, then, now in compared if then != now]
    if differing:
        raise UserError(f"{path} was trained with {', '.join(differing)}; resume with the checkpoint's settings, "
                        "or start a new run under another --exp")
    if state["iteration"] >= flags["max_iterations"]:
        raise UserError(f"{path} is at iteration {state['iteration']} already, --max_iterations is "
                        f"{flags['max_iterations']}: nothing to resume; pass a larger --max_iterations to train on")


def _flag_text(value) -> str:
    """A flag's value as typed: ``112 112 80`` for a tuple or list."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def restore(state: dict, models: dict, *, optimizer, scaler, ranks: Ranks = Ranks()) -> int:
    """Load weights, optimizer and scaler state and the random states of a checkpoint (each
    rank its own where the checkpoint has them for this many ranks); returns the number of
    iterations done. ``models`` maps checkpoint keys to modules."""
    for key, model in models.items():
        model.load_state_dict(state[key])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rank_random_states") or [state["random_states"]]
    if len(per_rank) == ranks.world_size:
        restore_random_states(per_rank[ranks.rank])
    else:  # another number of processes: the noise streams cannot continue exactly
        restore_random_states(state["random_states"])
        ranks.reseed(int(state["iteration"]))
    return int(state["iteration"])
