"""Per-dataset defaults, so ``--dataset_name`` alone picks a sensible data folder, patch and
sliding-window strides; and the two on-disk layouts the scripts read, told apart by the
folder itself (an MSD folder has a ``dataset.json``)."""
import hashlib
from dataclasses import dataclass
from pathlib import Path

from dataloaders.case_lists import find_list
from dataloaders.la_heart import case_path, read_case, read_case_zscored
from dataloaders.msd import DATASET_JSON, IMAGES_DIR, case_paths, read_dataset_json, read_msd_case, read_msd_spacing
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


# --normalize: "case" z-scores each image on its own; "none" keeps the h5 values as stored
# (UA-MT: z-scored over the whole raw scan, then cropped). MSD images are always z-scored.
INTENSITY_NORMALIZATIONS = ("case", "none")


@dataclass(frozen=True)
class DataFolder:
    """A data folder bound to its root: the UA-MT h5 layout (``kind`` "h5": case sub-folders,
    one foreground class, the lists beside the folder) or the MSD / nnU-Net layout ("msd":
    ``dataset.json`` gives the classes, the lists inside the folder)."""
    root: Path
    kind: str                 # "h5" or "msd"
    num_classes: int          # background included
    lists_dir: Path           # where train.list / test.list are looked for by default
    normalize: str = "none"   # one of INTENSITY_NORMALIZATIONS (MSD images are always z-scored)

    def read(self, case_id: str) -> tuple:
        """(image float32, label uint8) of one case, each (X, Y, Z)."""
        if self.kind == "msd":
            return read_msd_case(self.root, case_id, num_classes=self.num_classes)
        return (read_case_zscored if self.normalize == "case" else read_case)(self.root, case_id)

    def case_file(self, case_id: str) -> Path:
        """The case's image file, as named in messages."""
        return case_paths(self.root, case_id)[0] if self.kind == "msd" else case_path(self.root, case_id)

    def fingerprint(self, case_id: str) -> str:
        """What the case's files hold, cheaply: each file's size and a hash of its first and last
        64 KiB ("" for a missing file). Neither path nor modification time counts, so a moved
        or copied data folder has the same fingerprints."""
        files = case_paths(self.root, case_id) if self.kind == "msd" else (case_path(self.root, case_id),)
        return " ".join(_file_fingerprint(path) for path in files)

    @property
    def has_spacing(self) -> bool:
        """Whether the files give each case's voxel size (NIfTI headers do, the h5 files do not)."""
        return self.kind == "msd"

    def spacing(self, case_id: str) -> tuple[float, float, float]:
        """The case's voxel size in mm, from its header (only where ``has_spacing``)."""
        return read_msd_spacing(self.root, case_id)

    def list_file(self, name) -> Path:
        """A list file named on the command line, found as ``find_list`` does (beside the data too)."""
        return find_list(name, self.lists_dir)


def _file_fingerprint(path: Path, edge: int = 65536) -> str:
    """``size:hash`` of the file's first and last ``edge`` bytes, or "" where it does not exist."""
    if not path.is_file():
        return ""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(edge))
        f.seek(max(size - edge, 0))
        digest.update(f.read(edge))
    return f"{size}:{digest.hexdigest()[:16]}"


def data_folder(root, normalize: str = "none") -> DataFolder:
    """The folder at ``root``: the MSD layout where it holds a dataset.json, else the UA-MT h5
    layout, its images z-scored per case when ``normalize`` is "case". An MSD folder without its
    dataset.json (an imagesTr/ folder there) is a ``UserError`` saying so."""
    if normalize not in INTENSITY_NORMALIZATIONS:
        raise UserError(f"unknown normalization {normalize!r}; choose one of {', '.join(INTENSITY_NORMALIZATIONS)}")
    root = Path(root)
    if (root / DATASET_JSON).is_file():
        return DataFolder(root, "msd", read_dataset_json(root)["num_classes"], root, normalize)
    if (root / IMAGES_DIR).is_dir():
        raise UserError(f"{root} has an {IMAGES_DIR}/ folder (the MSD / nnU-Net layout) but no {DATASET_JSON}; "
                        f"put the dataset's {DATASET_JSON} there (its \"labels\" name the classes)")
    return DataFolder(root, "h5", 2, root.parent, normalize)


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
