"""Does the uncertainty score find the failed segmentations? Measured on labeled cases
(``inference.py --uncertainty``): the rank correlation of score and Dice, how many of the worst
cases by Dice the most uncertain ones hold, and the picture of one against the other."""
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

WORST_FRACTION = 0.10     # "failed": the worst 10 % of the cases by Dice (at least one)
FLAGGED_FRACTION = 0.20   # "checked": the top 20 % by score (at least one)


def fraction_count(n: int, fraction: float) -> int:
    """round(n * fraction), at least 1 (of a non-empty set)."""
    return max(1, int(round(n * fraction))) if n else 0


def failure_detection(cases: list[str], scores, dice) -> dict:
    """Spearman's rho of per-case ``scores`` against per-case ``dice`` (a good score is strongly
    negative), and which of the worst ``WORST_FRACTION`` cases by Dice are among the top
    ``FLAGGED_FRACTION`` by score."""
    scores, dice = np.asarray(scores, float), np.asarray(dice, float)
    n = len(cases)
    worst = [cases[i] for i in np.argsort(dice, kind="stable")[:fraction_count(n, WORST_FRACTION)]]
    top = [cases[i] for i in np.argsort(-scores, kind="stable")[:fraction_count(n, FLAGGED_FRACTION)]]
    rho = float(spearmanr(scores, dice).statistic) if n > 2 and np.ptp(scores) > 0 and np.ptp(dice) > 0 else None
    return {"cases": n, "spearman": rho, "worst_by_dice": worst, "top_by_score": top,
            "worst_in_top": sum(case in top for case in worst),
            "rule": f"worst {WORST_FRACTION:.0%} by Dice among the top {FLAGGED_FRACTION:.0%} by score"}


def plot_score_against_dice(path: Path, cases: list[str], scores, dice, *, title: str) -> Path:
    """A scatter of score (x) against Dice (y), the worst cases by Dice and the top cases by
    score named, written as PNG."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    found = failure_detection(cases, scores, dice)
    named = set(found["worst_by_dice"]) | set(found["top_by_score"])
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    axes.scatter(scores, np.asarray(dice) * 100, s=16, color="tab:blue")
    for case, x, y in zip(cases, scores, dice):
        if case in named:
            axes.annotate(case, (x, y * 100), fontsize=6, xytext=(3, 3), textcoords="offset points")
    rho = found["spearman"]
    axes.set_xlabel("uncertainty score")
    axes.set_ylabel("Dice %")
    axes.set_title(f"{title}\nSpearman {'n/a' if rho is None else f'{rho:.2f}'}, {found['worst_in_top']} of the "
                   f"{len(found['worst_by_dice'])} worst by Dice in the top {len(found['top_by_score'])} by score",
                   fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
