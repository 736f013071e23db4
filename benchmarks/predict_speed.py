"""Seconds per case of predict.py's predictor (``evaluation.predictor.Predictor``: sliding
windows, softmax averaging, argmax), without reading or writing files, on volumes of the
datasets' usual sizes and a randomly initialised VNet of the training configuration.

    python benchmarks/predict_speed.py                      # LA and Hippocampus sizes, on the CPU
    python benchmarks/predict_speed.py --sizes hippocampus --repeats 5 --gpu 0

    la           200 x 140 x 88 voxels, patch 112 x 112 x 80, strides 18/4 (the LA defaults)
    hippocampus  36 x 50 x 35 voxels, patch 32 x 48 x 32, strides 8/8, 3 classes

Each size: ``--warmup`` untimed cases, then ``--repeats`` timed ones; prints each time, their
mean, the number of windows, the CPU (lscpu), torch version and threads. Random weights give
the real compute (the network's cost does not depend on its weights); the labels mean nothing.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evaluation.predictor import Predictor  # noqa: E402
from utils.checkpoint import VNET_CONFIG, build_vnet  # noqa: E402
from utils.device import runtime_versions, select_device  # noqa: E402
from utils.errors import report_user_errors  # noqa: E402
from utils.sliding_window import pad_to_patch, window_grid  # noqa: E402

# name: (volume shape, patch, stride_xy, stride_z, classes), as DATASETS and the data have them
SIZES = {"la": ((200, 140, 88), (112, 112, 80), 18, 4, 2),
         "hippocampus": ((36, 50, 35), (32, 48, 32), 8, 8, 3)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sw_batch", type=int, default=8)
    p.add_argument("--amp", type=int, default=None, help="as predict.py (default: on for a GPU, off on a CPU)")
    p.add_argument("--channels_last", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--gpu", default="-1", help="-1: the CPU (default); a GPU index otherwise")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no lscpu)"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
    return names[0] if names else "unknown"


def random_checkpoint(num_classes: int, patch_size, seed: int) -> dict:
    """What a predictor reads from a checkpoint, with the weights of a freshly built VNet."""
    torch.manual_seed(seed)
    return {"network": {**VNET_CONFIG, "n_classes": num_classes},
            "student": build_vnet(num_classes, torch.device("cpu")).state_dict(), "teacher": None,
            "args": {"patch_size": list(patch_size)}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@report_user_errors
def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.gpu)
    print(f"CPU {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; device {device}"
          + (f" ({runtime_versions().get('gpu')})" if device.type == "cuda" else ""))
    rng = np.random.default_rng(args.seed)
    for name in args.sizes:
        shape, patch, stride_xy, stride_z, classes = SIZES[name]
        predictor = Predictor(random_checkpoint(classes, patch, args.seed), f"random VNet ({name})", device=device,
                              patch_size=patch, stride_xy=stride_xy, stride_z=stride_z, sw_batch=args.sw_batch,
                              amp=args.amp, channels_last=bool(args.channels_last))
        volume = rng.standard_normal(shape).astype(np.float32)
        padded = pad_to_patch(torch.from_numpy(volume), patch)[0].shape
        windows = len(window_grid(tuple(padded), patch, (stride_xy, stride_xy, stride_z)))
        times = []
        for run in range(args.warmup + args.repeats):
            sync(device)
            start = time.perf_counter()
            predictor.predict(volume)
            sync(device)
            if run >= args.warmup:
                times.append(time.perf_counter() - start)
        print(f"{name}: {' x '.join(map(str, shape))} voxels, {windows} windows of {' x '.join(map(str, patch))}, "
              f"{predictor.describe()}: {np.mean(times):.2f} s per case "
              f"({', '.join(f'{t:.2f}' for t in times)} s; {args.warmup} warm-up)")


if __name__ == "__main__":
    main()
