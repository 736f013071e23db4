"""Batch samplers that mix a labeled and an unlabeled stream of indices."""
import numpy as np
from torch.utils.data import Sampler


class TwoStreamBatchSampler(Sampler):
    """Batches of ``primary_batch_size`` labeled + ``secondary_batch_size`` unlabeled indices.

    One epoch visits every labeled index once, in a fresh random order; the
    unlabeled indices are cycled forever, reshuffled at each pass, and a pass
    goes on across epochs (so every unlabeled case is seen equally often). A
    labeled remainder that does not fill a batch is dropped, as in the original
    scripts. With ``secondary_batch_size=0`` the batches are labeled only
    (the labeled-only baseline).
    """

    def __init__(self, primary_indices, secondary_indices, batch_size: int, secondary_batch_size: int,
                 rng: np.random.Generator | None = None):
        self.primary_indices = list(primary_indices)
        self.secondary_indices = list(secondary_indices)
        self.secondary_batch_size = secondary_batch_size
        self.primary_batch_size = batch_size - secondary_batch_size
        self.rng = rng if rng is not None else np.random.default_rng()
        self._secondary_pass: list[int] = []  # the rest of the current unlabeled pass
        if self.primary_batch_size < 1:
            raise ValueError(f"a batch needs at least one labeled sample (batch_size {batch_size}, "
                             f"unlabeled per batch {secondary_batch_size})")
        if len(self.primary_indices) < self.primary_batch_size:
            raise ValueError(f"{len(self.primary_indices)} labeled cases cannot fill {self.primary_batch_size} "
                             "labeled places per batch")
        if secondary_batch_size > 0 and not self.secondary_indices:
            raise ValueError("no unlabeled cases to fill the unlabeled part of the batch")

    def __iter__(self):
        primary = self.rng.permutation(self.primary_indices)
        for i in range(len(self)):
            batch = primary[i * self.primary_batch_size:(i + 1) * self.primary_batch_size].tolist()
            batch += [self._next_secondary() for _ in range(self.secondary_batch_size)]
            yield [int(j) for j in batch]

    def __len__(self) -> int:
        return len(self.primary_indices) // self.primary_batch_size

    def _next_secondary(self) -> int:
        if not self._secondary_pass:
            self._secondary_pass = self.rng.permutation(self.secondary_indices).tolist()[::-1]
        return int(self._secondary_pass.pop())


class EndlessBatchSampler(Sampler):
    """Repeats an epoch-based batch sampler forever, so DataLoader workers are started once
    instead of being torn down and restarted every (short) epoch."""

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler

    def __iter__(self):
        while True:
            yield from self.batch_sampler
