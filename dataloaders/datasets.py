"""Per-dataset defaults, so ``--dataset_name`` alone picks a sensible data folder and patch."""
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError


@dataclass(frozen=True)
class DatasetDefaults:
    root_path: str            # folder holding one sub-folder per case
    patch_size: tuple         # (X, Y, Z) voxels, multiples of 16 for the VNet
    num_classes: int          # including background
    description: str


DATASETS = {
    "LA": DatasetDefaults("data/LA/2018LA_Seg_Training Set", (112, 112, 80), 2,
                          "2018 Left Atrium challenge, UA-MT h5 layout (see README to download)"),
    "Synthetic": DatasetDefaults("data/synthetic/volumes", (48, 48, 32), 2,
                                 "LA-like synthetic volumes, generated on first use (no download)"),
}


def dataset_defaults(name: str) -> DatasetDefaults:
    if name not in DATASETS:
        raise UserError(f"unknown --dataset_name {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def ensure_synthetic(root) -> None:
    """Generate the synthetic dataset into ``root``'s parent on first use."""
    root = Path(root)
    if not (root.parent / "train.list").is_file():
        from dataloaders.synthetic import generate_dataset
        print(f"generating the synthetic dataset in {root.parent} (once; a few seconds)")
        generate_dataset(root.parent)
