"""Per-dataset defaults, so ``--dataset_name`` alone picks a sensible data folder, patch and
sliding-window strides; and the two on-disk layouts the scripts read, told apart by the
folder itself (an MSD folder has a ``dataset.json``)."""
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataloaders import la_heart, msd, resampling
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


# The UA-MT h5 files store no voxel size: theirs is the LA challenge scans' 0.625 mm isotropic.
H5_SPACING_MM = (0.625, 0.625, 0.625)

# --normalize: "case" z-scores each image on its own; "none" keeps the h5 values as stored
# (UA-MT: z-scored over the whole raw scan, then cropped). MSD images are always z-scored.
INTENSITY_NORMALIZATIONS = ("case", "none")


@dataclass(frozen=True)
class DataFolder:
    """A data folder bound to its root: the UA-MT h5 layout (``kind`` "h5": case sub-folders,
    one foreground class, the lists beside the folder) or the MSD / nnU-Net layout ("msd":
    ``dataset.json`` gives the classes, the lists inside the folder; unlabeled images also in
    ``imagesTs/`` and in ``unlabeled_dirs``). A case without a label (no label file, or an h5
    file without a ``label`` dataset) is an unlabeled case."""
    root: Path
    kind: str                 # "h5" or "msd"
    num_classes: int          # background included
    lists_dir: Path           # where train.list / test.list are looked for by default
    normalize: str = "none"   # one of INTENSITY_NORMALIZATIONS (MSD images are always z-scored)
    unlabeled_dirs: tuple = ()  # more folders of unlabeled images (MSD layout: --unlabeled_dir)
    channels: int | None = None  # image channels every case must have (dataset.json's modalities)
    target_spacing: tuple | None = None  # MSD: cases at another voxel size are resampled to it (mm)
    intensity: dict | None = None  # MSD: how images are normalised (None: z-scored per case; see msd.normalize_intensities)

    def read(self, case_id: str, *, labeled: bool = True) -> tuple:
        """(image float32, label uint8) of one case, each (X, Y, Z). For an unlabeled case
        (``labeled`` False) the label is all zeros, a placeholder no loss reads: its label
        file, if there is one, is never opened."""
        if not labeled:
            image = self.read_image(case_id)
            return image, np.zeros(image.shape, np.uint8)
        if self.kind == "msd":
            image, label = read_msd_case(self.root, case_id, num_classes=self.num_classes,
                                         extra_dirs=self.unlabeled_dirs, intensity=self.intensity)
            spacing = self._resampled_from(case_id)
            if spacing:
                image = resampling.resample(image, spacing, self.target_spacing, is_label=False)
                label = resampling.resample(label, spacing, self.target_spacing, is_label=True)
            return image, label
        return (read_case_zscored if self.normalize == "case" else read_case)(self.root, case_id)

    def _resampled_from(self, case_id: str) -> tuple | None:
        """The case's own spacing where it is to be resampled to ``target_spacing``, else None."""
        if self.target_spacing is None:
            return None
        spacing = self.spacing(case_id)
        return spacing if resampling.differs(spacing, self.target_spacing, resampling.RESAMPLE_TOLERANCE) else None

    def read_image(self, case_id: str):
        """The image of one case alone, float32 (X, Y, Z), normalised (and resampled) as ``read`` does."""
        if self.kind == "msd":
            image = msd.read_msd_image(self.case_file(case_id), intensity=self.intensity)
            spacing = self._resampled_from(case_id)
            return resampling.resample(image, spacing, self.target_spacing, is_label=False) if spacing else image
        image = la_heart.read_image(self.root, case_id)
        return la_heart.zscore_finite(image) if self.normalize == "case" else image

    def has_label(self, case_id: str) -> bool:
        """Whether the case has a label: a label file in labelsTr/ for an image of imagesTr/
        (MSD), a ``label`` dataset in its h5 file."""
        if self.kind == "msd":
            return msd.has_label(self.root, case_id, self.unlabeled_dirs)
        return la_heart.has_label(self.root, case_id)

    def case_ids(self) -> list[str]:
        """Every case of the folder, for a run without a list file: the images of imagesTr/,
        then those of imagesTs/ and ``unlabeled_dirs`` (MSD); the case sub-folders holding an
        h5 file, sorted (h5)."""
        if self.kind == "msd":
            return msd.list_case_ids(self.root, extra_dirs=self.unlabeled_dirs)
        ids = sorted(p.parent.name for p in self.root.glob(f"*/{la_heart.VOLUME_FILE}"))
        if not ids:
            raise UserError(f"no case folder with a {la_heart.VOLUME_FILE} in {self.root}; pass --root_path the folder "
                            "of case sub-folders, or a --train_list")
        return ids

    def channel_problem(self, case_id: str) -> str | None:
        """Why the case's image has other channels than the dataset's (dataset.json's modalities:
        a 4D file's fourth axis, or nnU-Net v2's <ID>_0000, _0001, ... files), or None."""
        if self.kind != "msd" or not self.channels:
            return None
        image = self.case_file(case_id)
        if not image.is_file():
            return None  # reading it names the missing file
        if image.name.startswith(f"{case_id}_0000"):
            found = sum(1 for _ in image.parent.glob(f"{case_id}_[0-9][0-9][0-9][0-9].nii*"))
        else:
            shape = msd.read_msd_shape(self.root, case_id, self.unlabeled_dirs)
            found = int(np.prod(shape[3:])) if len(shape) > 3 else 1
        if found != self.channels:
            return (f"{image}: {found} image channel(s), but {DATASET_JSON} names {self.channels} modalities; "
                    "give every case the same channels")
        return None

    def case_file(self, case_id: str) -> Path:
        """The case's image file, as named in messages."""
        if self.kind == "msd":
            return case_paths(self.root, case_id, self.unlabeled_dirs)[0]
        return case_path(self.root, case_id)

    def fingerprint(self, case_id: str, *, labeled: bool = True) -> str:
        """What the case's files hold, cheaply: each file's size and a hash of its first and last
        64 KiB ("" for a missing file), the image's first; of an unlabeled case (``labeled``
        False) the image's alone, its label file left unopened. Neither path nor modification
        time counts, so a moved or copied data folder has the same fingerprints."""
        files = (case_paths(self.root, case_id, self.unlabeled_dirs) if self.kind == "msd"
                 else (case_path(self.root, case_id),))
        files = files if labeled else files[:1]
        return " ".join(_file_fingerprint(path) for path in files)

    @property
    def has_spacing(self) -> bool:
        """Whether the files give each case's voxel size (NIfTI headers do, the h5 files do not)."""
        return self.kind == "msd"

    def spacing(self, case_id: str) -> tuple[float, float, float]:
        """The case's voxel size in mm, from its header (only where ``has_spacing``)."""
        return read_msd_spacing(self.root, case_id, self.unlabeled_dirs)

    def list_file(self, name) -> Path:
        """A list file named on the command line, found as ``find_list`` does (beside the data too)."""
        return find_list(name, self.lists_dir)


def at_training_spacing(data: DataFolder, case_ids, requested=None,
                        source: str = "--target_spacing") -> tuple[DataFolder, tuple | None, str | None]:
    """(the folder reading cases as training does, the voxel size training learns at, a note
    naming what is resampled or None). MSD: ``requested`` (--target_spacing or the plan's, named
    ``source`` in the note), or the cases' median where some differ from it by more than 10 %,
    and then the cases more than 1 % off are read resampled to it; else the folder as it is, at
    the median. h5: ``H5_SPACING_MM``. A case whose header cannot be read is left out here: the
    data check names it with the others."""
    if not data.has_spacing:
        return data, H5_SPACING_MM, None
    spacings = []
    for case_id in case_ids:
        try:
            spacings.append(data.spacing(case_id))
        except UserError:
            pass
    if not spacings:
        return data, None, None
    target = resampling.training_target(spacings, requested)
    if target is None:
        return data, resampling.median_spacing(spacings), None
    moved = sum(resampling.differs(s, target, resampling.RESAMPLE_TOLERANCE) for s in spacings)
    note = (f"{moved} of {len(spacings)} training cases resampled to {' x '.join(f'{t:.4g}' for t in target)} mm "
            f"({source if requested else 'their median spacing'})")
    return dataclasses.replace(data, target_spacing=target), target, note


def _file_fingerprint(path: Path | None, edge: int = 65536) -> str:
    """``size:hash`` of the file's first and last ``edge`` bytes, or "" where it does not exist."""
    if path is None or not path.is_file():
        return ""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(edge))
        f.seek(max(size - edge, 0))
        digest.update(f.read(edge))
    return f"{size}:{digest.hexdigest()[:16]}"


def data_folder(root, normalize: str = "none", unlabeled_dirs=(), intensity: dict | None = None) -> DataFolder:
    """The folder at ``root``: the MSD layout where it holds a dataset.json (with more folders of
    unlabeled images, ``unlabeled_dirs``; its images normalised as ``intensity`` says, default
    z-scored per case), else the UA-MT h5 layout, its images z-scored per case when
    ``normalize`` is "case". An MSD folder without its dataset.json (an imagesTr/
    folder there) is a ``UserError`` saying so, as are ``unlabeled_dirs`` beside an h5 folder."""
    if normalize not in INTENSITY_NORMALIZATIONS:
        raise UserError(f"unknown normalization {normalize!r}; choose one of {', '.join(INTENSITY_NORMALIZATIONS)}")
    root = Path(root)
    unlabeled_dirs = tuple(Path(d).resolve() for d in unlabeled_dirs)
    if (root / DATASET_JSON).is_file():
        info = read_dataset_json(root)
        return DataFolder(root, "msd", info["num_classes"], root, normalize, unlabeled_dirs,
                          channels=len(info["modality"]) or None, intensity=intensity)
    if (root / IMAGES_DIR).is_dir():
        raise UserError(f"{root} has an {IMAGES_DIR}/ folder (the MSD / nnU-Net layout) but no {DATASET_JSON}; "
                        f"put the dataset's {DATASET_JSON} there (its \"labels\" name the classes)")
    if unlabeled_dirs:
        raise UserError(f"--unlabeled_dir is for NIfTI folders (the MSD layout); in the h5 layout of {root} put each "
                        f"unlabeled case beside the others: <ID>/{la_heart.VOLUME_FILE} with an 'image' and no 'label'")
    return DataFolder(root, "h5", 2, root.parent, normalize)


def dataset_label(dataset_name: str | None, root_path) -> str:
    """The name of the data in run folders and logs: ``dataset_name``; without one, the folder's
    own name for an MSD folder (your own data, planned from itself), else "LA"."""
    if dataset_name:
        return dataset_name
    if root_path is not None and (Path(root_path) / DATASET_JSON).is_file():
        return Path(root_path).resolve().name
    return "LA"


def is_own_data(dataset_name: str | None, root_path) -> bool:
    """Whether the data is not one of the named ``DATASETS``: an MSD folder given without
    ``--dataset_name``. Its settings are planned from the data."""
    return not dataset_name and root_path is not None and (Path(root_path) / DATASET_JSON).is_file()


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
