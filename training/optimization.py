"""The optimizer of the LA scripts and the precision its steps run in."""
import torch
from torch import nn

from utils.device import amp_dtype


def sgd(model: nn.Module, lr: float, *, foreach: bool) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 and weight decay 1e-4, as in the LA scripts."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, foreach=foreach)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


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
