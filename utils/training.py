"""Plumbing every training script needs, one call each: run setup, the network,
mixed precision, the learning-rate schedule and the periodic log/validate/save."""
import argparse
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from dataloaders.case_lists import read_case_list
from dataloaders.check_data import check_cases, data_report
from dataloaders.datasets import case_format
from networks.vnet import VNet
from utils.checkpoint import load_checkpoint, trained_normalization
from utils.distributed import Ranks, ranks_from_environment
from utils.device import (amp_dtype, memory_layout, precision_text, random_states, restore_random_states,
                          runtime_versions, seed_everything, select_device, warn_known_bad_runtime)
from utils.errors import UserError
from utils.run_folder import RunFolder, TrainingDiverged, check_free, run_folder_path
from utils.validation import Validator

# The network of the LA literature; stored in every checkpoint so inference can rebuild it.
VNET_CONFIG = {"n_channels": 1, "n_filters": 16, "normalization": "batchnorm", "has_dropout": True}


# Flags that decide what a run computes: --resume refuses a checkpoint trained with other
# values (max_iterations may grow; speed, logging and path flags may change).
RUN_DEFINING_FLAGS = ("dataset_name", "num_classes", "labelnum", "max_samples", "patch_size", "crop_margin",
                      "crop_fill", "batch_size", "labeled_bs", "base_lr", "lr_decay_every", "seed", "consistency_type",
                      "consistency", "consistency_rampup", "ema_decay", "noise_std")


def setup(args: argparse.Namespace, with_teacher: bool) -> tuple[torch.device, dict | None, Ranks]:
    """Device and seeds, the checkpoint to continue from with ``--resume`` (checked to be a
    ``with_teacher`` run with the same settings), and this process's place under torchrun
    (rank 0 of 1 without it); fails early if the run would overwrite another run's checkpoints."""
    folder = run_folder_path(args.dataset_name, args.exp, args.labelnum, args.model)
    resume_from = None
    if args.resume:
        path = resume_path(args, folder)
        if not path.is_file():
            raise UserError(f"nothing to resume: {path} does not exist (start without --resume, or pass the "
                            "checkpoint's path with --resume PATH)")
        resume_from = load_checkpoint(path)
        check_resumable(resume_from, path, args, with_teacher)
        if path.resolve().parent != folder.resolve():  # continuing another run's checkpoint in this folder
            check_free(folder, args.overwrite)
    else:
        check_free(folder, args.overwrite)
    ranks = ranks_from_environment()
    device = ranks.device(select_device(args.gpu))
    ranks.start(device)
    seed_everything(args.seed, bool(args.deterministic))
    return device, resume_from, ranks


def resume_path(args: argparse.Namespace, folder: Path) -> Path:
    """The checkpoint ``--resume`` names: the run folder's latest.pth, or the PATH given."""
    return folder / "latest.pth" if args.resume == "latest" else Path(args.resume)


def check_resumable(state: dict, path: Path, args: argparse.Namespace, with_teacher: bool) -> None:
    """One-line errors for a checkpoint this run cannot continue: no training state, the other
    method, other settings, or nothing left to do."""
    if "random_states" not in state:
        raise UserError(f"{path} cannot be resumed from (it has no training state); use latest.pth or iter_N.pth")
    if with_teacher != (state.get("teacher") is not None):
        this_method, its_method = ("Mean Teacher", "labeled-only") if with_teacher else ("labeled-only", "Mean Teacher")
        raise UserError(f"{path} is a {its_method} checkpoint and this is {this_method} training; resume it with "
                        f"{'train_sup.py' if with_teacher else 'train_mean_teacher.py'}")
    trained = trained_normalization(state)
    if trained != args.normalize:
        raise UserError(f"{path} was trained with --normalize {trained}; resume it with --normalize {trained}")
    saved = state.get("args", {})  # a flag newer than the checkpoint is not compared
    compared = [(flag, _flag_text(saved[flag]), _flag_text(getattr(args, flag)))
                for flag in RUN_DEFINING_FLAGS if flag in saved and hasattr(args, flag)]
    differing = [f"--{flag} {then} (not {now})" for flag, then, now in compared if then != now]
    if differing:
        raise UserError(f"{path} was trained with {', '.join(differing)}; resume with the checkpoint's settings, "
                        "or start a new run under another --exp")
    if state["iteration"] >= args.max_iterations:
        raise UserError(f"{path} is at iteration {state['iteration']} already, --max_iterations is "
                        f"{args.max_iterations}: nothing to resume; pass a larger --max_iterations to train on")


def _flag_text(value) -> str:
    """A flag's value as typed: ``112 112 80`` for a tuple or list."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def open_run(args: argparse.Namespace, device: torch.device, ranks: Ranks = Ranks()) -> RunFolder:
    """The run folder with config.json and the run header in the log (after the data checks
    passed); under torchrun only rank 0 writes it. A run resumed from its own folder adds to
    it; any other run starts the folder afresh (``setup`` has made sure that loses no
    checkpoint unless ``--overwrite`` said so)."""
    folder = run_folder_path(args.dataset_name, args.exp, args.labelnum, args.model)
    continues = bool(args.resume) and resume_path(args, folder).resolve().parent == folder.resolve()
    run = RunFolder(folder, overwrite=args.overwrite, continues=continues, writes=ranks.is_main,
                    average=ranks.average)
    versions = runtime_versions()
    run.write_config({"args": vars(args), "runtime": versions})
    run.info(f"run folder {run.path}")
    if run.replaced:
        run.info(f"removed the earlier run's files from the folder ({', '.join(run.replaced)})")
    run.info("runtime " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if device.type == "cpu":
        run.info("CUDA is not available: training on the CPU")
    layout = "channels_last_3d" if memory_layout(device, bool(args.channels_last)) == torch.channels_last_3d else "NCDHW"
    run.info(f"{precision_text(device, args.amp)}, {layout} layout")
    if ranks.distributed:
        backend = "NCCL" if device.type == "cuda" else "gloo"
        run.info(f"DistributedDataParallel over {ranks.world_size} processes ({backend}), "
                 f"{args.batch_size} samples per process per iteration"
                 + ("" if device.type == "cuda" else "; CPU processes keep per-process BatchNorm batch statistics"))
    warning = warn_known_bad_runtime()
    if warning:
        run.info(f"WARNING: {warning}")
    return run


def make_validator(args: argparse.Namespace, device: torch.device, ranks: Ranks = Ranks()):
    """The validator for ``--val_list`` (its cases checked first), or None; under torchrun
    each rank validates every N-th case and the scores are gathered."""
    if not args.val_list:
        return None
    layout = case_format(args.root_path, args.normalize)
    case_ids = read_case_list(args.val_list)
    if ranks.distributed and len(case_ids) < ranks.world_size:
        raise UserError(f"{args.val_list} has {len(case_ids)} case(s), fewer than the {ranks.world_size} processes "
                        "that share the validation; list more cases or start fewer processes")
    volumes = check_cases(args.root_path, case_ids[ranks.rank::ranks.world_size], args.num_classes, layout.read,
                          layout.case_file)
    return Validator(volumes, args.patch_size, args.num_classes, device, amp_dtype=amp_dtype(device, args.amp),
                     gather=ranks.gather if ranks.distributed else None)  # autocast as inference.py


def print_data_report(args: argparse.Namespace) -> None:
    """``--check_data``: check the training and validation cases and print a short report."""
    layout = case_format(args.root_path, args.normalize)
    for name in ("train_list", "val_list"):
        if getattr(args, name):
            volumes = check_cases(args.root_path, read_case_list(getattr(args, name)), args.num_classes,
                                  layout.read, layout.case_file)
            print(f"{getattr(args, name)}: all cases load and agree\n" + data_report(volumes, args.num_classes))


def build_vnet(num_classes: int, device: torch.device, layout=torch.contiguous_format) -> nn.Module:
    return VNet(n_classes=num_classes, **VNET_CONFIG).to(device, memory_format=layout)


def lr_at(iteration: int, base_lr: float, decay_every: int) -> float:
    """Step decay: base_lr * 0.1^(iteration // decay_every); constant when decay_every is 0."""
    return base_lr * 0.1 ** (iteration // decay_every) if decay_every else base_lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def sgd(model: nn.Module, lr: float, foreach: bool) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 and weight decay 1e-4, as in the LA scripts."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, foreach=foreach)


def checkpoint_state(iteration: int, args: argparse.Namespace, student: nn.Module, teacher: nn.Module | None,
                     optimizer: torch.optim.Optimizer, scaler) -> dict:
    """What a checkpoint holds after ``iteration`` (0-based): the network's configuration (so
    ``inference.py`` can rebuild it), student and teacher weights, optimizer and scaler
    state and the flags; ``Periodic`` adds the random states."""
    return {"iteration": iteration + 1, "network": {**VNET_CONFIG, "n_classes": args.num_classes},
            "student": student.state_dict(), "teacher": teacher.state_dict() if teacher is not None else None,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "args": vars(args)}


def restore(state: dict, models: dict, optimizer, scaler, ranks: Ranks = Ranks()) -> int:
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


class MixedPrecision:
    """Autocast as ``amp_dtype`` chooses (bf16, or fp16 with loss scaling), or plain fp32."""

    def __init__(self, device: torch.device, enabled: bool | None):
        self.device = device
        self.dtype = amp_dtype(device, enabled)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward, optimizer step (with loss scaling for fp16)."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


class Periodic:
    """After each iteration: log every ``log_every``; validate every ``val_every`` (keeping
    ``best_model.pth``); save ``iter_N.pth`` every ``snapshot_every`` and at the end, and
    ``latest.pth`` then and every ``save_every``; time the iterations after the first ``warmup``
    (compilation, cuDNN autotuning). Scalars are flushed, and so checked for a non-finite
    loss, before anything is saved."""

    def __init__(self, run: RunFolder, max_iterations: int, log_every: int, save_every: int, snapshot_every: int,
                 val_every: int = 0, validator=None, device: torch.device | None = None, batches=None,
                 start: int = 0, best_score: float = -1.0, warmup: int = 20, ranks: Ranks = Ranks()):
        self.run, self.max_iterations, self.ranks = run, max_iterations, ranks
        self.log_every, self.save_every, self.snapshot_every, self.val_every = log_every, save_every, snapshot_every, val_every
        self.validator = validator
        self.best_score = best_score
        self.last = {}
        self.device, self.batches = device, batches
        self.start = start
        self.warmup_end = start + min(warmup, max(max_iterations - start - 1, 0))
        self.started = time.perf_counter()
        self.clock = None  # (time, seconds waiting for data, seconds validating) when the warm-up ended
        self.seconds_validating = 0.0
        if start >= max_iterations:
            run.info(f"nothing to do: the run is at iteration {start}, --max_iterations is {max_iterations}")

    def after(self, iteration: int, scalars: dict, checkpoint: Callable[[], dict], model: nn.Module) -> None:
        done = iteration + 1
        last = done == self.max_iterations
        if done == self.warmup_end:
            self._synchronize()
            self.clock = (time.perf_counter(), getattr(self.batches, "seconds_waiting", 0.0), self.seconds_validating)
        self.run.add_scalars(iteration, scalars)
        if last:
            self._report_speed(done)  # before the final validation and saves
        validate = self.validator is not None and (done % self.val_every == 0 or last)
        snapshot = done % self.snapshot_every == 0 or last
        save = done % self.save_every == 0 or snapshot  # latest.pth never older than the newest iter_N.pth
        if done % self.log_every == 0 or validate or snapshot or save:
            self.last = self.run.flush_scalars()  # raises TrainingDiverged on a non-finite loss
        # Every rank takes part in building a saved state (each adds its random streams);
        # rank 0's run folder writes it, the others' write nothing.
        state = self._state(checkpoint, all_ranks=True) if snapshot or save else None
        if validate:
            start = time.perf_counter()
            score = self.validator(model)
            self.seconds_validating += time.perf_counter() - start
            self.run.add_scalars(iteration, {"val/dice": score})
            self.run.flush_scalars()
            if score > self.best_score:
                self.best_score = score
                if state is not None:
                    state["best_val_dice"] = score  # built before this validation; a resumed run needs the new best
                best = state or self._state(checkpoint, all_ranks=False)
                self.run.save("best_model.pth", {**best, "val_dice": score})
                self.run.info(f"new best validation Dice {score:.4f} at iteration {done}: best_model.pth")
        if snapshot:
            self.run.info(f"saved {self.run.save(f'iter_{done}.pth', state)}")
        if save:
            self.run.save("latest.pth", state)

    def _state(self, checkpoint: Callable[[], dict], all_ranks: bool) -> dict:
        states = random_states()
        state = {**checkpoint(), "random_states": states, "best_val_dice": self.best_score}
        if all_ranks and self.ranks.distributed:
            state["rank_random_states"] = self.ranks.gather(states)
        for key in ("student", "teacher"):
            broken = [name for name, t in (state.get(key) or {}).items()
                      if t.is_floating_point() and not bool(torch.isfinite(t).all())]
            if broken:  # e.g. BatchNorm statistics overflowed while the loss still looked finite
                message = (f"the {key}'s {broken[0]} became non-finite by iteration {state['iteration']}; nothing "
                           "was saved. Continue from the last good checkpoint with --resume, perhaps with a lower "
                           "--base_lr")
                self.run.info(f"STOPPED: {message}")
                raise TrainingDiverged(message)
        return state

    def _synchronize(self):
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _report_speed(self, done: int) -> None:
        self._synchronize()
        now = time.perf_counter()
        message = f"done: {done} iterations ({done - self.start} in this process, {now - self.started:.1f} s)"
        if self.clock is not None and done > self.warmup_end:
            start, waited, validated = self.clock
            timed = done - self.warmup_end
            per_iteration = (now - start - (self.seconds_validating - validated)) / timed  # saves included
            wait = (getattr(self.batches, "seconds_waiting", 0.0) - waited) / timed
            message += (f"; speed: {per_iteration:.4f} s/iteration over the last {timed} iterations, "
                        f"data wait {wait:.4f} s/iteration")
        if self.device is not None and self.device.type == "cuda":
            message += f", peak GPU memory {torch.cuda.max_memory_allocated(self.device) / 2**30:.2f} GiB"
        self.run.info(message)
