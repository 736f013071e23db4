"""The numbers of an evaluation: per-class means over cases, and the console table."""
import math

import numpy as np

from utils.metrics import EMPTY_MASK_RULE, METRICS


def summarize(rows: list[dict], num_classes: int) -> dict:
    """Mean and std of each metric per class; 95HD/ASD over the cases where both masks exist."""
    summary = {}
    for c in range(1, num_classes):
        class_rows = [r for r in rows if r["class"] == c]
        stats = {}
        for metric in METRICS:
            values = np.array([r[metric] for r in class_rows], dtype=float)
            finite = values[~np.isnan(values)]
            stats[metric] = {"mean": float(finite.mean()) if finite.size else math.nan,
                             "std": float(finite.std()) if finite.size else math.nan, "cases": int(finite.size)}
        stats["empty_predictions"] = sum(r["empty_pred"] for r in class_rows)
        stats["empty_ground_truth"] = sum(r["empty_gt"] for r in class_rows)
        stats["flagged_cases"] = [r["case"] for r in class_rows if r["empty_pred"] or r["empty_gt"]]
        summary[f"class_{c}"] = stats
    return summary


def table(summary: dict) -> list[str]:
    """The console table: mean ± std of each metric per class, the empty-mask counts, and the
    test cases that were training cases (or that this could not be checked)."""
    lines = [f"{'class':>6} " + " ".join(f"{m:>15}" for m in METRICS) + "   empty pred/gt"]
    for name, stats in summary["classes"].items():
        cells = []
        for m in METRICS:
            factor = 100 if m in ("dice", "jaccard") else 1
            cells.append(f"{stats[m]['mean'] * factor:7.2f} ± {stats[m]['std'] * factor:5.2f}")
        lines.append(f"{name[6:]:>6} " + " ".join(f"{c:>15}" for c in cells)
                     + f"   {stats['empty_predictions']}/{stats['empty_ground_truth']}")
    lines.append(f"(Dice and Jaccard in %, 95HD and ASD in {summary['units']}, over {summary['cases']} cases; "
                 f"lcc {'on' if summary['lcc'] else 'off'})")
    empty = sum(s["empty_predictions"] + s["empty_ground_truth"] for s in summary["classes"].values())
    if empty:
        lines.append(f"empty masks: {EMPTY_MASK_RULE}; 95HD/ASD means over "
                     + ", ".join(f"class {n[6:]}: {s['hd95']['cases']} of {summary['cases']}"
                                 for n, s in summary["classes"].items()))
    overlap = summary.get("overlap_with_training", [])
    if overlap is None:
        lines.append(f"overlap with the training cases not checked: {summary.get('training_cases')}")
    elif overlap:
        lines.append(f"warning: {len(overlap)} of the {summary['cases']} cases were trained on, so these scores are "
                     f"not held out (--allow_overlap): {', '.join(overlap[:5])}{', ...' if len(overlap) > 5 else ''}")
    return lines
