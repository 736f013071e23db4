"""LA with thick slices: the LA h5 cases resampled from 0.625 mm isotropic voxels to a clinical
anisotropic spacing (1.25 x 1.25 x 5 mm by default) and written in the MSD / nnU-Net layout, to
check that the toolkit configures itself on data unlike its benchmark (a development tool; the
copy is written outside the repository and never committed).

    python tools/anisotropic_la.py ../shared/data/LA /tmp/LA_thick --spacing 1.25 1.25 5

writes ``<out>/dataset.json``, ``<out>/imagesTr/<ID>.nii.gz`` (float32, values as stored: the
h5 images are z-scored), ``<out>/labelsTr/<ID>.nii.gz`` (uint8) and copies of the list files.
Images are first blurred as a scanner's thicker voxels would average them (a Gaussian per
axis whose full width at half maximum brings the 0.625 mm voxel to the target size), then
resampled linearly; labels by nearest neighbour. Without the blur, since both grids start at
the first voxel's centre and 1.25 and 5 mm are whole multiples of 0.625 mm, resampling would
keep thin sections 5 mm apart, sharper than real thick slices. A case already written is
skipped, so an interrupted run continues where it stopped. At 1.25 x 1.25 x 5 mm a case of
about 190 x 142 x 88 voxels becomes about 95 x 71 x 11 (all 80 cases: 74-122 x 66-80 x 11,
8 s on 2 cores).
"""
import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloaders.case_lists import read_case_list  # noqa: E402
from dataloaders.download import LA_CASES_DIR  # noqa: E402
from dataloaders.la_heart import VOLUME_FILE  # noqa: E402
from dataloaders.msd import DATASET_JSON, IMAGES_DIR, LABELS_DIR  # noqa: E402
from dataloaders.resampling import resample  # noqa: E402
from dataloaders.msd import save_nifti  # noqa: E402
from utils.errors import UserError, report_user_errors, require_folder_or_nothing  # noqa: E402

LA_SPACING = (0.625, 0.625, 0.625)  # mm, every LA case
LISTS = ("dev_train.list", "dev_val.list", "train.list")


def find_source(folder) -> tuple[Path, Path]:
    """``(case folder, lists folder)`` of ``folder``: the LA folder (holding
    ``2018LA_Seg_Training Set/`` and the lists) or the case folder itself (lists beside it)."""
    folder = Path(folder)
    if (folder / LA_CASES_DIR).is_dir():
        return folder / LA_CASES_DIR, folder
    if folder.is_dir() and any(folder.glob(f"*/{VOLUME_FILE}")):
        return folder, folder.parent
    raise UserError(f"{folder}: neither an LA folder (with '{LA_CASES_DIR}/') nor a folder of "
                    f"<ID>/{VOLUME_FILE} cases")


def write_atomic(volume: np.ndarray, path: Path, spacing) -> None:
    """``volume`` (X, Y, Z) as NIfTI at ``path``, written under a hidden temporary name first, so
    an interrupted run never leaves a truncated file under the real name (the MSD reader
    ignores names starting with a dot)."""
    partial = path.with_name(f".{path.name[:-len('.nii.gz')]}.partial.nii.gz")
    save_nifti(volume, partial, spacing)
    os.replace(partial, path)


def slab_average(image: np.ndarray, spacing, target) -> np.ndarray:
    """``image`` (X, Y, Z) at ``spacing`` mm blurred along each axis by a Gaussian whose FWHM
    widens a voxel of ``spacing`` to ``target`` (the slab a thicker voxel averages)."""
    from scipy import ndimage

    fwhm_to_sigma = 1 / (2 * np.sqrt(2 * np.log(2)))
    sigmas = [np.sqrt(max(t * t - s * s, 0.0)) * fwhm_to_sigma / s for s, t in zip(spacing, target)]
    return ndimage.gaussian_filter(image, sigmas, mode="nearest").astype(np.float32)


def convert_case(h5_path: Path, out: Path, case_id: str, spacing) -> tuple[str, tuple, tuple, bool]:
    """Resample one case to ``spacing`` (mm) and write it; returns ``(ID, shape before, shape
    after, skipped)``, shapes (X, Y, Z) in voxels. A case whose image is there is skipped."""
    import nibabel as nib

    image_path, label_path = out / IMAGES_DIR / f"{case_id}.nii.gz", out / LABELS_DIR / f"{case_id}.nii.gz"
    with h5py.File(h5_path, "r") as f:
        if "image" not in f or "label" not in f:
            raise UserError(f"{h5_path}: expected h5 datasets 'image' and 'label', found {sorted(f)}")
        before = f["image"].shape
        if image_path.is_file():
            return case_id, before, nib.load(image_path).shape, True
        image, label = f["image"][:], f["label"][:]
    image = resample(slab_average(image.astype(np.float32), LA_SPACING, spacing), LA_SPACING, spacing,
                     is_label=False)
    label = resample(label.astype(np.uint8), LA_SPACING, spacing, is_label=True)
    # The label first: an image without its label would read as an unlabeled case, and the
    # image is what marks the case as done.
    write_atomic(label, label_path, spacing)
    write_atomic(image, image_path, spacing)
    return case_id, before, image.shape, False


@report_user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the LA folder (or its case folder, with the lists beside it)")
    parser.add_argument("out", type=Path, help="the MSD folder to write (outside the repository)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.25, 1.25, 5.0), metavar=("X", "Y", "Z"),
                        help="target voxel size in mm")
    parser.add_argument("--lists", nargs="+", default=list(LISTS),
                        help="list files whose cases are converted (their union, in order): names beside the case "
                             "folder, or paths; missing ones are skipped")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1: in this process)")
    args = parser.parse_args(argv)
    start = time.time()
    cases_dir, lists_dir = find_source(args.source)
    require_folder_or_nothing(args.out, "out")
    if min(args.spacing) <= 0:
        raise UserError(f"--spacing must be positive (mm), got {args.spacing}")
    spacing = tuple(args.spacing)

    lists = [lists_dir / name for name in args.lists if (lists_dir / name).is_file()]
    if not lists:
        raise UserError(f"none of the lists {', '.join(args.lists)} is in {lists_dir}")
    for name in args.lists:
        if not (lists_dir / name).is_file():
            print(f"{lists_dir / name} not found: skipped")
    case_ids = list(dict.fromkeys(c for path in lists for c in read_case_list(path)))
    for case_id in case_ids:  # every input checked before any case is converted
        if not (cases_dir / case_id / VOLUME_FILE).is_file():
            raise UserError(f"{cases_dir / case_id / VOLUME_FILE} not found (listed in {lists_dir})")

    for folder in (IMAGES_DIR, LABELS_DIR):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    for path in lists:
        shutil.copyfile(path, args.out / path.name)
    spacing_text = " x ".join(f"{s:g}" for s in spacing)
    description = {
        "name": "LA thick slices",
        "description": f"The 2018 Left Atrium MRI cases of {cases_dir.resolve()} (UA-MT h5, 0.625 mm isotropic), "
                       f"resampled to {spacing_text} mm (images linear, labels nearest neighbour) by "
                       "tools/anisotropic_la.py",
        "tensorImageSize": "3D",
        "labels": {"0": "background", "1": "left atrium"},
        "modality": {"0": "MRI"},
        "numTraining": len(case_ids),
        "training": [{"image": f"./{IMAGES_DIR}/{c}.nii.gz", "label": f"./{LABELS_DIR}/{c}.nii.gz"} for c in case_ids],
    }
    (args.out / DATASET_JSON).write_text(json.dumps(description, indent=2) + "\n")

    jobs = [(cases_dir / c / VOLUME_FILE, args.out, c, spacing) for c in case_ids]
    print(f"{len(case_ids)} cases of {', '.join(p.name for p in lists)} to {spacing_text} mm in {args.out}")
    shapes, skipped = [], 0
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else nullcontext() as pool:
        for case_id, before, after, was_skipped in (pool.map if pool else map)(convert_case, *zip(*jobs)):
            print(f"{case_id}  {'x'.join(map(str, before))} -> {'x'.join(map(str, after))}"
                  f"{'  (already written)' if was_skipped else ''}", flush=True)
            shapes.append(after)
            skipped += was_skipped
    low, high = np.min(shapes, axis=0), np.max(shapes, axis=0)
    print(f"{len(case_ids)} cases ({len(case_ids) - skipped} written, {skipped} already there), shapes from "
          f"{'x'.join(map(str, low))} to {'x'.join(map(str, high))} voxels, in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
