"""Endless streams of augmented training batches, ready on the device.

Two interchangeable sources, both taking batch ``n`` from the same sampler and
each sample's augmentation from ``sample_rng(seed, n, position)``, so they
produce the same batches, whatever the number of DataLoader workers, and a
resumed run (``start_batch``) gets the batches it would have had:

- ``LoaderBatches``, the original data path: DataLoader workers read each
  sample's h5 file and augment it in numpy.
- ``DeviceBatches``, the fast path: every volume is read once into device
  memory and rotated, flipped and cropped there.

Each ``next()`` returns ``(image (B, 1, X, Y, Z) float32, label (B, X, Y, Z) int64)``.
"""
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dataloaders.check_data import check_training_cases
from dataloaders.la_heart import LAHeart, check_patch_fits
from dataloaders.samplers import EndlessBatchSampler, RankSlice, TwoStreamBatchSampler
from dataloaders.transforms import (Compose, RandomCrop, RandomRotFlip, ToTensor, draw_crop_start, mirrored_crop,
                                    draw_rot_flip, padding_to, sample_rng)
from utils.errors import UserError


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


class LoaderBatches(_Batches):
    def __init__(self, data, case_ids, batch_sampler: TwoStreamBatchSampler | RankSlice, *, patch_size, seed: int,
                 device: torch.device, num_workers: int = 2, start_batch: int = 0, crop_margin=(0, 0, 0),
                 crop_fill: str = "zero", unlabeled_ids=()):
        """``data``: a ``DataFolder`` (its ``unlabeled_ids`` read as images only), or the root
        of an h5 folder."""
        transform = Compose([RandomRotFlip(), RandomCrop(patch_size, crop_margin, crop_fill), ToTensor()])
        root, read = (data.root, CaseReader(data, frozenset(unlabeled_ids))) if hasattr(data, "read") else (data, None)
        dataset = LAHeart(root, case_ids, transform=transform, seed=seed, read=read)
        self.device = device
        self.loader = DataLoader(dataset, batch_sampler=EndlessBatchSampler(batch_sampler, start_batch, seeded=True),
                                 num_workers=num_workers, pin_memory=device.type == "cuda",
                                 # its own generator, so starting the workers leaves torch's global stream
                                 # (and with it the network's initialisation) alone
                                 generator=torch.Generator().manual_seed(seed))
        self.batches = iter(self.loader)

    def _next_batch(self):
        batch = next(self.batches)
        return (batch["image"].to(self.device, non_blocking=True),
                batch["label"].to(self.device, non_blocking=True))


@dataclass(frozen=True)
class CaseReader:
    """Reads a case of ``data`` in a DataLoader worker (picklable): an unlabeled case's image
    alone, with the placeholder label of ``DataFolder.read``."""
    data: object
    unlabeled_ids: frozenset

    def __call__(self, case_id: str):
        return self.data.read(case_id, labeled=case_id not in self.unlabeled_ids)


class DeviceBatches(_Batches):
    def __init__(self, volumes, batch_sampler: TwoStreamBatchSampler | RankSlice, *, patch_size, seed: int,
                 device: torch.device, start_batch: int = 0, crop_margin=(0, 0, 0), crop_fill: str = "zero"):
        self.images = [torch.from_numpy(image).to(device) for image, _ in volumes]
        self.labels = [torch.from_numpy(label).to(device) for _, label in volumes]
        self.patch_size = tuple(patch_size)
        self.crop_margin = tuple(crop_margin)
        self.crop_fill = crop_fill
        self.seed = seed
        self.batches = iter(EndlessBatchSampler(batch_sampler, start_batch, seeded=True))

    def _next_batch(self):
        images, labels = [], []
        for index, batch_number, position in next(self.batches):
            rng = sample_rng(self.seed, batch_number, position)
            image, label = self._augment(self.images[index], self.labels[index], rng)
            images.append(image)
            labels.append(label)
        return torch.stack(images)[:, None], torch.stack(labels).long()

    def _augment(self, image: torch.Tensor, label: torch.Tensor, rng: np.random.Generator):
        """RandomRotFlip then RandomCrop, as in ``dataloaders.transforms``, on device tensors."""
        k, mirror_x = draw_rot_flip(rng)
        image, label = torch.rot90(image, k, dims=(0, 1)), torch.rot90(label, k, dims=(0, 1))
        if mirror_x:
            image, label = torch.flip(image, dims=(0,)), torch.flip(label, dims=(0,))
        if self.crop_fill == "mirror":
            image, label = _zero_pad(image, label, padding_to(image.shape, self.patch_size))  # what the patch needs
            for axis, index in enumerate(mirrored_crop(image.shape, self.patch_size, self.crop_margin, rng)):
                index = torch.from_numpy(index).to(image.device)
                image, label = image.index_select(axis, index), label.index_select(axis, index)
            return image, label
        image, label = _zero_pad(image, label, padding_to(image.shape, self.patch_size, self.crop_margin))
        start = draw_crop_start(rng, image.shape, self.patch_size)
        region = tuple(slice(b, b + p) for b, p in zip(start, self.patch_size))
        return image[region], label[region]


def _zero_pad(image: torch.Tensor, label: torch.Tensor, pads):
    if not any(before or after for before, after in pads):
        return image, label
    torch_pads = [n for before_after in reversed(pads) for n in before_after]  # last axis first
    return F.pad(image, torch_pads), F.pad(label, torch_pads)


@dataclass(frozen=True)
class BatchSettings:
    """What a training batch is: ``batch_size`` patches of ``patch_size`` voxels (X, Y, Z), the
    first ``labeled_bs`` labeled; augmented from ``seed``; random crops reach ``crop_margin``
    voxels per axis beyond the volume, filled as ``crop_fill`` says (``RandomCrop``); built on
    the device (``on_device``) or by ``num_workers`` DataLoader workers."""
    batch_size: int
    labeled_bs: int
    patch_size: tuple
    seed: int
    on_device: bool = True
    num_workers: int = 2
    crop_margin: tuple = (0, 0, 0)
    crop_fill: str = "zero"
    patch_multiple: tuple = (1, 1, 1)  # the network's total stride per axis (see la_heart.check_patch_fits)


def make_training_batches(data, labeled_ids, unlabeled_ids, settings: BatchSettings, *, device: torch.device,
                          start_batch: int = 0, rank: int = 0, world_size: int = 1):
    """The training batch stream of ``data`` (a ``DataFolder``): ``settings.labeled_bs``
    labeled cases first, then unlabeled ones.

    Every case is read and checked first (``check_cases``). With no unlabeled cases and
    ``batch_size == labeled_bs`` the batches are labeled only. ``start_batch`` skips to that
    batch, for a resumed run. Under torchrun each of the ``world_size`` ranks gets its own
    slice of a batch ``world_size`` times larger (``RankSlice``).
    """
    s = settings
    if len(labeled_ids) < s.labeled_bs * world_size:
        ranks = f" on each of {world_size} processes" if world_size > 1 else ""
        raise UserError(f"{len(labeled_ids)} labeled case(s) cannot fill --labeled_bs {s.labeled_bs} places per batch"
                        f"{ranks}; raise --labelnum or lower --labeled_bs")
    case_ids = list(labeled_ids) + list(unlabeled_ids)
    volumes = check_training_cases(data, labeled_ids, unlabeled_ids)  # unlabeled: images only
    shapes = {c: v[0].shape for c, v in zip(case_ids, volumes)}
    check_patch_fits(shapes, s.patch_size, s.patch_multiple)
    if s.crop_fill == "mirror":
        check_mirror_fits(shapes, s.crop_margin)
    sampler = TwoStreamBatchSampler(range(len(labeled_ids)), range(len(labeled_ids), len(case_ids)),
                                    s.batch_size * world_size, (s.batch_size - s.labeled_bs) * world_size, seed=s.seed)
    if world_size > 1:
        sampler = RankSlice(sampler, rank, world_size)
    crop = {"patch_size": s.patch_size, "crop_margin": s.crop_margin, "crop_fill": s.crop_fill}
    if s.on_device:
        return DeviceBatches(volumes, sampler, seed=s.seed, device=device, start_batch=start_batch, **crop)
    return LoaderBatches(data, case_ids, sampler, seed=s.seed, device=device, num_workers=s.num_workers,
                         start_batch=start_batch, unlabeled_ids=unlabeled_ids, **crop)


def check_mirror_fits(shapes: dict, crop_margin) -> None:
    """A mirrored margin can reach at most one volume length minus one voxel past an end. x and
    y count together: the quarter turns before the crop swap them."""
    for axis, margin in enumerate(crop_margin):
        axes = (0, 1) if axis < 2 else (axis,)
        case, size = min(((case, shape[a]) for case, shape in shapes.items() for a in axes), key=lambda c: c[1])
        if margin >= size:
            raise UserError(f"--crop_margin {margin} along axis {axis} is too large to mirror: case {case} has only "
                            f"{size} voxels there; use at most {size - 1} or --crop_fill zero")
