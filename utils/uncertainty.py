"""UA-MT's uncertainty-aware consistency (Yu et al., MICCAI 2019): the teacher predicts the
unlabeled patches several times under dropout and input noise; the entropy of the mean
prediction marks the voxels it is unsure of, and the consistency loss leaves them out, more of
them early in training than late.

Shapes: logits and probabilities ``(B, C, X, Y, Z)``, masks ``(B, 1, X, Y, Z)``.
"""
import math

import torch
import torch.nn.functional as F

from utils.ema import clipped_noise
from utils.ramps import sigmoid_rampup


@torch.no_grad()
def mean_teacher_probabilities(teacher, images: torch.Tensor, *, passes: int, noise_std: float,
                               copies_per_pass: int = 2) -> torch.Tensor:
    """The mean softmax of ``passes`` stochastic teacher predictions of ``images``, each with
    fresh clipped noise (and the teacher's dropout, where it is in train mode). As in the
    official code, ``copies_per_pass`` noisy copies of the batch go through one forward pass
    (8 predictions as 4 passes of the batch repeated twice)."""
    if passes < 1 or passes % copies_per_pass:
        raise ValueError(f"passes ({passes}) must be a positive multiple of copies_per_pass ({copies_per_pass})")
    batch = images.shape[0]
    total = None
    repeated = images.repeat(copies_per_pass, *([1] * (images.dim() - 1)))
    for _ in range(passes // copies_per_pass):
        probs = F.softmax(teacher(repeated + clipped_noise(repeated, noise_std)).float(), dim=1)
        summed = probs.reshape(copies_per_pass, batch, *probs.shape[1:]).sum(0)
        total = summed if total is None else total + summed
    return total / passes


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum_c p_c ln(p_c + 1e-6) per voxel, natural log: (B, 1, X, Y, Z); at most ln C."""
    return -(probs * torch.log(probs + 1e-6)).sum(dim=1, keepdim=True)


def uncertainty_threshold(iteration: int, max_iterations: int, num_classes: int, *, start: float = 0.75,
                          end: float = 1.0) -> float:
    """The entropy below which a voxel counts as certain: from ``start`` to ``end`` times the
    largest entropy ln C, on a sigmoid ramp over the whole run. ln C is UA-MT's ln 2 for LA's two
    classes; with more classes the same fractions of the largest entropy."""
    return (start + (end - start) * sigmoid_rampup(iteration, max_iterations)) * math.log(num_classes)


def masked_softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       certain: torch.Tensor) -> torch.Tensor:
    """sum(certain * (softmax(s) - softmax(t))^2) / (C * sum(certain) + 1e-16): the mean squared
    difference over the certain voxels' class probabilities (UA-MT's ``2 * sum(mask)`` for C = 2)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"consistency needs equal shapes, got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    squared = (F.softmax(student_logits.float(), dim=1) - F.softmax(teacher_logits.float(), dim=1)) ** 2
    certain = certain.float()
    return (certain * squared).sum() / (student_logits.shape[1] * certain.sum() + 1e-16)
