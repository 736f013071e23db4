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

    def positioned_batch(self, n: int) -> list[tuple[int, int]]:
        """``(index, position in the batch)`` of each sample of batch ``n``."""
        return [(index, position) for position, index in enumerate(self.batch(n))]

    def _shuffled(self, stream: str, number: int, indices: np.ndarray) -> np.ndarray:
        """The permutation for one epoch (labeled) or one pass (unlabeled), from its own seed."""
        key = (stream, number)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            stream_id = 0 if stream == "labeled" else 1
            self._cache[key] = np.random.default_rng([self.seed, stream_id, number]).permutation(indices)
        return self._cache[key]


class RankSlice(Sampler):
    """One rank's part of the batches of a ``TwoStreamBatchSampler`` built for all ``world_size``
    ranks together (``world_size`` times the batch): labeled places ``rank * labeled_bs ...``
    and the same share of the unlabeled places. The ranks' samples of an iteration are
    disjoint, and together they are the batch one process with the whole batch would draw,
    positions included (so each sample gets the same augmentation)."""

    def __init__(self, sampler: TwoStreamBatchSampler, rank: int, world_size: int):
        if sampler.primary_batch_size % world_size or sampler.secondary_batch_size % world_size:
            raise ValueError(f"a batch of {sampler.primary_batch_size} labeled + {sampler.secondary_batch_size} "
                             f"unlabeled places does not split over {world_size} ranks")
        self.sampler, self.rank = sampler, rank
        self.labeled = sampler.primary_batch_size // world_size
        self.unlabeled = sampler.secondary_batch_size // world_size

    def __len__(self) -> int:
        return len(self.sampler)

    def positioned_batch(self, n: int) -> list[tuple[int, int]]:
        whole = self.sampler.positioned_batch(n)
        labeled_part = whole[self.rank * self.labeled:(self.rank + 1) * self.labeled]
        first = self.sampler.primary_batch_size + self.rank * self.unlabeled
        return labeled_part + whole[first:first + self.unlabeled]

    def batch(self, n: int) -> list[int]:
        return [index for index, _ in self.positioned_batch(n)]


class EndlessBatchSampler(Sampler):
    """Batches ``start, start + 1, ...`` of a ``TwoStreamBatchSampler`` forever, so DataLoader
    workers are started once instead of every (short) epoch, and a resumed run continues
    where it stopped.

    With ``seeded=True`` each item is ``(index, n, position)``: the dataset derives the
    sample's augmentation from it (see ``dataloaders.transforms.sample_rng``), so the
    augmentations do not depend on which worker draws them.
    """

    def __init__(self, batch_sampler: TwoStreamBatchSampler | RankSlice, start: int = 0, seeded: bool = False):
        self.batch_sampler = batch_sampler
        self.start = start
        self.seeded = seeded

    def __iter__(self):
        for n in itertools.count(self.start):
            if self.seeded:
                yield [(index, n, position) for index, position in self.batch_sampler.positioned_batch(n)]
            else:
                yield self.batch_sampler.batch(n)
