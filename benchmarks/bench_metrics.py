"""Benchmark utils.metrics.binary_metrics against medpy on real LA labels.

For each of N LA cases two "predictions" are scored: the label shifted by a few
voxels and eroded (a good prediction: small surfaces, where ``binary_metrics``
uses a KD-tree), and thresholded smoothed noise over the whole volume (a
scattered one: a huge surface, where it falls back to distance transforms);
medpy's dc + jc + hd95 + asd (as the original LA evaluation calls them, voxel
units) are timed against one ``binary_metrics`` call.

Usage:
    python benchmarks/bench_metrics.py --la_root "/path/to/2018LA_Seg_Training Set"
    LA_ROOT=... python benchmarks/bench_metrics.py [--n 3] [--repeats 3] [--spacing 0.625 0.625 0.625]
"""
import argparse
import glob
import os
import sys
import time

import h5py
import numpy as np
from medpy.metric import binary as mb
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from utils.metrics import binary_metrics  # noqa: E402

KEYS = ("dice", "jaccard", "hd95", "asd")


def medpy_case(pred, gt, spacing):
    return {
        "dice": mb.dc(pred, gt),
        "jaccard": mb.jc(pred, gt),
        "hd95": mb.hd95(pred, gt, voxelspacing=spacing),
        "asd": mb.asd(pred, gt, voxelspacing=spacing),
    }


def best_time(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--la_root", default=os.environ.get("LA_ROOT"))
    ap.add_argument("--n", type=int, default=3, help="number of cases")
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats")
    ap.add_argument("--spacing", type=float, nargs="*", default=None)
    args = ap.parse_args()
    if not args.la_root or not os.path.isdir(args.la_root):
        sys.exit("give --la_root or set LA_ROOT to the LA training-set folder")
    files = sorted(glob.glob(os.path.join(args.la_root, "*", "mri_norm2.h5")))[: args.n]
    if not files:
        sys.exit(f"no */mri_norm2.h5 under {args.la_root}")
    spacing = tuple(args.spacing) if args.spacing else None

    kinds = ("good", "scattered")
    t_med = {k: [] for k in kinds}
    t_new = {k: [] for k in kinds}
    maxdiff = {k: 0.0 for k in KEYS}
    for i, f in enumerate(files):
        with h5py.File(f, "r") as h:
            gt = h["label"][:]
        shift = (3, -2, 1)
        good = ndimage.binary_erosion(np.roll(gt, shift, axis=(0, 1, 2)), iterations=1 + i % 2)
        noise = ndimage.gaussian_filter(np.random.default_rng(i).standard_normal(gt.shape), 1.5)
        scattered = noise > np.quantile(noise, 0.8)
        for kind, pred in zip(kinds, (good, scattered)):
            pred = pred.astype(np.uint8)
            tm, ref = best_time(lambda: medpy_case(pred, gt, spacing), args.repeats)
            tn, got = best_time(lambda: binary_metrics(pred, gt, spacing=spacing), args.repeats)
            t_med[kind].append(tm)
            t_new[kind].append(tn)
            for k in KEYS:
                maxdiff[k] = max(maxdiff[k], abs(float(got[k]) - float(ref[k])))
            print(
                f"{os.path.basename(os.path.dirname(f))} {kind:9s} shape={gt.shape} fg={gt.mean():.3f} "
                f"medpy={tm:.3f}s fast={tn:.3f}s  "
                + " ".join(f"{k}={got[k]:.4f}" for k in KEYS)
            )
    for kind in kinds:
        m, n = float(np.mean(t_med[kind])), float(np.mean(t_new[kind]))
        print(f"{kind} predictions:")
        print(f"  medpy dc+jc+hd95+asd : {m:.3f} s/case")
        print(f"  binary_metrics       : {n:.3f} s/case")
        print(f"  speed-up             : {m / n:.1f}x")
    print("max |diff|           : " + ", ".join(f"{k}={maxdiff[k]:.2e}" for k in KEYS))

if __name__ == "__main__":
    main()
