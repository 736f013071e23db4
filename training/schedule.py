"""The training schedule: the learning rate at each iteration, and what happens after it
(log, validate, save, time)."""
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from training.run_folder import DIVERGED_ADVICE, RunFolder, TrainingDiverged
from utils.device import random_states
from utils.distributed import Ranks


@dataclass(frozen=True)
class Schedule:
    """Iterations and their rhythm: step decay of the learning rate (``base_lr`` x 0.1 every
    ``lr_decay_every`` iterations, constant for 0) and every how many iterations to log,
    validate, save ``latest.pth`` and keep an ``iter_N.pth`` snapshot."""
    max_iterations: int
    base_lr: float = 0.01
    lr_decay_every: int = 2500
    log_every: int = 20
    val_every: int = 500
    save_every: int = 500
    snapshot_every: int = 1000

    def lr_at(self, iteration: int) -> float:
        return lr_at(iteration, self.base_lr, self.lr_decay_every)


def lr_at(iteration: int, base_lr: float, decay_every: int) -> float:
    """Step decay: base_lr * 0.1^(iteration // decay_every); constant when decay_every is 0."""
    return base_lr * 0.1 ** (iteration // decay_every) if decay_every else base_lr


def poly_lr_at(iteration: int, base_lr: float, max_iterations: int, power: float = 0.9) -> float:
    """Polynomial decay: base_lr * (1 - iteration / max_iterations)^power (AD-MT, BCP's 2D code)."""
    return base_lr * max(1.0 - iteration / max_iterations, 0.0) ** power


class Periodic:
    """After each iteration, as ``schedule`` says: log every ``log_every``; validate every
    ``val_every`` (keeping ``best_model.pth``); save ``iter_N.pth`` every ``snapshot_every`` and
    at the end, and ``latest.pth`` then and every ``save_every``; time the iterations after the
    first ``warmup`` (compilation, cuDNN autotuning). Scalars are flushed, and so checked for a
    non-finite loss, before anything is saved."""

    def __init__(self, run: RunFolder, schedule: Schedule, *, validator=None, device: torch.device | None = None,
                 batches=None, start: int = 0, best_score: float = -1.0, warmup: int = 20, ranks: Ranks = Ranks()):
        self.run, self.ranks = run, ranks
        self.max_iterations = max_iterations = schedule.max_iterations
        self.log_every, self.save_every = schedule.log_every, schedule.save_every
        self.snapshot_every, self.val_every = schedule.snapshot_every, schedule.val_every
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
                           f"was saved; {DIVERGED_ADVICE}")
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
