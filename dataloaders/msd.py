"""Datasets in the Medical Segmentation Decathlon (MSD) / nnU-Net layout, read as (X, Y, Z) volumes.

    <root>/dataset.json             labels {"0": "background", "1": ...}, modality {"0": "MRI"}
    <root>/imagesTr/<ID>.nii.gz     the image (nnU-Net v2 names it <ID>_0000.nii.gz: found too)
    <root>/labelsTr/<ID>.nii.gz     integer labels 0..num_classes-1
    <root>/imagesTs/<ID>.nii.gz     unlabeled images (so is an imagesTr image without a label)

An image whose label file is missing is an unlabeled case; so is every image of imagesTs/ and
of any other unlabeled folder (``--unlabeled_dir``). Their labels are never read.

Volumes keep the voxel order of the file (no reorientation), like nnU-Net. Each image is
z-scored on its own (mean and std over the whole volume), because intensities differ wildly
between cases (MSD Hippocampus holds uint8 and float32 files with maxima from 112 to 1.7e6).

    ids = list_case_ids(root)                     # or read_case_list("<root>/dev_train.list")
    info = read_dataset_json(root)                # info["num_classes"] == 3 for Hippocampus
    image, label = read_msd_case(root, ids[0], num_classes=info["num_classes"])
"""
import json
from pathlib import Path

import numpy as np

from dataloaders.case_lists import read_case_list
from utils.errors import UserError

IMAGES_DIR, LABELS_DIR, DATASET_JSON = "imagesTr", "labelsTr", "dataset.json"
UNLABELED_DIR = "imagesTs"  # MSD's test images, which have no labels: unlabeled training cases
# Tried in this order; "_0000" is nnU-Net v2's channel-0 suffix.
IMAGE_SUFFIXES = (".nii.gz", "_0000.nii.gz", ".nii", "_0000.nii")
LABEL_SUFFIXES = (".nii.gz", ".nii")
# NIfTI spatial units to mm.
UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001, "unknown": 1.0}


def _index_dict(path: Path, key: str, value) -> dict:
    """``{"0": "background"}`` (MSD) or ``{"background": 0}`` (nnU-Net v2) as ``{0: "background"}``."""
    if not isinstance(value, dict) or not value:
        raise UserError(f"{path}: {key!r} must be a non-empty mapping such as {{\"0\": \"background\"}}")
    try:
        if all(str(k).strip().lstrip("-").isdigit() for k in value):
            return {int(k): str(v) for k, v in value.items()}
        # nnU-Net v2: name -> index (regions, given as lists, are not supported)
        return {int(v): str(k) for k, v in value.items()}
    except (TypeError, ValueError):
        raise UserError(f"{path}: cannot read {key!r} as index/name pairs: {value}") from None


def read_dataset_json(root) -> dict:
    """The dataset description of ``root``: every entry of dataset.json, plus normalised keys

    - ``labels``: ``{int: name}``, from MSD's ``{"0": "background"}`` or nnU-Net v2's
      ``{"background": 0}``;
    - ``num_classes``: the highest label index + 1 (background included);
    - ``modality``: ``{int: name}`` from ``modality`` (MSD) or ``channel_names`` (nnU-Net v2),
      ``{}`` when neither is there.

    A missing or malformed dataset.json, or one without ``labels``, is a ``UserError``.
    """
    path = Path(root) / DATASET_JSON
    if not path.is_file():
        raise UserError(f"{DATASET_JSON} not found in {root} (expected the MSD / nnU-Net layout: "
                        f"{DATASET_JSON}, {IMAGES_DIR}/, {LABELS_DIR}/)")
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(info, dict) or "labels" not in info:
        raise UserError(f"{path} has no 'labels' entry (expected e.g. \"labels\": {{\"0\": \"background\", "
                        "\"1\": \"...\"}})")
    labels = _index_dict(path, "labels", info["labels"])
    if min(labels) < 0:
        raise UserError(f"{path}: negative label index {min(labels)}")
    gaps = sorted(set(range(max(labels) + 1)) - set(labels))
    if gaps:  # a network would learn an always-empty class for each
        raise UserError(f"{path}: the labels must be consecutive from 0, but {', '.join(map(str, gaps))} "
                        f"{'is' if len(gaps) == 1 else 'are'} missing from {sorted(labels)}; renumber the label "
                        "files' values and dataset.json's \"labels\" to 0, 1, 2, ...")
    modality = info.get("modality", info.get("channel_names"))
    info = dict(info)
    info["labels"] = dict(sorted(labels.items()))
    info["num_classes"] = max(labels) + 1
    info["modality"] = _index_dict(path, "modality", modality) if modality else {}
    return info


def _first_existing(folder: Path, case_id: str, suffixes) -> Path | None:
    for suffix in suffixes:
        if (folder / f"{case_id}{suffix}").is_file():
            return folder / f"{case_id}{suffix}"
    return None


def unlabeled_dirs(root, extra=()) -> tuple[Path, ...]:
    """The folders of unlabeled images: ``<root>/imagesTs`` where it exists, then ``extra``."""
    test_images = (Path(root) / UNLABELED_DIR).resolve()
    folders = ((test_images,) if test_images.is_dir() else ()) + tuple(Path(e).resolve() for e in extra)
    return tuple(dict.fromkeys(folders))  # a folder named twice (imagesTs/ as --unlabeled_dir) counts once


def case_paths(root, case_id: str, extra_dirs=()) -> tuple[Path, Path | None]:
    """``(image path, label path or None)`` of one case. The image is ``imagesTr/<ID>.nii.gz``
    (or ``<ID>_0000.nii.gz``, or ``.nii``), else the same name in an unlabeled folder
    (``imagesTs/``, then ``extra_dirs``), whose images have no label (None); the label is
    ``labelsTr/<ID>.nii.gz`` (or ``.nii``). Where no image exists the ``imagesTr/<ID>.nii.gz``
    name is returned, so that errors name the expected file."""
    root = Path(root)
    image = _first_existing(root / IMAGES_DIR, case_id, IMAGE_SUFFIXES)
    if image is None:
        for folder in unlabeled_dirs(root, extra_dirs):
            found = _first_existing(folder, case_id, IMAGE_SUFFIXES)
            if found is not None:
                return found, None
        image = root / IMAGES_DIR / f"{case_id}{IMAGE_SUFFIXES[0]}"
    label = _first_existing(root / LABELS_DIR, case_id, LABEL_SUFFIXES)
    return image, label or root / LABELS_DIR / f"{case_id}{LABEL_SUFFIXES[0]}"


def has_label(root, case_id: str, extra_dirs=()) -> bool:
    """Whether the case has a label file (an image of an unlabeled folder never has)."""
    _, label = case_paths(root, case_id, extra_dirs)
    return label is not None and label.is_file()


def _folder_case_ids(folder: Path) -> list[str]:
    """The case IDs of the images in ``folder``, sorted (``_0000`` suffixes and macOS ``._``
    files left out)."""
    ids = set()
    for path in folder.iterdir():
        name = path.name
        if name.startswith(".") or not path.is_file():
            continue
        for suffix in (".nii.gz", ".nii"):
            if name.endswith(suffix):
                case_id = name[: -len(suffix)]
                ids.add(case_id[:-5] if case_id.endswith("_0000") else case_id)
                break
    return sorted(ids)


def list_case_ids(root, list_file=None, extra_dirs=None) -> list[str]:
    """Case IDs: those of ``list_file`` in file order when given (see ``read_case_list``), else
    every image of ``<root>/imagesTr`` sorted by name; with ``extra_dirs`` (a tuple, may be
    empty) the images of the unlabeled folders (``imagesTs/``, then ``extra_dirs``) follow,
    each folder sorted. An ID in two folders is a ``UserError``: it would name two images."""
    if list_file is not None:
        return read_case_list(list_file)
    folder = (Path(root) / IMAGES_DIR).resolve()
    if not folder.is_dir():
        raise UserError(f"{folder} not found (expected the MSD / nnU-Net layout: {DATASET_JSON}, "
                        f"{IMAGES_DIR}/, {LABELS_DIR}/)")
    folders = [folder] + ([d for d in unlabeled_dirs(root, extra_dirs) if d != folder] if extra_dirs is not None else [])
    ids, found_in = [], {}
    for each in folders:
        if not each.is_dir():
            raise UserError(f"unlabeled image folder not found: {each} (check --unlabeled_dir)")
        for case_id in _folder_case_ids(each):
            if case_id in found_in:
                raise UserError(f"case {case_id!r} has an image in both {found_in[case_id]} and {each}; "
                                "rename one of them")
            found_in[case_id] = each
            ids.append(case_id)
    if not ids:
        raise UserError(f"no .nii.gz image in {', '.join(map(str, folders))}")
    return ids


def _load(path: Path, what: str):
    """The nibabel image of ``path``; a missing or unreadable file is a ``UserError``."""
    import nibabel as nib  # imported here: only MSD users pay for it

    if not path.is_file():
        raise UserError(f"{what} file not found: {path} (check the case ID and the {path.parent.name}/ folder)")
    try:
        return nib.load(path)
    except Exception as err:  # nibabel raises ImageFileError, OSError, ValueError, EOFError, ...
        raise UserError(f"cannot read {path} as NIfTI: {err}") from None


def _voxels(image, path: Path) -> np.ndarray:
    """The voxel array (scaled by scl_slope/scl_inter when the header sets them)."""
    try:
        return np.asanyarray(image.dataobj)
    except Exception as err:  # a truncated .gz only fails here
        raise UserError(f"cannot read the voxels of {path}: {err}") from None


def _to_3d(array: np.ndarray, path: Path, channel: int) -> np.ndarray:
    """(X, Y, Z) from a 3D array, or channel ``channel`` of a 4D (X, Y, Z, C) array."""
    if array.ndim == 3:
        return array
    if array.ndim >= 4:
        channels = array.reshape(*array.shape[:3], -1)
        if not 0 <= channel < channels.shape[3]:
            raise UserError(f"{path}: channel {channel} requested but the image has {channels.shape[3]} "
                            f"(shape {array.shape})")
        return channels[..., channel]
    raise UserError(f"{path}: expected a 3D volume, got shape {array.shape}")


def zscore(image: np.ndarray, path=None) -> np.ndarray:
    """(image - mean) / std over the whole volume, computed in float64, returned as float32.

    An image with NaN/inf values or a constant image is a ``UserError`` naming ``path``.
    """
    image = np.asarray(image, dtype=np.float64)
    mean, std = image.mean(), image.std()
    if not np.isfinite(mean) or not np.isfinite(std):
        raise UserError(f"{path}: the image holds NaN or infinite values")
    if std == 0:
        raise UserError(f"{path}: the image is constant ({mean:g} everywhere); the file is probably broken")
    return ((image - mean) / std).astype(np.float32)


def normalize_intensities(image: np.ndarray, intensity: dict | None, path=None) -> np.ndarray:
    """``image`` normalised as ``intensity`` says (``planning.planner.intensity_scheme``): None or
    ``{"scheme": "zscore"}`` z-scores it on its own; ``{"scheme": "ct", "lower", "upper",
    "mean", "std"}`` clips it to [lower, upper] and maps it by (value - mean) / std, the same
    transform for every case (nnU-Net's CT scheme). float32 out; NaN or infinite voxels are a
    ``UserError`` naming ``path``."""
    if not intensity or intensity.get("scheme") == "zscore":
        return zscore(image, path)
    if intensity.get("scheme") != "ct":
        raise UserError(f"unknown intensity scheme {intensity.get('scheme')!r} (expected 'zscore' or 'ct'); "
                        "the checkpoint or plan is from another version")
    image = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(image)):
        raise UserError(f"{path}: the image holds NaN or infinite values")
    clipped = np.clip(image, intensity["lower"], intensity["upper"])
    return ((clipped - intensity["mean"]) / max(intensity["std"], 1e-8)).astype(np.float32)


def read_msd_raw_image(image_path: Path, channel: int = 0) -> np.ndarray:
    """The voxels of ``image_path`` as stored (a 4D file: its channel ``channel``), (X, Y, Z)."""
    return _to_3d(_voxels(_load(image_path, "image"), image_path), image_path, channel)


def read_msd_image(image_path: Path, channel: int = 0, intensity: dict | None = None) -> np.ndarray:
    """The image of ``image_path`` (a 4D file: its channel ``channel``), normalised as
    ``intensity`` says (default: z-scored), float32 (X, Y, Z)."""
    return normalize_intensities(read_msd_raw_image(image_path, channel), intensity, image_path)


def read_msd_case(root, case_id: str, num_classes: int | None = None,
                  channel: int = 0, extra_dirs=(), intensity: dict | None = None, raw: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32 (X, Y, Z), label uint8 (X, Y, Z))`` of one case.

    The image is normalised as ``intensity`` says (default: z-scored on its own, mean 0, std 1
    over the whole volume; ``raw``: the voxels as stored). A 4D
    (multi-modal, X, Y, Z, C) image gives its channel ``channel`` (default 0, the first
    modality of dataset.json), and nnU-Net v2's per-channel files give ``<ID>_0000``.
    Labels must be integers in ``0..num_classes-1``; ``num_classes=None`` reads it from
    dataset.json (pass it to read dataset.json once instead of once per case).

    ``UserError`` naming the file: a missing file, a file that is not NIfTI, image and label
    shapes that differ, a label whose voxel size or origin differs from its image's (its voxels
    would lie elsewhere), label values that are not integers or outside the classes.
    """
    if num_classes is None:
        num_classes = read_dataset_json(root)["num_classes"]
    image_path, label_path = case_paths(root, case_id, extra_dirs)
    if label_path is None:
        raise UserError(f"case {case_id!r} has no label: {image_path} is an image of an unlabeled folder "
                        f"({UNLABELED_DIR}/ or --unlabeled_dir); validation and test cases need labels")
    image_nii, label_nii = _load(image_path, "image"), _load(label_path, "label")
    image = _to_3d(_voxels(image_nii, image_path), image_path, channel)
    label = _voxels(label_nii, label_path)
    if label.ndim > 3 and all(s == 1 for s in label.shape[3:]):
        label = label.reshape(label.shape[:3])
    if image.shape != label.shape:
        raise UserError(f"{label_path}: label shape {label.shape} differs from image shape {image.shape} "
                        f"of {image_path.name}")
    _check_same_grid(image_nii, label_nii, label_path, image_path)
    values = np.unique(label)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise UserError(f"{label_path}: label values must be integers, found {values[:8].tolist()}")
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise UserError(f"{label_path}: label values {bad[:8].tolist()} are outside the {num_classes} declared "
                        f"classes 0..{num_classes - 1} (see labels in {DATASET_JSON})")
    image = image if raw else normalize_intensities(image, intensity, image_path)
    return image, label.astype(np.uint8)


def _check_same_grid(image_nii, label_nii, label_path: Path, image_path: Path) -> None:
    """A ``UserError`` where the label's voxel size, origin or axis directions differ from its
    image's by more than a thousandth of a voxel (nnU-Net's dataset check compares them too):
    its voxels would be trained against the image's voxels at other places."""
    image_zooms, label_zooms = (np.asarray(n.header.get_zooms()[:3], float) for n in (image_nii, label_nii))
    if not np.allclose(image_zooms, label_zooms, rtol=1e-3, atol=0):
        raise UserError(f"{label_path}: voxel size {' x '.join(f'{z:g}' for z in label_zooms)} differs from its "
                        f"image's {' x '.join(f'{z:g}' for z in image_zooms)} ({image_path.name}); the label must "
                        "lie on the image's grid: resample it onto the image (nearest neighbour)")
    image_origin, label_origin = (np.asarray(n.affine[:3, 3], float) for n in (image_nii, label_nii))
    if np.any(np.abs(image_origin - label_origin) > 1e-3 * image_zooms.min()):
        raise UserError(f"{label_path}: origin {np.round(label_origin, 3).tolist()} differs from its image's "
                        f"{np.round(image_origin, 3).tolist()} ({image_path.name}); the label must lie on the "
                        "image's grid: resample it onto the image (nearest neighbour)")
    image_axes, label_axes = (n.affine[:3, :3] / np.asarray(n.header.get_zooms()[:3], float)
                              for n in (image_nii, label_nii))
    if not np.allclose(image_axes, label_axes, atol=1e-3):
        raise UserError(f"{label_path}: its axes point in other directions than its image's ({image_path.name}: "
                        "flipped or rotated); the label must lie on the image's grid: resample it onto the image "
                        "(nearest neighbour)")


def save_nifti(volume: np.ndarray, path: Path, spacing) -> None:
    """One (X, Y, Z) volume as NIfTI, voxel size ``spacing`` (mm) on the affine's diagonal."""
    import nibabel as nib

    image = nib.Nifti1Image(volume, np.diag([*spacing, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def read_msd_spacing(root, case_id: str, extra_dirs=()) -> tuple[float, float, float]:
    """``(sx, sy, sz)`` voxel size in mm of the case's image, from the NIfTI header (pixdim)."""
    image_path, _ = case_paths(root, case_id, extra_dirs)
    header = _load(image_path, "image").header
    if len(header.get_zooms()) < 3:
        raise UserError(f"{image_path}: expected a 3D volume, the header has {len(header.get_zooms())} dimensions")
    zooms = _stored_pixdim(image_path, header)
    to_mm = UNIT_TO_MM.get(header.get_xyzt_units()[0], 1.0)
    spacing = tuple(float(z) * to_mm for z in zooms[:3])
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise UserError(f"{image_path}: the header's voxel size {' x '.join(f'{z:g}' for z in zooms[:3])} is not "
                        "three positive numbers (pixdim[1:4]); fix the file's header (e.g. with SimpleITK or "
                        "nibabel) to the scan's voxel size in mm")
    return spacing


def _stored_pixdim(path: Path, header) -> tuple:
    """pixdim[1:4] as the file stores it: nibabel's loaded header has 0 already replaced by 1
    and negative values by their size, which would hide a broken header."""
    import nibabel as nib

    try:
        with nib.openers.ImageOpener(path) as f:
            stored = type(header).from_fileobj(f, check=False)
    except Exception:  # the loaded header read it already; a second read failing changes nothing
        return tuple(header.get_zooms()[:3])
    return tuple(float(z) for z in stored["pixdim"][1:4])


def read_msd_shape(root, case_id: str, extra_dirs=()) -> tuple[int, ...]:
    """The image shape from the NIfTI header, without reading the voxels: (X, Y, Z), or
    (X, Y, Z, C) for a multi-channel image."""
    image_path, _ = case_paths(root, case_id, extra_dirs)
    shape = _load(image_path, "image").shape
    if len(shape) < 3:
        raise UserError(f"{image_path}: expected a 3D volume, got shape {shape}")
    return tuple(int(s) for s in shape)
