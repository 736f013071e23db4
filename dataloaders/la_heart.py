"""The LA dataset in the UA-MT layout: ``<root>/<ID>/mri_norm2.h5`` holding ``image``
(float32, z-scored) and ``label`` (uint8, 0 background / 1 atrium), shape (X, Y, Z). A case
file with an ``image`` and no ``label`` is an unlabeled case."""
import functools
from pathlib import Path

import h5py
import numpy as np
from torch.utils.data import Dataset

from dataloaders.transforms import sample_rng
from utils.errors import UserError

VOLUME_FILE = "mri_norm2.h5"


def case_path(root, case_id: str) -> Path:
    return Path(root) / case_id / VOLUME_FILE


def check_root(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root} (pass --root_path; see README.md to get the LA data, "
                        "or use --dataset_name Synthetic)")
    return root


def _read_datasets(root, case_id: str, keys: tuple) -> list[np.ndarray]:
    """The arrays ``keys`` of the case's h5 file; a missing or unreadable file, or a missing
    dataset, is a ``UserError`` naming the file."""
    path = case_path(root, case_id)
    if not path.is_file():
        raise UserError(f"case {case_id!r} is listed but {path} does not exist; fix the list or the data folder")
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in keys if key not in f]
            if missing:
                raise UserError(f"{path} has no {' or '.join(map(repr, missing))} dataset (expected "
                                f"{' and '.join(map(repr, keys))})")
            return [f[key][:] for key in keys]
    except OSError as err:
        raise UserError(f"cannot read {path} (truncated or not HDF5?): {err}") from None


def has_label(root, case_id: str) -> bool:
    """Whether the case's h5 file holds a ``label`` dataset. A missing or unreadable file counts
    as labeled: reading it then reports what is wrong with it."""
    try:
        with h5py.File(case_path(root, case_id), "r") as f:
            return "label" in f
    except OSError:
        return True


def read_image(root, case_id: str) -> np.ndarray:
    """The image of one case, float32 (X, Y, Z); its label, if any, is not read."""
    (image,) = _read_datasets(root, case_id, ("image",))
    if image.ndim != 3:
        raise UserError(f"{case_path(root, case_id)}: expected a 3D volume (X, Y, Z), got shape {image.shape}")
    return image.astype(np.float32, copy=False)


def read_case(root, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) of one case, each (X, Y, Z)."""
    path = case_path(root, case_id)
    image, label = _read_datasets(root, case_id, ("image", "label"))
    if image.shape != label.shape:
        raise UserError(f"{path}: image shape {image.shape} differs from label shape {label.shape}")
    if image.ndim != 3:
        raise UserError(f"{path}: expected a 3D volume (X, Y, Z), got shape {image.shape}")
    if label.dtype != np.uint8 and label.size and (label.min() < 0 or label.max() > 255 or
                                                   not np.array_equal(label, np.round(label))):
        raise UserError(f"{path}: label values must be whole numbers 0..255, found {label.min()} to {label.max()}")
    return image.astype(np.float32, copy=False), label.astype(np.uint8, copy=False)


def read_case_zscored(root, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """``read_case`` with the image z-scored on its own (mean 0, std 1 over the stored volume).

    The stored values were z-scored over the whole raw scan before it was cropped around the
    atrium, so a crop that leaves much bright tissue outside comes out dark (mean near 0, std
    0.3-0.5 instead of about 1 and 1); z-scoring the crop itself removes that difference."""
    image, label = read_case(root, case_id)
    return zscore_finite(image), label


def zscore_finite(image: np.ndarray) -> np.ndarray:
    """The image z-scored over its finite voxels (NaN voxels stay NaN, for check_cases to
    report); a constant image is only shifted."""
    finite = image[np.isfinite(image)]
    mean, std = (finite.mean(dtype=np.float64), finite.std(dtype=np.float64)) if finite.size else (0.0, 1.0)
    return ((image - mean) / (std if std > 0 else 1.0)).astype(np.float32)


def read_shape(root, case_id: str) -> tuple[int, ...]:
    """The image shape from the h5 header, without decompressing the volume."""
    path = case_path(root, case_id)
    if not path.is_file():
        raise UserError(f"case {case_id!r} is listed but {path} does not exist; fix the list or the data folder")
    try:
        with h5py.File(path, "r") as f:
            return tuple(f["image"].shape)
    except (OSError, KeyError) as err:
        raise UserError(f"cannot read {path}: {err}") from None


def check_patch_fits(shapes: dict, patch_size, multiples=(1, 1, 1)) -> None:
    """A patch larger than every volume along some axis is almost surely a wrong flag, unless
    only by what the network's ``multiples`` (its total stride per axis) force: the largest
    volume rounded up to one of them is padded, as smaller volumes always are."""
    for axis, (p, multiple) in enumerate(zip(patch_size, multiples)):
        largest = max(shape[axis] for shape in shapes.values())
        if p > -(-largest // multiple) * multiple:
            raise UserError(f"--patch_size {' '.join(map(str, patch_size))} is larger than every volume along axis "
                            f"{axis} (largest is {largest} voxels); choose a smaller patch")


class LAHeart(Dataset):
    """One sample per case: ``{"image", "label", "case"}`` after ``transform(sample, rng)``.

    An item is a case index, augmented from this dataset's own ``rng``, or an
    ``(index, batch_number, position)`` triple from ``EndlessBatchSampler(seeded=True)``,
    augmented from ``sample_rng(seed, batch_number, position)``. ``read(case_id)`` reads a
    case (default: this h5 layout under ``root``; a ``DataFolder``'s ``read`` reads either).
    """

    def __init__(self, root, case_ids, transform=None, seed: int = 0, read=None):
        self.root = check_root(root)
        self.read = read or functools.partial(read_case, self.root)
        self.case_ids = list(case_ids)
        self.transform = transform
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, item) -> dict:
        if isinstance(item, tuple):
            index, batch_number, position = item
            rng = sample_rng(self.seed, batch_number, position)
        else:
            index, rng = item, self.rng
        image, label = self.read(self.case_ids[index])
        sample = {"image": image, "label": label, "case": self.case_ids[index]}
        return self.transform(sample, rng) if self.transform else sample
