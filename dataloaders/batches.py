"""Endless streams of augmented training batches, ready on the device.

Two interchangeable sources, both drawing their indices from the same batch
sampler and their augmentations from the same ``rng`` calls, so when the
DataLoader runs in the main process (``num_workers=0``) they produce the same
batches:

- ``LoaderBatches``, the original data path: DataLoader workers read each
  sample's h5 file and augment it in numpy.
- ``DeviceBatches``, the fast path: every volume is read once into device
  memory and rotated, flipped and cropped there.

Each ``next()`` returns ``(image (B, 1, X, Y, Z) float32, label (B, X, Y, Z) int64)``.
"""
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, get_worker_info

from dataloaders.la_heart import LAHeart, read_case
from dataloaders.samplers import EndlessBatchSampler
from utils.errors import UserError
from dataloaders.transforms import (Compose, RandomCrop, RandomRotFlip, ToTensor, draw_crop_start,
                                    draw_rot_flip, padding_to)


class _Batches:
    """An endless iterator that also counts the host time spent waiting in ``next()``."""
    seconds_waiting = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        batch = self._next_batch()
        self.seconds_waiting += time.perf_counter() - start
        return batch


def seed_worker(worker_id: int, seed: int) -> None:
    """Give each DataLoader worker its own augmentation stream (otherwise all draw the same)."""
    get_worker_info().dataset.rng = np.random.default_rng([seed, 2, worker_id])


class LoaderBatches(_Batches):
    def __init__(self, root, case_ids, batch_sampler, patch_size, rng: np.random.Generator,
                 device: torch.device, num_workers: int = 2, seed: int = 0):
        transform = Compose([RandomRotFlip(), RandomCrop(patch_size), ToTensor()])
        dataset = LAHeart(root, case_ids, transform=transform, rng=rng)
        self.device = device
        self.loader = DataLoader(dataset, batch_sampler=EndlessBatchSampler(batch_sampler),
                                 num_workers=num_workers, pin_memory=device.type == "cuda",
                                 worker_init_fn=functools.partial(seed_worker, seed=seed) if num_workers else None,
                                 # its own generator, so starting the workers leaves torch's global stream
                                 # (and with it the network's initialisation) alone
                                 generator=torch.Generator().manual_seed(seed))
        self.batches = iter(self.loader)

    def _next_batch(self):
        batch = next(self.batches)
        return (batch["image"].to(self.device, non_blocking=True),
                batch["label"].to(self.device, non_blocking=True))


def read_volumes(root, case_ids, threads: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every case's (image, label), read in parallel threads (h5 decompression releases the GIL)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda case_id: read_case(root, case_id), case_ids))


class DeviceBatches(_Batches):
    def __init__(self, volumes, batch_sampler, patch_size, rng: np.random.Generator, device: torch.device):
        self.images = [torch.from_numpy(image).to(device) for image, _ in volumes]
        self.labels = [torch.from_numpy(label).to(device) for _, label in volumes]
        self.patch_size = tuple(patch_size)
        self.rng = rng
        self.batches = iter(EndlessBatchSampler(batch_sampler))

    def _next_batch(self):
        images, labels = [], []
        for index in next(self.batches):
            image, label = self._augment(self.images[index], self.labels[index])
            images.append(image)
            labels.append(label)
        return torch.stack(images)[:, None], torch.stack(labels).long()

    def _augment(self, image: torch.Tensor, label: torch.Tensor):
        """RandomRotFlip then RandomCrop, as in ``dataloaders.transforms``, on device tensors."""
        k, axis = draw_rot_flip(self.rng)
        image = torch.flip(torch.rot90(image, k, dims=(0, 1)), dims=(axis,))
        label = torch.flip(torch.rot90(label, k, dims=(0, 1)), dims=(axis,))
        pads = padding_to(image.shape, self.patch_size)
        if any(before or after for before, after in pads):
            torch_pads = [n for before_after in reversed(pads) for n in before_after]  # last axis first
            image, label = F.pad(image, torch_pads), F.pad(label, torch_pads)
        start = draw_crop_start(self.rng, image.shape, self.patch_size)
        region = tuple(slice(b, b + p) for b, p in zip(start, self.patch_size))
        return image[region], label[region]


def make_training_batches(root, labeled_ids, unlabeled_ids, batch_size: int, labeled_bs: int, patch_size,
                          seed: int, device: torch.device, on_device: bool, num_workers: int = 2):
    """The training batch stream: ``labeled_bs`` labeled cases first, then unlabeled ones.

    With no unlabeled cases and ``batch_size == labeled_bs`` the batches are labeled only.
    The sampler and the augmentations get their own seeded generators.
    """
    from dataloaders.la_heart import check_patch_fits, read_shape
    from dataloaders.samplers import TwoStreamBatchSampler

    if len(labeled_ids) < labeled_bs:
        raise UserError(f"{len(labeled_ids)} labeled case(s) cannot fill --labeled_bs {labeled_bs} places per batch; "
                        "raise --labelnum or lower --labeled_bs")
    case_ids = list(labeled_ids) + list(unlabeled_ids)
    check_patch_fits({c: read_shape(root, c) for c in case_ids}, patch_size)
    sampler = TwoStreamBatchSampler(range(len(labeled_ids)), range(len(labeled_ids), len(case_ids)),
                                    batch_size, batch_size - labeled_bs, rng=np.random.default_rng([seed, 0]))
    augment_rng = np.random.default_rng([seed, 1])
    if on_device:
        return DeviceBatches(read_volumes(root, case_ids), sampler, patch_size, augment_rng, device)
    return LoaderBatches(root, case_ids, sampler, patch_size, augment_rng, device, num_workers, seed)
