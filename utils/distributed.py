"""Several training processes under ``torchrun`` (DistributedDataParallel), and the same calls
as no-ops for a single process, so the training scripts read the same either way.

``torchrun --nproc_per_node N train_mean_teacher.py ...`` starts N processes (ranks); each takes
its own GPU (NCCL) or runs on the CPU (gloo), draws its own slice of every batch, and
averages gradients with the others in the backward pass. Rank 0 alone writes the run folder.
"""
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from utils.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: rank ``rank`` of ``world_size`` (0 of 1 without torchrun)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's GPU (``cuda:LOCAL_RANK`` among the visible ones), or the CPU."""
        if device.type != "cuda" or not self.distributed:
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(f"torchrun started {self.local_rank + 1}+ processes on this node but only "
                            f"{torch.cuda.device_count()} GPU(s) are visible (--gpu {os.environ.get('CUDA_VISIBLE_DEVICES')});"
                            " lower --nproc_per_node or name more GPUs with --gpu")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.barrier()  # nobody leaves while rank 0 still writes
            dist.destroy_process_group()

    def sync_batchnorm(self, model: nn.Module, device: torch.device) -> nn.Module:
        """BatchNorm statistics over the whole batch of all ranks (on GPUs; torch has no CPU
        SyncBatchNorm, so CPU ranks keep per-rank batch statistics)."""
        if self.distributed and device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model as trained: DistributedDataParallel (rank 0's weights broadcast to all,
        gradients averaged over ranks) or the model itself for one process."""
        if not self.distributed:
            return model
        # no buffer broadcast before each forward: average_buffers keeps them equal after each step
        no_broadcast = ({"forward_sync_buffers": False}
                        if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                        else {"broadcast_buffers": False})  # the name before torch 2.13
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                   **no_broadcast)

    @torch.no_grad()
    def average_buffers(self, *models: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) over ranks, so every
        rank holds the same student and teacher (already equal with SyncBatchNorm)."""
        synced = (m for m in models if not any(isinstance(x, nn.SyncBatchNorm) for x in m.modules()))
        buffers = [b for m in synced for b in m.buffers() if b.is_floating_point()] if self.distributed else []
        if not buffers:
            return
        flat = torch.cat([b.reshape(-1).float() for b in buffers])
        dist.all_reduce(flat)
        flat /= self.world_size
        for b, value in zip(buffers, torch.split(flat, [b.numel() for b in buffers])):
            b.copy_(value.view_as(b))

    def average(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over ranks (itself in one process)."""
        if not self.distributed:
            return values
        total = values.clone()
        dist.all_reduce(total)  # SUM: gloo has no AVG
        return total / self.world_size

    def gather(self, value) -> list:
        """``value`` of every rank, in rank order (a picklable object)."""
        if not self.distributed:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def reseed(self, seed: int) -> None:
        """Give each rank its own noise and dropout stream, once the models are built from the
        common seed (a single process keeps its stream unchanged)."""
        if self.distributed:
            torch.manual_seed(seed * 1000 + self.rank)


def ranks_from_environment() -> Ranks:
    """The rank, world size and local rank torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise UserError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({err}); start with torchrun") from None
    return Ranks(rank, world_size, local_rank)
