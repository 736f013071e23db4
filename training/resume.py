"""Continuing a run with ``--resume``: which checkpoint, whether this run may continue it, and
putting its state back."""
from pathlib import Path

from utils.checkpoint import trained_normalization
from utils.device import restore_random_states
from utils.distributed import Ranks
from utils.errors import UserError

# Flags that decide what a run computes: --resume refuses a checkpoint trained with other
# values (max_iterations may grow; base_lr may be lowered, to go on after a divergence; speed,
# logging and path flags may change). The data is compared by its cases (check_same_data).
RUN_DEFINING_FLAGS = ("dataset_name", "num_classes", "labelnum", "max_samples", "target_spacing", "patch_size",
                      "strides", "intensity", "crop_margin",
                      "crop_fill", "batch_size", "labeled_bs", "base_lr", "lr_decay_every", "seed", "consistency_type",
                      "consistency", "consistency_rampup", "ema_decay", "noise_std",
                      "uncertainty_passes", "threshold_start", "threshold_end",  # UA-MT
                      "pretrain_iterations", "mask_ratio", "u_weight",  # BCP
                      "teachers", "conf_threshold", "threshold_rule", "switch_period",
                      "lr_schedule")  # AD-MT


def resume_path(resume: str, folder: Path) -> Path:
    """The checkpoint ``--resume`` names: the run folder's latest.pth ("latest"), or the PATH given."""
    return folder / "latest.pth" if resume == "latest" else Path(resume)


def check_resumable(state: dict, path: Path, *, flags: dict, with_teacher: bool, method: str) -> None:
    """One-line errors for a checkpoint that a run of ``method`` with ``flags`` cannot continue:
    no training state, another method, other settings, or nothing left to do."""
    if "random_states" not in state:
        raise UserError(f"{path} cannot be resumed from (it has no training state); use latest.pth or iter_N.pth")
    if with_teacher != (state.get("teacher") is not None):
        this_method, its_method = ("Mean Teacher", "labeled-only") if with_teacher else ("labeled-only", "Mean Teacher")
        raise UserError(f"{path} is a {its_method} checkpoint and this is {this_method} training; resume it with "
                        f"{'train_sup.py' if with_teacher else 'train_mean_teacher.py'}")
    if state.get("method", method) != method:  # checkpoints from before the methods were named say nothing
        raise UserError(f"{path} is a {state['method']} checkpoint and this is {method} training; resume it with "
                        f"the {state['method']} script")
    trained = trained_normalization(state)
    if trained != flags["normalize"]:
        raise UserError(f"{path} was trained with --normalize {trained}; resume it with --normalize {trained}")
    saved = state.get("args", {})  # a flag newer than the checkpoint is not compared
    compared = [(flag, _flag_text(saved[flag]), _flag_text(flags[flag]))
                for flag in RUN_DEFINING_FLAGS if flag in saved and flag in flags]
    differing = [f"--{flag} {then} (not {now})" for flag, then, now in compared
                 if then != now and not (flag == "base_lr" and float(now) < float(then))]
    if differing:
        lower = " (a resume may lower --base_lr, never raise it)" if any("--base_lr" in d for d in differing) else ""
        raise UserError(f"{path} was trained with {', '.join(differing)}; resume with the checkpoint's settings"
                        f"{lower}, or start a new run under another --exp")
    if state["iteration"] >= flags["max_iterations"]:
        raise UserError(f"{path} is at iteration {state['iteration']} already, --max_iterations is "
                        f"{flags['max_iterations']}: nothing to resume; pass a larger --max_iterations to train on")


def base_lr_changes(state: dict, base_lr: float) -> list[dict]:
    """The checkpoint's record of lowered learning rates, with this resume's lowering to
    ``base_lr`` added where it lowers it: ``[{"iteration", "from", "to"}, ...]``."""
    changes = list(state.get("base_lr_changes") or [])
    then = (state.get("args") or {}).get("base_lr")
    if then is not None and base_lr < then:
        changes.append({"iteration": int(state["iteration"]), "from": then, "to": base_lr})
    return changes


def check_same_data(state: dict, path: Path, *, labeled_ids: list, unlabeled_ids: list, fingerprints: dict) -> None:
    """A one-line error where the checkpoint was trained on other cases: other labeled or
    unlabeled case IDs (in order), or case files whose fingerprint (``DataFolder.fingerprint``)
    differs, as in another data folder. Checkpoints from before these were stored pass."""
    fix = ("resume with the --train_list, --labelnum and --root_path it was trained with, or start a new run "
           "under another --exp")
    for key, now, what in (("labeled_ids", labeled_ids, "labeled"), ("unlabeled_ids", unlabeled_ids, "unlabeled")):
        then = state.get(key)
        if then is not None and list(then) != list(now):
            raise UserError(f"{path} was trained on other {what} cases ({_first_difference(list(then), list(now))}); "
                            f"{fix}")
    stored = state.get("data_fingerprint") or {}
    # an unlabeled case's fingerprint is its image's alone (older checkpoints hold the label
    # file's after it, which is not compared: that file is never opened)
    unlabeled = set(unlabeled_ids)
    changed = [case for case, fingerprint in fingerprints.items() if case in stored
               and (stored[case].split(" ")[0] if case in unlabeled else stored[case]) != fingerprint]
    if changed:
        raise UserError(f"{path} was trained on other data: the files of case {changed[0]}"
                        f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''} differ from those it was "
                        f"trained on (in size or content); {fix}")


def _first_difference(then: list, now: list) -> str:
    """Where two case lists part, in words: "case 3 was B, is C now", or their lengths."""
    for number, (a, b) in enumerate(zip(then, now), start=1):
        if a != b:
            return f"case {number} was {a}, is {b} now"
    return f"{len(then)} cases then, {len(now)} now"


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
