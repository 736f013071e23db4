"""Diagnostic (not part of the toolkit): where one method beats another, case by case. For each
seed both runs were evaluated with, the per-case Dice (mean over foreground classes, as the grid
tables average) of run A minus run B: the mean, how many cases A wins, and the cases with the
largest differences either way; then per foreground class. Reads the evaluations that
``reproduce.py`` wrote (``<grid>/eval/<run>/metrics.csv``), so nothing is predicted again.

    python paired_cases.py <grid folder> <run A> <run B> [--show 3]

Runs are named as in ``eval/`` without the seed: ``ADMT_17``, ``MT_17_teacher``, ``SUP_17``,
``FULL_168``.
"""
import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path


def per_case_dice(metrics_csv: Path) -> dict:
    """{case: {class: dice}} of one evaluation."""
    table = defaultdict(dict)
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            table[row["case"]][int(row["class"])] = float(row["dice"])
    return dict(table)


def seeds_of(grid: Path, run: str) -> dict:
    """{seed: metrics.csv} of every evaluation of ``run`` in the grid."""
    pattern = re.compile(re.escape(run.replace("_teacher", "")) + r"_s(\d+)" + ("_teacher" if run.endswith("_teacher") else "") + "$")
    found = {}
    for folder in sorted((grid / "eval").iterdir()):
        match = pattern.match(folder.name)
        if match and (folder / "metrics.csv").is_file():
            found[int(match.group(1))] = folder / "metrics.csv"
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--show", type=int, default=3, help="cases listed at each end")
    args = parser.parse_args()
    runs_a, runs_b = seeds_of(args.grid, args.run_a), seeds_of(args.grid, args.run_b)
    seeds = sorted(set(runs_a) & set(runs_b))
    if not seeds:
        sys.exit(f"paired_cases: no seed has both {args.run_a} ({sorted(runs_a)}) and {args.run_b} ({sorted(runs_b)}) in {args.grid / 'eval'}")
    print(f"{args.run_a} - {args.run_b}, Dice points per case (mean over foreground classes), {args.grid}")
    for seed in seeds:
        a, b = per_case_dice(runs_a[seed]), per_case_dice(runs_b[seed])
        cases = sorted(set(a) & set(b))
        if set(a) != set(b):
            sys.exit(f"paired_cases: seed {seed}: the two runs were evaluated on different cases; evaluate both on the same list")
        classes = sorted(next(iter(a.values())))
        diff = {case: 100 * (sum(a[case].values()) - sum(b[case].values())) / len(classes) for case in cases}
        wins = sum(value > 0 for value in diff.values())
        order = sorted(cases, key=diff.get)
        print(f"seed {seed}: mean {sum(diff.values()) / len(cases):+.2f} over {len(cases)} cases; "
              f"{args.run_a} better on {wins}, worse on {sum(value < 0 for value in diff.values())}")
        print("  most worse: " + ", ".join(f"{case} {diff[case]:+.1f}" for case in order[:args.show]))
        print("  most better: " + ", ".join(f"{case} {diff[case]:+.1f}" for case in reversed(order[-args.show:])))
        if len(classes) > 1:
            for label in classes:
                values = [100 * (a[case][label] - b[case][label]) for case in cases]
                print(f"  class {label}: mean {sum(values) / len(values):+.2f}, better on {sum(v > 0 for v in values)}")


if __name__ == "__main__":
    main()
