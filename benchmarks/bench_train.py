"""Training speed: the original (plain) loop against the fast path, on the same machine.

Runs train_mean_teacher.py once per mode for --iterations iterations on the real data and
reads the speed line each run logs (seconds per iteration after a 20-iteration warm-up,
host time waiting for data, peak GPU memory):

    python benchmarks/bench_train.py --root_path "data/LA/2018LA_Seg_Training Set" --labelnum 16
    python benchmarks/bench_train.py --dataset_name Synthetic --labelnum 8 --iterations 25 --patch_size 32 32 32

(the second on a CPU, where the data is generated in the current folder)

Modes:
  plain    h5 read + numpy augmentation per sample in DataLoader workers, fp32, NCDHW,
           per-tensor EMA and optimizer, deterministic cuDNN, values as stored (the original scripts)
  fast     volumes in device memory, augmentation there, bf16 autocast (also on CPUs with bf16
           units), channels_last_3d, multi-tensor EMA and optimizer, cudnn.benchmark
           (--deterministic 0)
  fast_det the fast path with the default --deterministic 1
  compile  fast + torch.compile
``--variant NAME "MODE FLAGS"`` adds a mode of your own, e.g. ``--variant nchw "fast --channels_last 0"``.
--no-data gives every mode the in-memory data path, to separate GPU speed from loading.
"""
import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from dataloaders.datasets import root_or_default  # noqa: E402
PLAIN = ["--data_on_device", "0", "--amp", "0", "--channels_last", "0", "--foreach", "0", "--deterministic", "1",
         "--normalize", "none"]
FAST = ["--data_on_device", "1", "--amp", "1", "--channels_last", "1", "--foreach", "1", "--deterministic", "0"]
MODES = {"plain": PLAIN, "fast": FAST, "fast_det": FAST[:-1] + ["1"], "compile": FAST + ["--compile", "1"]}
SPEED = re.compile(r"done: (\d+) iterations \(\d+ in this process, ([\d.]+) s\); speed: ([\d.]+) s/iteration over the last (\d+) "
                   r"iterations, data wait ([\d.]+) s/iteration(?:, peak GPU memory ([\d.]+) GiB)?")


def chosen_modes(names: str, variants: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The training flags of each mode in ``names`` (comma-separated), in that order; each
    variant (NAME, "MODE FLAGS...") is a known mode plus flags."""
    known = dict(MODES)
    for name, flags in variants:
        base, *extra = shlex.split(flags) or [""]
        if base not in MODES:
            raise ValueError(f"--variant {name}: {flags!r} must start with one of {', '.join(MODES)}")
        known[name] = MODES[base] + extra
    unknown = [name for name in names.split(",") if name not in known]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(known)} "
                         "or define one with --variant")
    return {name: known[name] for name in names.split(",")}


def run_mode(name, flags, args, workdir) -> dict:
    command = [sys.executable, str(REPO / "train_mean_teacher.py"), "--dataset_name", args.dataset_name,
               "--labelnum", str(args.labelnum), "--max_iterations", str(args.iterations), "--exp", f"bench_{name}",
               "--overwrite", "--log_every", "50", "--save_every", str(10 ** 9), "--snapshot_every", str(10 ** 9), "--num_workers", str(args.num_workers),
               *flags]
    command += ["--root_path", args.root_path, *(["--train_list", args.train_list] if args.train_list else [])]
    if args.patch_size:
        command += ["--patch_size", *map(str, args.patch_size)]
    if args.no_data:
        command += ["--data_on_device", "1"]
    print(f"[{name}] {' '.join(command[1:])}", flush=True)
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    log = Path(workdir) / "model" / f"{args.dataset_name}_bench_{name}_{args.labelnum}_labeled" / "MT" / "log.txt"
    match = SPEED.search(log.read_text()) if log.is_file() else None
    if result.returncode != 0 or not match:
        print(result.stdout[-2000:], result.stderr[-4000:], sep="\n")
        return {"mode": name, "error": f"exit {result.returncode}"}
    done, total, per_iteration, timed, wait, memory = match.groups()
    return {"mode": name, "s_per_iter": float(per_iteration), "data_wait": float(wait),
            "peak_gib": float(memory) if memory else None, "total_s": float(total), "iterations": int(done)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="LA")
    p.add_argument("--root_path", default=None)
    p.add_argument("--train_list", default=None)
    p.add_argument("--labelnum", type=int, default=16)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--patch_size", type=int, nargs=3, default=None,
                   help="default: the dataset's (LA: 112 112 80); on a CPU pass a small one such as 32 32 32")
    p.add_argument("--num_workers", type=int, default=4, help="DataLoader workers of the plain mode")
    p.add_argument("--modes", default="plain,fast", help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--no-data", dest="no_data", action="store_true", help="in-memory data for every mode")
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "FLAGS"),
                   help='one more mode, named NAME: a mode above plus training flags, e.g. '
                        '--variant nchw "fast --channels_last 0"; list NAME in --modes')
    args = p.parse_args()
    try:
        modes = chosen_modes(args.modes, args.variant)
    except ValueError as error:
        p.error(str(error))
    # the runs start in a scratch folder: give them absolute paths (the synthetic set is made here)
    args.root_path = str(Path(root_or_default(args.dataset_name, args.root_path)).resolve())
    args.train_list = str(Path(args.train_list).resolve()) if args.train_list else None

    with tempfile.TemporaryDirectory() as workdir:
        results = [run_mode(name, flags, args, workdir) for name, flags in modes.items()]
    base = next((r["s_per_iter"] for r in results if r["mode"] == "plain" and "s_per_iter" in r), None)
    width = max(10, *(len(r["mode"]) + 2 for r in results))
    print(f"\n{'mode':<{width}}{'s/iter':>9}{'speed-up':>10}{'data wait':>11}{'peak GiB':>10}{'run total s':>12}")
    for r in results:
        if "error" in r:
            print(f"{r['mode']:<{width}} failed ({r['error']})")
            continue
        ratio = f"{base / r['s_per_iter']:.2f}x" if base else "-"
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['mode']:<{width}}{r['s_per_iter']:>9.4f}{ratio:>10}{r['data_wait']:>11.4f}{peak:>10}{r['total_s']:>12.1f}")
    print(f"({results[0].get('iterations', '?')} iterations each, the first 20 untimed; "
          f"{'in-memory data for all modes' if args.no_data else 'each mode with its own data path'})")


if __name__ == "__main__":
    main()
