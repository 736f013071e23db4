"""A small synthetic CT dataset in the MSD / nnU-Net layout: thick axial slices and Hounsfield
units, unlike the LA and Hippocampus MRI benchmarks, so that the toolkit's self-configuration
(intensity normalisation, anisotropic patches and resampling) can be checked without real CT.

Each case is an abdomen-like cross-section: air (-1000 HU) around a body ellipse with a ring
of subcutaneous fat (about -100 HU), soft tissue (about 40 HU) with pockets of fat, a vertebra
(cancellous bone 400-600 HU in a cortical shell of 1000-1500 HU) with an aorta (150-250 HU,
contrast) in front of it, a large organ on the patient's left (50-70 HU), the target organ on
the right (label 1, 60-80 HU) and, just behind it, an unlabeled neighbour of the same brightness
(60-85 HU): the target is found by its place and shape, not by a threshold. Organs are deformed
ellipsoids, different in every case; so are the in-plane size (+-10 %) and the slice count
(``shape[2]`` +-2).

    <out>/dataset.json                 modality {"0": "CT"}, labels {"0": "background", "1": "organ"}
    <out>/imagesTr/ct_000.nii.gz ...   int16 HU; the first ``labeled`` have labelsTr/ files, the
    <out>/labelsTr/ct_000.nii.gz ...   other training cases are unlabeled (images only)
    <out>/train.list, <out>/val.list   training cases; labeled validation cases not in train.list

    python -m dataloaders.synthetic_ct --out data/synthetic_ct
"""
import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from dataloaders.msd import DATASET_JSON, IMAGES_DIR, LABELS_DIR, save_nifti

AIR, FAT, SOFT_TISSUE = -1000, -100, 40  # HU


def smooth_field(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Gaussian-smoothed noise rescaled to [-1, 1] (``sigma`` in voxels, per axis). As in
    dataloaders/synthetic.py, which imports torch: a second copy keeps this module light."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (np.abs(field).max() + 1e-8)


def make_ct_case(rng: np.random.Generator, shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    """(image int16 in HU, label uint8) of one case, both of ``shape`` (X, Y, Z) voxels at
    ``spacing`` (mm). X runs from the patient's right to left, Y front to back, Z along the body."""
    size_x, size_y, size_z = shape
    # In-plane positions as fractions of the field of view (-0.5..0.5), so the anatomy fills
    # any in-plane size; along the body axis mm from the middle slice, so organs span fewer
    # slices when slices are thicker.
    u, v, z = np.meshgrid((np.arange(size_x) + 0.5) / size_x - 0.5, (np.arange(size_y) + 0.5) / size_y - 0.5,
                          (np.arange(size_z) - (size_z - 1) / 2) * spacing[2], indexing="ij")

    def ellipsoid(centre, radii, angle=0.0, wobble=0.0):
        """A (deformed) ellipsoid, rotated by ``angle`` (rad) in-plane; radii in FOV fractions and mm."""
        du, dv = u - centre[0], v - centre[1]
        du, dv = du * np.cos(angle) + dv * np.sin(angle), dv * np.cos(angle) - du * np.sin(angle)
        distance = (du / radii[0]) ** 2 + (dv / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2
        return distance + (wobble * smooth_field(rng, shape, sigma=(4, 4, 1)) if wobble else 0) < 1

    half_x, half_y = rng.uniform(0.40, 0.46), rng.uniform(0.30, 0.38)
    body = ellipsoid((0, 0, 0), (half_x, half_y, np.inf))
    fat_depth = rng.uniform(0.05, 0.09)
    inside = ellipsoid((0, 0, 0), (half_x - fat_depth, half_y - fat_depth, np.inf))
    spine_v, spine_r = half_y - fat_depth - rng.uniform(0.10, 0.13), rng.uniform(0.07, 0.09)
    vertebra = ellipsoid((0, spine_v, 0), (spine_r, spine_r * 0.9, np.inf))
    cortex = vertebra & ~ellipsoid((0, spine_v, 0), (spine_r * 0.7, spine_r * 0.6, np.inf))
    aorta = ellipsoid((rng.uniform(-0.04, 0.0), spine_v - spine_r - 0.05, 0), (0.035, 0.035, np.inf))
    big_organ = ellipsoid((rng.uniform(0.14, 0.2), rng.uniform(-0.08, 0.0), rng.uniform(-5, 5)),
                          (rng.uniform(0.14, 0.2), rng.uniform(0.14, 0.2), rng.uniform(30, 50)),
                          rng.uniform(-0.4, 0.4), wobble=0.3)
    centre = np.array([rng.uniform(-0.22, -0.14), rng.uniform(-0.08, 0.02), rng.uniform(-5, 5)])
    target = ellipsoid(centre, (rng.uniform(0.11, 0.16), rng.uniform(0.08, 0.12), rng.uniform(18, 30)),
                       rng.uniform(-0.6, 0.6), wobble=0.4)
    neighbour = ellipsoid(centre + [rng.uniform(-0.04, 0.04), rng.uniform(0.12, 0.16), rng.uniform(-8, 8)],
                          (rng.uniform(0.05, 0.08), rng.uniform(0.05, 0.07), rng.uniform(12, 20)), wobble=0.3)
    # One voxel of soft tissue between the target and its neighbour: touching, but not merged.
    neighbour &= ~ndimage.binary_dilation(target, iterations=1)

    image = np.full(shape, float(AIR))
    image[body] = FAT
    image[inside] = SOFT_TISSUE + 10 * smooth_field(rng, shape, sigma=(2, 2, 1))[inside]
    image[inside & (smooth_field(rng, shape, sigma=(2, 2, 1)) > 0.2)] = FAT  # fat between the organs
    for organ, low, high in ((big_organ, 50, 70), (target, 60, 80), (neighbour, 60, 85)):
        image[organ & inside] = rng.uniform(low, high)
    image[aorta] = rng.uniform(150, 250)
    image[vertebra] = rng.uniform(400, 600)
    image[cortex] = rng.uniform(1000, 1500)
    label = target & inside & ~vertebra & ~aorta
    image = ndimage.gaussian_filter(image, sigma=(0.7, 0.7, 0.3))  # partial volume at the edges
    image += rng.normal(0, 12, shape)  # quantum noise, a typical HU standard deviation
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), label.astype(np.uint8)


def generate_ct_dataset(out, *, cases: int = 12, labeled: int = 4, val_cases: int = 4, seed: int = 0,
                        shape=(64, 64, 12), spacing=(0.8, 0.8, 5.0)) -> Path:
    """Write ``cases`` training cases (the first ``labeled`` with labels) and ``val_cases``
    labeled validation cases of about ``shape`` (X, Y, Z) voxels at ``spacing`` (mm) to ``out``
    in the MSD layout (see the module docstring); returns ``out``."""
    if not 0 <= labeled <= cases:
        raise ValueError(f"labeled must be between 0 and cases ({cases}), got {labeled}")
    out = Path(out)
    for folder in (IMAGES_DIR, LABELS_DIR):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"ct_{i:03d}" for i in range(cases + val_cases)]
    with_label = ids[:labeled] + ids[cases:]
    for case_id in ids:
        case_shape = (*(int(round(s * rng.uniform(0.9, 1.1))) for s in shape[:2]),
                      max(1, shape[2] + int(rng.integers(-2, 3))))
        image, label = make_ct_case(rng, case_shape, spacing)
        save_nifti(image, out / IMAGES_DIR / f"{case_id}.nii.gz", spacing)
        if case_id in with_label:
            save_nifti(label, out / LABELS_DIR / f"{case_id}.nii.gz", spacing)
    description = {
        "name": "Synthetic CT",
        "description": f"Synthetic abdomen-like CT in HU, {' x '.join(f'{s:g}' for s in spacing)} mm voxels, "
                       f"seed {seed}; made by dataloaders/synthetic_ct.py",
        "tensorImageSize": "3D",
        "labels": {"0": "background", "1": "organ"},
        "modality": {"0": "CT"},
        "numTraining": len(with_label),
        "training": [{"image": f"./{IMAGES_DIR}/{c}.nii.gz", "label": f"./{LABELS_DIR}/{c}.nii.gz"}
                     for c in with_label],
    }
    (out / DATASET_JSON).write_text(json.dumps(description, indent=2) + "\n")
    (out / "train.list").write_text("\n".join(ids[:cases]) + "\n")
    if val_cases:
        (out / "val.list").write_text("\n".join(ids[cases:]) + "\n")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/synthetic_ct", help="output folder")
    parser.add_argument("--cases", type=int, default=12, help="training cases")
    parser.add_argument("--labeled", type=int, default=4, help="training cases with labels (the first ones)")
    parser.add_argument("--val_cases", type=int, default=4, help="labeled validation cases (val.list)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 12), metavar=("X", "Y", "Z"),
                        help="typical volume size in voxels")
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.8, 0.8, 5.0), metavar=("X", "Y", "Z"),
                        help="voxel size in mm")
    args = parser.parse_args()
    out = generate_ct_dataset(args.out, cases=args.cases, labeled=args.labeled, val_cases=args.val_cases,
                              seed=args.seed, shape=tuple(args.shape), spacing=tuple(args.spacing))
    print(f"wrote {args.cases} training cases ({args.labeled} labeled) and {args.val_cases} validation cases to {out}")


if __name__ == "__main__":
    main()
