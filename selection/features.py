"""What a network sees in a scan, as one vector: its bottleneck's output averaged over space and
over every window (and mirrored pass) it predicted, so that two scans can be compared without
labels (near-identical scans give near-identical vectors)."""
from contextlib import contextmanager

import numpy as np
import torch


class FeatureMean:
    """The running mean of the pooled bottleneck features of the forwards seen so far."""

    def __init__(self):
        self.total, self.count = None, 0

    def add(self, output: torch.Tensor) -> None:
        pooled = output.detach().float().mean(dim=(2, 3, 4)).sum(dim=0).cpu()  # (channels,) over the batch's windows
        self.total = pooled if self.total is None else self.total + pooled
        self.count += output.shape[0]

    def vector(self) -> np.ndarray:
        if not self.count:
            raise ValueError("the network was not run while features were recorded")
        return (self.total / self.count).numpy()


@contextmanager
def bottleneck_features(model: torch.nn.Module):
    """Within the block, every forward of ``model`` adds its bottleneck's output (VNet's
    ``bottleneck`` stage) to the yielded ``FeatureMean``."""
    features = FeatureMean()
    handle = model.bottleneck.register_forward_hook(lambda module, inputs, output: features.add(output))
    try:
        yield features
    finally:
        handle.remove()
