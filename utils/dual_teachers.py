"""AD-MT's teaching (Zhao et al., ECCV 2024): two EMA teachers that take turns following the
student, their pseudo-label as an entropy-weighted ensemble, and the student's own prediction
settling the voxels where the teachers disagree.

Shapes: probabilities ``(B, C, X, Y, Z)`` (softmax over C), labels, confidences and masks
``(B, X, Y, Z)``.
"""
from dataclasses import dataclass

import numpy as np
import torch

ALTERNATION_STREAM = 0xAD317  # mixed into the run's seed: the turns' own random stream


@dataclass(frozen=True)
class PseudoLabels:
    """The teachers' answer on the weak view: ``labels`` (int64), ``confidence`` (the winning
    class's ensemble probability) and ``conflict`` (bool: the two teachers' classes differ)."""
    labels: torch.Tensor
    confidence: torch.Tensor
    conflict: torch.Tensor

    def moved(self, move) -> "PseudoLabels":
        """Each tensor passed through ``move`` (e.g. ``CutMixBoxes.apply``)."""
        return PseudoLabels(move(self.labels), move(self.confidence), move(self.conflict))


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z): -sum_c p log2 p per voxel, in bits."""
    return -(probs * torch.log2(probs + 1e-10)).sum(dim=1)


@torch.no_grad()
def entropy_weighted_ensemble(probs_a: torch.Tensor, probs_b: torch.Tensor) -> torch.Tensor:
    """w_a p_a + w_b p_b per voxel with w_a = exp(-H_a) / (exp(-H_a) + exp(-H_b)) and w_b = 1 - w_a
    (H the entropy in bits): the more certain teacher weighs more, voxel by voxel."""
    weight_a = torch.sigmoid(entropy(probs_b) - entropy(probs_a)).unsqueeze(1)  # = exp(-Ha) / (exp(-Ha) + exp(-Hb))
    return weight_a * probs_a + (1 - weight_a) * probs_b


@torch.no_grad()
def teachers_ensemble(probs_a: torch.Tensor, probs_b: torch.Tensor | None = None) -> torch.Tensor:
    """The probabilities the pseudo-labels come from: one teacher's (``probs_b`` None) or the
    entropy-weighted ensemble of two."""
    return probs_a if probs_b is None else entropy_weighted_ensemble(probs_a, probs_b)


@torch.no_grad()
def teachers_pseudo_labels(probs_a: torch.Tensor, probs_b: torch.Tensor | None = None, *,
                           ensemble: torch.Tensor | None = None) -> PseudoLabels:
    """The pseudo-labels of one teacher (``probs_b`` None: no conflict anywhere) or of the
    entropy-weighted ensemble of two (``ensemble``: ``teachers_ensemble``'s, where the caller
    has it already)."""
    ensemble = teachers_ensemble(probs_a, probs_b) if ensemble is None else ensemble
    confidence, labels = ensemble.max(dim=1)
    conflict = (torch.zeros_like(labels, dtype=torch.bool) if probs_b is None
                else probs_a.argmax(dim=1) != probs_b.argmax(dim=1))
    return PseudoLabels(labels, confidence, conflict)


@torch.no_grad()
def settle_with_student(teachers: PseudoLabels, student_labels: torch.Tensor,
                        student_confidence: torch.Tensor) -> tuple[PseudoLabels, torch.Tensor]:
    """Where the teachers disagree and the student (on the same weak view) says another class
    with a higher confidence than the ensemble, the student's class and confidence replace the
    ensemble's. Returns the settled pseudo-labels and the mask of the voxels taken from the
    student."""
    taken = teachers.conflict & (student_labels != teachers.labels) & (student_confidence > teachers.confidence)
    labels = torch.where(taken, student_labels, teachers.labels)
    confidence = torch.where(taken, student_confidence, teachers.confidence)
    return PseudoLabels(labels, confidence, teachers.conflict), taken


class TeacherTurns:
    """Which teacher follows the student at each iteration: turns of a random length, drawn
    uniformly from 1 to ``max_period`` iterations, alternate between teacher 0 (whose turns
    also give the student the intensity view) and teacher 1 (the CutMix view), teacher 0 first.
    The turns come from their own generator seeded with the run's seed, so ``turn(iteration)``
    is the same after a resume and on every torchrun rank, and nothing needs saving."""

    def __init__(self, max_period: int, seed: int):
        if max_period < 1:
            raise ValueError(f"a turn lasts at least 1 iteration, got a longest turn of {max_period}")
        self.max_period = max_period
        self._generator = np.random.default_rng([seed, ALTERNATION_STREAM])
        self._ends: list[int] = []  # the first iteration after each turn

    def turn(self, iteration: int) -> int:
        """0 or 1: the teacher whose turn it is at ``iteration`` (0-based)."""
        while not self._ends or self._ends[-1] <= iteration:
            start = self._ends[-1] if self._ends else 0
            self._ends.append(start + int(self._generator.integers(1, self.max_period + 1)))
        return int(np.searchsorted(self._ends, iteration, side="right")) % 2
