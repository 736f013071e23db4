"""``uncertainty.csv`` of ``predict.py --uncertainty``: one row per scan, most uncertain first,
with what a reader checks before trusting a segmentation (volume and connected components per
class) and whether it is flagged, and why.

A scan is flagged when its segmentation has a foreground class with no voxel, when its score is
at least ``--flag_score`` (where given), or when its score is an outlier among the scans of the
table (above the upper quartile by more than 1.5 interquartile ranges, Tukey's fence; with at
least ``MIN_SCANS_FOR_FENCE`` scans): the scores rank scans, they are not measured Dice, so the
scans themselves set the bar.
"""
import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from utils.errors import UserError

MIN_SCANS_FOR_FENCE = 5
FENCE_IQR = 1.5


def scan_row(case: str, file: Path, uncertainty, volumes: list[float], components: list[int]) -> dict:
    """One row of the table (flags are set by ``flag_rows``)."""
    row = {"scan": case, "score": round(uncertainty.score, 6)}
    for c, (volume, count) in enumerate(zip(volumes, components), start=1):
        row[f"volume_ml_{c}"] = round(volume, 4)
        row[f"components_{c}"] = count
    row.update({"expected_dice_error": round(float(np.mean(uncertainty.expected_dice_error)), 6),
                "flip_disagreement": round(float(np.mean(uncertainty.flip_disagreement)), 6),
                "entropy": round(uncertainty.entropy, 6), "segmentation": str(file)})
    return row


def upper_fence(scores) -> float | None:
    """Tukey's upper fence (Q3 + 1.5 IQR) of the scores; None for fewer than MIN_SCANS_FOR_FENCE."""
    if len(scores) < MIN_SCANS_FOR_FENCE:
        return None
    q1, q3 = np.percentile(np.asarray(scores, float), [25, 75])
    return float(q3 + FENCE_IQR * (q3 - q1))


def flag_rows(rows: list[dict], flag_score: float | None = None) -> tuple[list[dict], float | None]:
    """The rows sorted most uncertain first, each with ``flagged`` (yes/no) and ``reason``;
    and the fence used (None where there are too few scans)."""
    fence = upper_fence([float(r["score"]) for r in rows])
    flagged_rows = []
    for row in sorted(rows, key=lambda r: -float(r["score"])):
        score, reasons = float(row["score"]), []
        empty = [key.split("_")[-1] for key in row if key.startswith("volume_ml_") and float(row[key]) == 0]
        if empty:
            reasons.append(f"no voxel of class {', '.join(empty)}")
        if flag_score is not None and score >= flag_score:
            reasons.append(f"score {score:.4f} >= --flag_score {flag_score:g}")
        if fence is not None and score > fence:
            reasons.append(f"score {score:.4f} above these scans' upper fence {fence:.4f}")
        flagged_rows.append({**{k: v for k, v in row.items() if k not in ("flagged", "reason")},
                             "flagged": "yes" if reasons else "no", "reason": "; ".join(reasons)})
    return flagged_rows, fence


def read_rows(path: Path) -> list[dict]:
    """The rows of an existing table (kept for scans a rerun skips); [] where there is none."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "score" not in rows[0]:
        raise UserError(f"{path} is not an uncertainty table of predict.py (no score column); move it away")
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """The table at ``path``, written to a temporary file and renamed (a kill leaves the old one)."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def flag_summary(rows: list[dict], fence: float | None, flag_score: float | None) -> str:
    """How many scans are flagged and why, for the last line of predict.py."""
    flagged = [r for r in rows if r["flagged"] == "yes"]
    why = []
    for label, key in (("an empty class", "no voxel"), ("--flag_score", "--flag_score"), ("above the fence", "fence")):
        count = sum(key in r["reason"] for r in flagged)
        if count:
            why.append(f"{count} {label}")
    rule = (f"upper fence {fence:.4f} = Q3 + {FENCE_IQR:g} IQR of {len(rows)} scores" if fence is not None
            else f"no fence under {MIN_SCANS_FOR_FENCE} scans")
    return (f"{len(flagged)} of {len(rows)} scan(s) flagged" + (f" ({', '.join(why)})" if why else "")
            + f"; {rule}" + (f", --flag_score {flag_score:g}" if flag_score is not None else ""))
