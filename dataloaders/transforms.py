"""Augmentations of the LA scripts on ``{"image": (X, Y, Z), "label": (X, Y, Z)}`` samples.

Random transforms take a ``numpy.random.Generator`` at call time so that the
caller owns the random stream: the training batch sources give each sample its
own (``sample_rng``), so runs are reproducible whatever the number of workers,
and the on-device path of ``dataloaders.batches`` draws the very same numbers.
"""
import numpy as np
import torch


def sample_rng(seed: int, batch_number: int, position: int) -> np.random.Generator:
    """The augmentation stream of one sample of one batch: the same in DataLoader workers,
    in the main process and on the device, and after a resume."""
    return np.random.default_rng([seed, 2, batch_number, position])


def draw_rot_flip(rng: np.random.Generator) -> tuple[int, bool]:
    """k quarter turns in the x/y plane (0..3), then whether to mirror x: each of the eight
    symmetries of the square with probability 1/8, the scan as stored among them.

    The UA-MT code flips x or y after every turn, which makes every training patch a mirror
    image: the network never sees the orientation it is evaluated in. On Hippocampus, whose two
    classes are the head and the body of a chiral structure, an AD-MT checkpoint trained so
    scored 62.5 Dice on the anterior class as the scans are stored and 79.3 on the same scans
    mirrored in x (experiments/2026-12-06-cpu-admt-ceiling).

    With a patch longer in y than in x (Hippocampus: 32x48 on volumes about 36x51) a quarter
    turn leaves the patch partly zero-padded, but it also moves the anatomy over a wider crop
    range; skipping those turns cost 7 Dice points there (README, Hippocampus grid), so they stay."""
    return int(rng.integers(0, 4)), bool(rng.integers(0, 2))


def draw_crop_start(rng: np.random.Generator, shape, patch_size) -> tuple[int, ...]:
    """A uniformly random corner so the patch lies inside ``shape`` (voxels)."""
    return tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch_size))


def center_crop_start(shape, patch_size) -> tuple[int, ...]:
    return tuple((s - p) // 2 for s, p in zip(shape, patch_size))


def padding_to(shape, patch_size, margin=(0, 0, 0)) -> list[tuple[int, int]]:
    """(before, after) zero padding per axis: ``margin`` voxels on each side, then whatever
    more makes ``shape`` at least ``patch_size``."""
    pads = []
    for s, p, m in zip(shape, patch_size, margin):
        missing = max(p - s - 2 * m, 0)
        pads.append((m + missing // 2, m + missing - missing // 2))
    return pads


def mirrored_indices(size: int, start: int, length: int) -> np.ndarray:
    """Indices of ``length`` voxels from ``start`` (negative or past the end: outside) along an
    axis of ``size`` voxels, the outside ones mirrored back in about the end voxel (numpy's
    "reflect": ... 2 1 | 0 1 2 ... n-1 | n-2 ...). Needs ``-start`` and the overshoot below ``size``."""
    index = np.arange(start, start + length)
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


def _pad(sample: dict, patch_size, margin=(0, 0, 0)) -> dict:
    pads = padding_to(sample["image"].shape, patch_size, margin)
    if not any(before or after for before, after in pads):
        return sample
    return {**sample, "image": np.pad(sample["image"], pads), "label": np.pad(sample["label"], pads)}


def _crop(sample: dict, start, patch_size) -> dict:
    region = tuple(slice(b, b + p) for b, p in zip(start, patch_size))
    return {**sample, "image": sample["image"][region], "label": sample["label"][region]}


class RandomRotFlip:
    """Rotate by k * 90 degrees in the x/y plane, then mirror x or not (``draw_rot_flip``)."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        k, mirror_x = draw_rot_flip(rng)
        image, label = np.rot90(sample["image"], k, axes=(0, 1)), np.rot90(sample["label"], k, axes=(0, 1))
        if mirror_x:
            image, label = image[::-1], label[::-1]
        return {**sample, "image": np.ascontiguousarray(image), "label": np.ascontiguousarray(label)}


class RandomCrop:
    """A random ``patch_size`` crop; volumes smaller than the patch are zero-padded first.

    ``margin`` (voxels per axis, default none) lets the crop reach that far beyond each side
    of the volume, so the anatomy is seen at more positions: LA scans are barely deeper than
    the 80-slice patch, which otherwise fixes where the atrium lies along Z. ``fill`` says
    what lies there: ``"zero"`` (zero image, background label) or ``"mirror"`` (the volume
    mirrored about its end slice, image and label alike). Both draw the same crop position.
    """

    def __init__(self, patch_size, margin=(0, 0, 0), fill: str = "zero"):
        self.patch_size = tuple(patch_size)
        self.margin = tuple(margin)
        self.fill = fill

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if self.fill == "zero":
            sample = _pad(sample, self.patch_size, self.margin)
            return _crop(sample, draw_crop_start(rng, sample["image"].shape, self.patch_size), self.patch_size)
        sample = _pad(sample, self.patch_size)  # only what the patch needs, zeros as without a margin
        index = np.ix_(*mirrored_crop(sample["image"].shape, self.patch_size, self.margin, rng))
        return {**sample, "image": sample["image"][index], "label": sample["label"][index]}


def mirrored_crop(shape, patch_size, margin, rng: np.random.Generator) -> list[np.ndarray]:
    """Per axis, the volume indices of a random crop that may reach ``margin`` voxels past each
    end, mirrored back in; the position is drawn as for a zero-filled margin."""
    start = draw_crop_start(rng, [s + 2 * m for s, m in zip(shape, margin)], patch_size)
    return [mirrored_indices(s, b - m, p) for s, b, m, p in zip(shape, start, margin, patch_size)]


class CenterCrop:
    """The central ``patch_size`` crop; volumes smaller than the patch are zero-padded first."""

    def __init__(self, patch_size):
        self.patch_size = tuple(patch_size)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        sample = _pad(sample, self.patch_size)
        return _crop(sample, center_crop_start(sample["image"].shape, self.patch_size), self.patch_size)


class ToTensor:
    """image -> float32 tensor (1, X, Y, Z) with a channel axis; label -> int64 tensor (X, Y, Z)."""

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        image = torch.from_numpy(np.ascontiguousarray(sample["image"], dtype=np.float32))[None]
        label = torch.from_numpy(np.ascontiguousarray(sample["label"]).astype(np.int64))
        return {**sample, "image": image, "label": label}


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample
