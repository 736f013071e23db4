"""Batch samplers that mix a labeled and an unlabeled stream of indices."""
import itertools

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

    Batch ``n`` is a pure function of ``(seed, n)`` (``batch(n)``): a run can
    resume at any iteration and get the very batches it would have had.
    Iterating yields the next epoch's batches each time.
    """

    def __init__(self, primary_indices, secondary_indices, batch_size: int, secondary_batch_size: int,
                 seed: int = 0):
        self.primary_indices = np.asarray(list(primary_indices), dtype=np.int64)
        self.secondary_indices = np.asarray(list(secondary_indices), dtype=np.int64)
        self.secondary_batch_size = secondary_batch_size
        self.primary_batch_size = batch_size - secondary_batch_size
        self.seed = seed
        self.epoch = 0
        self._cache: dict = {}
        if self.primary_batch_size < 1:
            raise ValueError(f"a batch needs at least one labeled sample (batch_size {batch_size}, "
                             f"unlabeled per batch {secondary_batch_size})")
        if len(self.primary_indices) < self.primary_batch_size:
            raise ValueError(f"{len(self.primary_indices)} labeled cases cannot fill {self.primary_batch_size} "
                             "labeled places per batch")
        if secondary_batch_size > 0 and not len(self.secondary_indices):
            raise ValueError("no unlabeled cases to fill the unlabeled part of the batch")

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.primary_indices) // self.primary_batch_size

    def __iter__(self):
        first = self.epoch * len(self)
        self.epoch += 1
        return (self.batch(n) for n in range(first, first + len(self)))

    def batch(self, n: int) -> list[int]:
        """The ``n``-th batch (0-based, counted over all epochs)."""
        epoch, i = divmod(n, len(self))
        primary = self._shuffled("labeled", epoch, self.primary_indices)
        batch = primary[i * self.primary_batch_size:(i + 1) * self.primary_batch_size].tolist()
        for k in range(n * self.secondary_batch_size, (n + 1) * self.secondary_batch_size):
            unlabeled_pass, j = divmod(k, len(self.secondary_indices))
            batch.append(int(self._shuffled("unlabeled", unlabeled_pass, self.secondary_indices)[j]))
        return batch

    def _shuffled(self, stream: str, number: int, indices: np.ndarray) -> np.ndarray:
        """The permutation for one epoch (labeled) or one pass (unlabeled), from its own seed."""
        key = (stream, number)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            stream_id = 0 if stream == "labeled" else 1
            self._cache[key] = np.random.default_rng([self.seed, stream_id, number]).permutation(indices)
        return self._cache[key]


class EndlessBatchSampler(Sampler):
    """Batches ``start, start + 1, ...`` of a ``TwoStreamBatchSampler`` forever, so DataLoader
    workers are started once instead of every (short) epoch, and a resumed run continues
    where it stopped.

    With ``seeded=True`` each item is ``(index, n, position)``: the dataset derives the
    sample's augmentation from it (see ``dataloaders.transforms.sample_rng``), so the
    augmentations do not depend on which worker draws them.
    """

    def __init__(self, batch_sampler: TwoStreamBatchSampler, start: int = 0, seeded: bool = False):
        self.batch_sampler = batch_sampler
        self.start = start
        self.seeded = seeded

    def __iter__(self):
        for n in itertools.count(self.start):
            batch = self.batch_sampler.batch(n)
            yield [(index, n, position) for position, index in enumerate(batch)] if self.seeded else batch
