"""Synthetic LA-like volumes in the UA-MT h5 layout, so the scripts run with no download.

Each case is a blobby 3D "atrium" (a union of deformed ellipsoids) in an image
with MRI-like traits: smooth background tissue, a multiplicative bias field
and Rician noise, z-scored over the whole volume like the real preprocessing.
Layout: ``<out>/volumes/<ID>/mri_norm2.h5``, ``<out>/train.list``, ``<out>/test.list``.

    python -m dataloaders.synthetic --out data/synthetic
"""
import argparse
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from dataloaders.la_heart import VOLUME_FILE


def smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-smoothed noise rescaled to [-1, 1]."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (np.abs(field).max() + 1e-8)


def make_case(rng: np.random.Generator, shape) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) of one synthetic case, both of ``shape`` (X, Y, Z)."""
    coords = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    deformation = 0.35 * smooth_field(rng, shape, sigma=4)
    label = np.zeros(shape, bool)
    centre = np.array(shape) * rng.uniform(0.4, 0.6, size=3)
    for _ in range(rng.integers(2, 5)):
        blob_centre = centre + np.array(shape) * rng.uniform(-0.12, 0.12, size=3)
        radii = np.array(shape) * rng.uniform(0.14, 0.26, size=3)
        distance = sum(((coords[a] - blob_centre[a]) / radii[a]) ** 2 for a in range(3))
        label |= distance + deformation < 1
    # Bright unlabeled distractors (vessels, other chambers): the network must learn shape, not brightness.
    distractors = np.zeros(shape, bool)
    for _ in range(rng.integers(2, 4)):
        blob_centre = np.array(shape) * rng.uniform(0.1, 0.9, size=3)
        radii = np.array(shape) * rng.uniform(0.05, 0.1, size=3)
        distractors |= sum(((coords[a] - blob_centre[a]) / radii[a]) ** 2 for a in range(3)) < 1
    distractors &= ~ndimage.binary_dilation(label, iterations=2)
    bright = ndimage.gaussian_filter((label | distractors).astype(np.float32), 1.0)
    tissue = 0.25 * smooth_field(rng, shape, sigma=3) + 0.15 * smooth_field(rng, shape, sigma=1)
    signal = np.clip(0.35 + tissue + 0.4 * bright, 0, None)
    signal *= 1 + 0.3 * smooth_field(rng, shape, sigma=12)  # coil bias field
    noise = 0.2
    image = np.hypot(signal + noise * rng.standard_normal(shape), noise * rng.standard_normal(shape))
    image = (image - image.mean()) / image.std()
    return image.astype(np.float32), label.astype(np.uint8)


def generate_dataset(out_dir, num_train: int = 40, num_test: int = 10, seed: int = 0,
                     size=(72, 64, 40)) -> Path:
    """Write ``num_train + num_test`` cases of about ``size`` voxels (each axis within
    +-12 %) and the list files; returns the volumes folder."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    ids = [f"synthetic_{i:03d}" for i in range(num_train + num_test)]
    for case_id in ids:
        shape = tuple(int(round(s * rng.uniform(0.88, 1.12))) for s in size)
        image, label = make_case(rng, shape)
        case_dir = out_dir / "volumes" / case_id
        case_dir.mkdir(parents=True, exist_ok=True)
        with h5py.File(case_dir / VOLUME_FILE, "w") as f:
            f.create_dataset("image", data=image, compression="gzip")
            f.create_dataset("label", data=label, compression="gzip")
    (out_dir / "train.list").write_text("\n".join(ids[:num_train]) + "\n")
    (out_dir / "test.list").write_text("\n".join(ids[num_train:]) + "\n")
    return out_dir / "volumes"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/synthetic", help="output folder")
    parser.add_argument("--num_train", type=int, default=40)
    parser.add_argument("--num_test", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=3, default=(72, 64, 40), metavar=("X", "Y", "Z"),
                        help="typical volume size in voxels (LA volumes are about 200 150 88)")
    args = parser.parse_args()
    volumes = generate_dataset(args.out, args.num_train, args.num_test, args.seed, tuple(args.size))
    print(f"wrote {args.num_train + args.num_test} cases to {volumes}")


if __name__ == "__main__":
    main()
