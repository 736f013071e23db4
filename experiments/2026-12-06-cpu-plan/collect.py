"""The planning experiment's table: each run's last-checkpoint Dice (mean over foreground classes,
%) from its evaluations' summary.json, then the differences paired by seed.

    python experiments/2026-12-06-cpu-plan/collect.py <model folder> > results.md
"""
import json
import statistics
import sys
from pathlib import Path

# (label, run folder glob, evaluation folder) per row; runs are named <exp>_<seed>
ROWS = [("thick LA, plan (80 x 64 x 12, strides 2,2,1 2,2,1 2,2,2 2,2,2)", "LA_thick_thick_plan_*", "test"),
        ("thick LA, plan, teacher", "LA_thick_thick_plan_*", "test_teacher"),
        ("thick LA, hand-picked 64 x 64 x 16, strides 2,2,2 x 4", "LA_thick_thick_hand_*", "test"),
        ("thick LA, hand-picked, teacher", "LA_thick_thick_hand_*", "test_teacher"),
        ("Hippocampus, --plan auto, window 16/16 (plan)", "Hippocampus_hippo_plan_*", "test"),
        ("Hippocampus, --plan auto, teacher, window 16/16 (plan)", "Hippocampus_hippo_plan_*", "test_teacher"),
        ("Hippocampus, --plan auto, window 8/8 (dataset)", "Hippocampus_hippo_plan_*", "test_window8"),
        ("Hippocampus, --plan auto, teacher, window 8/8 (dataset)", "Hippocampus_hippo_plan_*", "test_teacher_window8")]
PAIRS = [("thick LA: plan - hand-picked (students)", 0, 2), ("thick LA: plan - hand-picked (teachers)", 1, 3),
         ("Hippocampus: plan window - dataset window (students)", 4, 6),
         ("Hippocampus: plan window - dataset window (teachers)", 5, 7)]


def mean_dice(summary: Path) -> float:
    classes = json.loads(summary.read_text())["classes"].values()
    return 100 * statistics.mean(c["dice"]["mean"] for c in classes)


def scores(model: Path, pattern: str, evaluation: str) -> dict:
    """{seed: Dice %} of the runs matching ``pattern`` that have the evaluation."""
    found = {}
    for run in sorted(model.glob(f"{pattern}/MT")):
        summary = run / evaluation / "summary.json"
        if summary.is_file():
            found[run.parent.name.split("_")[-3]] = mean_dice(summary)
    return found


def spread(values) -> str:
    values = list(values)
    if not values:
        return "not measured"
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def main():
    model = Path(sys.argv[1])
    table = [scores(model, pattern, evaluation) for _, pattern, evaluation in ROWS]
    print("| run | Dice % (mean ± std over seeds) | per seed |\n|---|---|---|")
    for (label, _, _), found in zip(ROWS, table):
        print(f"| {label} | {spread(found.values())} | "
              + ", ".join(f"{seed}: {dice:.2f}" for seed, dice in sorted(found.items())) + " |")
    print("\n| paired by seed | difference (Dice points) | seeds |\n|---|---|---|")
    for label, a, b in PAIRS:
        seeds = sorted(set(table[a]) & set(table[b]))
        print(f"| {label} | {spread(table[a][s] - table[b][s] for s in seeds)} | {', '.join(seeds)} |")


if __name__ == "__main__":
    main()
