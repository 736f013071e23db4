"""Where a training iteration's GPU time goes: runs train_mean_teacher.py in this process
under torch.profiler and prints the kernels grouped by kind, then the top kernels.

    python benchmarks/profile_train.py --dataset_name Synthetic --patch_size 112 112 80 \\
        --max_iterations 40 --deterministic 0 --exp profile --overwrite

All arguments go to train_mean_teacher.py. The first iterations (cuDNN autotuning) are in
the profile too: use enough iterations that they do not dominate.
"""
import collections
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train_mean_teacher  # noqa: E402

KINDS = [("convolution (cuDNN/GEMM)", ("conv", "gemm", "sm90", "sm80", "cutlass", "xmma", "implicit")),
         ("batch norm", ("batch_norm", "bn_", "batchnorm")),
         ("softmax / loss", ("softmax", "nll", "log_softmax", "cross_entropy")),
         ("optimizer / EMA (foreach)", ("foreach", "multi_tensor", "lerp")),
         ("copies / layout", ("copy", "transpose", "nchw", "nhwc", "cat", "flip", "rot")),
         ("elementwise / reductions", ("elementwise", "reduce", "vectorized", "unrolled", "relu", "threshold"))]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def main():
    sys.argv = ["train_mean_teacher.py", *sys.argv[1:]]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        try:
            train_mean_teacher.main()
        except SystemExit as stop:
            if stop.code:
                raise
    cuda = torch.cuda.is_available()
    events = [e for e in prof.key_averages() if (e.self_device_time_total if cuda else e.self_cpu_time_total) > 0]
    total = sum(e.self_device_time_total if cuda else e.self_cpu_time_total for e in events)
    by_kind = collections.Counter()
    for e in events:
        by_kind[kind_of(e.key)] += e.self_device_time_total if cuda else e.self_cpu_time_total
    print(f"\n{'device' if cuda else 'CPU'} self time by kind (total {total / 1e6:.2f} s):")
    for kind, t in by_kind.most_common():
        print(f"  {kind:<28}{t / 1e6:8.3f} s {100 * t / total:6.1f} %")
    print("\ntop kernels:")
    events.sort(key=lambda e: -(e.self_device_time_total if cuda else e.self_cpu_time_total))
    for e in events[:25]:
        t = e.self_device_time_total if cuda else e.self_cpu_time_total
        print(f"  {t / 1e3:9.1f} ms {100 * t / total:5.1f} % x{e.count:<6} {e.key[:110]}")


if __name__ == "__main__":
    main()
