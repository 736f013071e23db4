"""The tables of this experiment from what run.sh collected (python compare.py <this folder>):
failure detection per checkpoint (the score and each of its parts against Dice), and the
13-labeled runs on the suggested cases against those on random ones, paired by seed."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

HERE = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
SCORES = (("scan_uncertainty", "score"), ("expected_dice_error", "expected Dice error"),
          ("flip_disagreement", "flip disagreement"), ("scan_entropy", "entropy"))


def per_case(metrics: Path) -> tuple[list[str], np.ndarray, dict]:
    """(cases, mean Dice over classes, {column: per-case value (mean over classes)})."""
    rows = list(csv.DictReader(open(metrics)))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    mean = lambda column, case: float(np.mean([float(r[column]) for r in rows if r["case"] == case]))  # noqa: E731
    return cases, np.array([mean("dice", c) for c in cases]), {col: np.array([mean(col, c) for c in cases])
                                                                 for col, _ in SCORES}


def failure_table() -> list[str]:
    lines = ["## Failure detection (development lists, last checkpoint, student)", "",
             "| checkpoint | cases | mean Dice | Spearman: score | expected Dice error | flip disagreement | entropy "
             "| worst 10 % by Dice in the top 20 % by score |", "|---|---|---|---|---|---|---|---|"]
    for folder in sorted((HERE / "failure").glob("*")):
        if not (folder / "summary.json").is_file():
            continue
        summary = json.loads((folder / "summary.json").read_text())["uncertainty"]
        cases, dice, columns = per_case(folder / "metrics.csv")
        rho = [spearmanr(columns[col], dice).statistic for col, _ in SCORES]
        lines.append(f"| {folder.name} | {len(cases)} | {100 * dice.mean():.2f} | " + " | ".join(f"{r:.3f}" for r in rho)
                     + f" | {summary['worst_in_top']} of {len(summary['worst_by_dice'])} "
                       f"({', '.join(summary['worst_by_dice'])}) |")
    return lines


def dice_of(grid: Path, method: str, model: str, seed: int) -> float | None:
    """The Dice of one evaluation of a one-seed reproduce.py grid (its eval/ folder, there
    before the grid's own table is), or None where it has not finished."""
    summary = grid / "eval" / f"{method}_13_s{seed}{'_teacher' if model == 'teacher' else ''}" / "summary.json"
    if not summary.is_file():
        return None
    return 100 * json.loads(summary.read_text())["classes"]["class_1"]["dice"]["mean"]


def labeling_table() -> list[str]:
    lines = ["## 13 labeled: the 6 first + 7 from suggest.py against 7 at random (dev_val.list, last checkpoint)", "",
             "| model | seed | suggested | random | suggested - random |", "|---|---|---|---|---|"]
    for method, model, label in (("SUP", "student", "labeled-only"), ("MT", "student", "Mean Teacher student"),
                                 ("MT", "teacher", "Mean Teacher teacher")):
        differences = []
        for seed in (1337, 1338, 1339):
            suggested = dice_of(HERE / f"LA_half_suggested13_s{seed}", method, model, seed)
            random = dice_of(HERE / f"LA_half_random13_s{seed}", method, model, seed)
            both = suggested is not None and random is not None
            if both:
                differences.append(suggested - random)
            show = lambda v: "not run yet" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {label} | {seed} | {show(suggested)} | {show(random)} | "
                         f"{f'{suggested - random:+.2f}' if both else ''} |")
        if differences:
            lines.append(f"| {label} | mean ± std ({len(differences)} seeds) | | | {np.mean(differences):+.2f} ± "
                         f"{np.std(differences, ddof=1) if len(differences) > 1 else 0:.2f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(["# Results (written by compare.py)", "", *failure_table(), "", *labeling_table()]))
