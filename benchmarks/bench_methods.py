"""Seconds per training iteration of each method script on the same data, next to Mean
Teacher's: each script trains --iterations iterations in a fresh run folder under a temporary
directory, and its own closing "speed" line (seconds per iteration after the first logged
stretch, data wait included) is read back.

    OMP_NUM_THREADS=2 python benchmarks/bench_methods.py --dataset_name Hippocampus \\
        --root_path ../shared/data/Hippocampus --train_list dev_train.list --labelnum 17 --iterations 60

Each method runs with its own defaults (BCP: 4 labeled + 4 unlabeled patches; the others 2 + 2;
AD-MT's student sees 2 + 2 + 2, the unlabeled patches' strong view added)
except the schedule; BCP is timed in its self-training stage (--pretrain_iterations 0 times
stage 2; pass --bcp_pretraining to time stage 1 instead).
"""
import argparse
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"SUP": "train_sup.py", "MT": "train_mean_teacher.py", "UAMT": "train_uamt.py", "BCP": "train_bcp.py",
           "ADMT": "train_admt.py"}
SPEED = re.compile(r"speed: ([0-9.]+) s/iteration over the last (\d+) iterations, data wait ([0-9.]+)")


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="Synthetic")
    p.add_argument("--root_path", default=None)
    p.add_argument("--train_list", default=None)
    p.add_argument("--labelnum", default="8")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--methods", nargs="+", default=list(SCRIPTS), choices=list(SCRIPTS))
    p.add_argument("--gpu", default="0")
    p.add_argument("--bcp_pretraining", action="store_true", help="time BCP's first stage instead of its second")
    p.add_argument("--extra", default="", help="more flags for every script, e.g. --extra='--patch_size 32 32 16'")
    args = p.parse_args()
    log_every = max(args.iterations // 3, 1)
    print(f"{cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {args.iterations} iterations "
          f"each, the speed of the last {args.iterations - log_every} (after the first {log_every})")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for method in args.methods:
            command = [sys.executable, str(REPO / SCRIPTS[method]), "--dataset_name", args.dataset_name,
                       "--labelnum", args.labelnum, "--max_iterations", str(args.iterations), "--gpu", args.gpu,
                       "--log_every", str(log_every), "--exp", "bench", *args.extra.split()]
            # the scripts run in a scratch folder: paths given relative to here must not move with them
            command += ["--root_path", str(Path(args.root_path).resolve())] if args.root_path else []
            if args.train_list:  # a list file here, or the name of one in the data folder
                command += ["--train_list", str(Path(args.train_list).resolve()) if Path(args.train_list).is_file()
                            else args.train_list]
            if method == "BCP":
                command += ["--pretrain_iterations", str(args.iterations if args.bcp_pretraining else 0)]
            proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
            found = SPEED.findall(proc.stdout)
            if proc.returncode != 0 or not found:
                print(f"{method}: failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
                continue
            seconds, _, wait = found[-1]
            results[method] = float(seconds)
            print(f"{method:5s} {float(seconds):.3f} s/iteration (data wait {float(wait):.4f})", flush=True)
    if "MT" in results:
        print("relative to Mean Teacher: " + ", ".join(f"{m} {s / results['MT']:.2f}x" for m, s in results.items()))
    if len(results) < len(args.methods):
        sys.exit(1)  # a method that failed is a failed benchmark, whatever the others measured


if __name__ == "__main__":
    main()
