"""Per-dataset defaults, so ``--dataset_name`` alone picks a sensible data folder, patch and
sliding-window strides; and the two on-disk layouts the scripts read, told apart by the
folder itself (an MSD folder has a ``dataset.json``)."""
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dataloaders.la_heart import case_path, read_case, read_case_zscored
from dataloaders.msd import case_paths, read_dataset_json, read_msd_case, read_msd_spacing
from utils.errors import UserError


@dataclass(frozen=True)
class DatasetDefaults:
    root_path: str            # the case folder (h5 layout) or the MSD folder
    patch_size: tuple         # (X, Y, Z) voxels, multiples of 16 for the VNet
    stride_xy: int            # sliding-window strides of inference.py, voxels
    stride_z: int
    description: str


DATASETS = {
    "LA": DatasetDefaults("data/LA/2018LA_Seg_Training Set", (112, 112, 80), 18, 4,
                          "2018 Left Atrium challenge, UA-MT h5 layout (python -m dataloaders.download la)"),
    "Synthetic": DatasetDefaults("data/synthetic/volumes", (48, 48, 32), 16, 8,
                                 "LA-like synthetic volumes, generated on first use (no download)"),
    "Hippocampus": DatasetDefaults("data/Hippocampus", (32, 48, 32), 8, 8,
                                   "MSD Task04, 3 classes (python -m dataloaders.download hippocampus)"),
}


@dataclass(frozen=True)
class CaseFormat:
    """How to read the cases of a data folder."""
    name: str                                  # "h5" (UA-MT) or "msd" (dataset.json, NIfTI)
    num_classes: int                           # including background
    read: Callable                             # read(root, case_id) -> (image float32, label uint8), (X, Y, Z)
    case_file: Callable                        # case_file(root, case_id) -> the image file, for messages
    lists_dir: Path                            # where train.list / test.list are looked for by default
    spacing: Callable | None = None            # spacing(root, case_id) -> voxel size in mm, if the files say


def _msd_image(root, case_id: str) -> Path:
    return case_paths(root, case_id)[0]


# --normalize: "case" z-scores each image on its own; "none" keeps the h5 values as stored
# (UA-MT: z-scored over the whole raw scan, then cropped). MSD images are always z-scored.
NORMALIZATIONS = ("case", "none")


def case_format(root, normalize: str = "none") -> CaseFormat:
    """The MSD layout where ``root`` holds a dataset.json (its labels give the classes), else
    the UA-MT h5 layout with one foreground class and the lists beside ``root``, its images
    z-scored per case when ``normalize`` is "case"."""
    if normalize not in NORMALIZATIONS:
        raise UserError(f"unknown normalization {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}")
    root = Path(root)
    if (root / "dataset.json").is_file():
        num_classes = read_dataset_json(root)["num_classes"]
        return CaseFormat("msd", num_classes, functools.partial(read_msd_case, num_classes=num_classes),
                          _msd_image, root, read_msd_spacing)
    return CaseFormat("h5", 2, read_case_zscored if normalize == "case" else read_case, case_path, root.parent)


def dataset_defaults(name: str) -> DatasetDefaults:
    if name not in DATASETS:
        raise UserError(f"unknown --dataset_name {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def root_or_default(dataset_name: str, root_path) -> str:
    """``root_path``, or the dataset's usual folder when it is None. The synthetic dataset is
    generated there on first use, never beside a folder the user named."""
    if root_path is not None:
        return str(root_path)
    root = dataset_defaults(dataset_name).root_path
    if dataset_name == "Synthetic":
        ensure_synthetic(root)
    return str(root)


def ensure_synthetic(root) -> None:
    """Generate the synthetic dataset into ``root``'s parent on first use."""
    root = Path(root)
    if not (root.parent / "train.list").is_file():
        from dataloaders.synthetic import generate_dataset
        print(f"generating the synthetic dataset in {root.parent} (once; a few seconds)")
        generate_dataset(root.parent)
