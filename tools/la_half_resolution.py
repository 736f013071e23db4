"""A half-resolution copy of the LA h5 data, for experiments a CPU can afford (a development
tool; the copy is written outside the repository and never committed).

Each image is zoomed by 0.5 per axis (linear), each label likewise and thresholded at 0.5;
the values stay as stored (``--normalize`` decides how the scripts read them). The list
files are copied beside the case folders.

    python tools/la_half_resolution.py ../shared/data/LA /tmp/LAhalf
"""
import argparse
from pathlib import Path

import h5py
import numpy as np
from scipy.ndimage import zoom

CASES = "2018LA_Seg_Training Set"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="the LA folder holding the case folder and the lists")
    p.add_argument("out", type=Path)
    args = p.parse_args()
    lists = sorted(args.source.glob("*.list"))
    if not (args.source / CASES).is_dir() or not lists:
        raise SystemExit(f"error: {args.source} holds no '{CASES}' folder or no *.list files")
    for path in lists:
        (args.out / path.name).parent.mkdir(parents=True, exist_ok=True)
        (args.out / path.name).write_text(path.read_text())
    case_ids = sorted({c for path in lists for c in path.read_text().split()})
    for case_id in case_ids:
        with h5py.File(args.source / CASES / case_id / "mri_norm2.h5", "r") as f:
            image, label = f["image"][:], f["label"][:]
        image = zoom(image, 0.5, order=1).astype(np.float32)
        label = (zoom(label.astype(np.float32), 0.5, order=1) > 0.5).astype(np.uint8)
        (args.out / CASES / case_id).mkdir(parents=True, exist_ok=True)
        with h5py.File(args.out / CASES / case_id / "mri_norm2.h5", "w") as f:
            f.create_dataset("image", data=image, compression="gzip")
            f.create_dataset("label", data=label, compression="gzip")
    print(f"{len(case_ids)} cases at half resolution in {args.out}")


if __name__ == "__main__":
    main()
