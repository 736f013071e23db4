"""Plumbing every training script needs, one call each: run setup, the network,
mixed precision, the learning-rate schedule and the periodic log/validate/save."""
import argparse
import time
from typing import Callable

import torch
from torch import nn

from networks.vnet import VNet
from utils.device import amp_dtype, runtime_versions, seed_everything, select_device, warn_known_bad_runtime
from utils.run_folder import RunFolder, check_free, run_folder_path

# The network of the LA literature; stored in every checkpoint so inference can rebuild it.
VNET_CONFIG = {"n_channels": 1, "n_filters": 16, "normalization": "batchnorm", "has_dropout": True}


def setup(args: argparse.Namespace) -> torch.device:
    """Device and seeds; fails early if the run folder would overwrite checkpoints."""
    check_free(run_folder_path(args.dataset_name, args.exp, args.labelnum, args.model), args.overwrite)
    device = select_device(args.gpu)
    seed_everything(args.seed, bool(args.deterministic))
    return device


def open_run(args: argparse.Namespace, device: torch.device) -> RunFolder:
    """The run folder with config.json and the run header in the log (after the data checks passed)."""
    run = RunFolder(run_folder_path(args.dataset_name, args.exp, args.labelnum, args.model), args.overwrite)
    versions = runtime_versions()
    run.write_config({"args": vars(args), "runtime": versions})
    run.info(f"run folder {run.path}")
    run.info("runtime " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if device.type == "cpu":
        run.info("CUDA is not available: training on the CPU")
    warning = warn_known_bad_runtime()
    if warning:
        run.info(f"WARNING: {warning}")
    return run


def memory_layout(device: torch.device, channels_last: bool) -> torch.memory_format:
    """channels_last_3d where it pays (cuDNN on CUDA), the default layout elsewhere."""
    return torch.channels_last_3d if channels_last and device.type == "cuda" else torch.contiguous_format


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


class MixedPrecision:
    """bf16 autocast (or fp16 with loss scaling) on CUDA; plain fp32 when off or on the CPU."""

    def __init__(self, device: torch.device, enabled: bool):
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
    """After each iteration: log every ``log_every``, validate every ``val_every`` (keeping
    ``best_model.pth``), save ``iter_N.pth`` every ``save_every`` and at the end; and time
    the iterations after the first ``warmup`` (compilation, cuDNN autotuning)."""

    def __init__(self, run: RunFolder, max_iterations: int, log_every: int, save_every: int,
                 val_every: int = 0, validator=None, device: torch.device | None = None, batches=None,
                 warmup: int = 20):
        self.run, self.max_iterations = run, max_iterations
        self.log_every, self.save_every, self.val_every = log_every, save_every, val_every
        self.validator = validator
        self.best_score = -1.0
        self.last = {}
        self.device, self.batches = device, batches
        self.warmup = min(warmup, max_iterations - 1)
        self.started = time.perf_counter()
        self.clock = None  # (time, seconds waiting for data) when the warm-up ended
        self.seconds_validating = 0.0

    def after(self, iteration: int, scalars: dict, checkpoint: Callable[[], dict], model: nn.Module) -> None:
        done = iteration + 1
        if done == self.warmup:
            self._synchronize()
            self.clock = (time.perf_counter(), getattr(self.batches, "seconds_waiting", 0.0), self.seconds_validating)
        self.run.add_scalars(iteration, scalars)
        if done == self.max_iterations:
            self._report_speed(done)  # before the final validation and save
        if done % self.log_every == 0 or done == self.max_iterations:
            self.last = self.run.flush_scalars()
        if self.validator is not None and (done % self.val_every == 0 or done == self.max_iterations):
            start = time.perf_counter()
            score = self.validator(model)
            self.seconds_validating += time.perf_counter() - start
            self.run.add_scalars(iteration, {"val/dice": score})
            self.run.flush_scalars()
            if score > self.best_score:
                self.best_score = score
                self.run.save("best_model.pth", {**checkpoint(), "val_dice": score})
                self.run.info(f"new best validation Dice {score:.4f} at iteration {done}: best_model.pth")
        if done % self.save_every == 0 or done == self.max_iterations:
            path = self.run.save(f"iter_{done}.pth", checkpoint())
            self.run.info(f"saved {path}")

    def _synchronize(self):
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _report_speed(self, done: int) -> None:
        self._synchronize()
        now = time.perf_counter()
        message = f"done: {done} iterations in {now - self.started:.1f} s"
        if self.clock is not None:
            start, waited, validated = self.clock
            timed = done - self.warmup
            per_iteration = (now - start - (self.seconds_validating - validated)) / timed  # saves included
            wait = (getattr(self.batches, "seconds_waiting", 0.0) - waited) / timed
            message += (f"; speed: {per_iteration:.4f} s/iteration over the last {timed} iterations, "
                        f"data wait {wait:.4f} s/iteration")
        if self.device is not None and self.device.type == "cuda":
            message += f", peak GPU memory {torch.cuda.max_memory_allocated(self.device) / 2**30:.2f} GiB"
        self.run.info(message)
