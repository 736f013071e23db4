"""Per-class confidence thresholds for pseudo-labels, relative to how high each class's
probability can get.

Why: a network may be unable to give some class a high probability at all. In the VNet the last
1x1x1 convolution reads ReLU features, and a class can end up encoded as "no feature active":
its probability is then capped at softmax(output bias), well below 0.8 (measured on AD-MT's
Hippocampus seed 1338: the posterior class never passed 0.76 in 15000 iterations, so none of
its voxels was ever a confident pseudo-label while ever more of them were confidently labeled
background, and the class shrank to a third of its size). A fixed threshold turns that cap into
a collapse. Here class c's threshold is ``threshold * reach_c / max_k reach_k``, where reach_c
is the highest probability the teachers have given class c lately: a class that reaches 1 as
well as the best one keeps ``threshold``, a capped class gets the same share of its own
ceiling (as FreeMatch's class-wise thresholds, Wang et al. ICLR 2023, scale a global threshold by
each class's normalised statistic).

"Lately": a running maximum that forgets slowly (``decay`` per update), so a batch without a
class (a patch with no atrium) does not lower that class's reach, and a ceiling that drops is
followed within a few thousand updates.
"""
import torch
from torch import nn

REACH_DECAY = 0.999  # per iteration: a reach not met again halves in about 700 iterations


class ReachRelativeThresholds(nn.Module):
    """``reach`` (a buffer, saved in checkpoints and averaged over torchrun ranks like BatchNorm
    statistics): each class's running maximum probability. Before the first update every
    class's threshold is ``threshold``."""

    def __init__(self, num_classes: int, threshold: float, decay: float = REACH_DECAY):
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"a confidence threshold is a probability, between 0 and 1, got {threshold}")
        self.threshold = threshold
        self.decay = decay
        self.register_buffer("reach", torch.zeros(num_classes))

    def per_class(self) -> torch.Tensor:
        """(C,): each class's threshold now."""
        best = self.reach.max()
        # nothing seen yet: the global threshold (a where, not an if: no GPU sync per iteration)
        return torch.where(best > 0, self.threshold * self.reach / best.clamp_min(torch.finfo(best.dtype).tiny),
                           torch.full_like(self.reach, self.threshold))

    @torch.no_grad()
    def update(self, probs: torch.Tensor) -> None:
        """Take in a batch's probabilities ``(B, C, ...)`` (softmax over C)."""
        batch_max = probs.detach().float().transpose(0, 1).reshape(probs.shape[1], -1).amax(dim=1)
        self.reach.copy_(torch.maximum(batch_max, self.decay * self.reach))
