"""The runs of a reproduction grid and its results: per-seed metrics gathered from each
evaluation's ``summary.json``, mean and std over seeds, and the Markdown report."""
import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.metrics import METRICS


@dataclass(frozen=True)
class Method:
    script: str
    label: str
    evaluated_models: tuple  # False: the student, True: the EMA teacher


METHODS = {"SUP": Method("train_sup.py", "labeled-only", (False,)),
           "MT": Method("train_mean_teacher.py", "Mean Teacher", (False, True))}
PERCENT = {"dice", "jaccard"}  # shown x 100


@dataclass(frozen=True)
class Run:
    method: str       # a key of METHODS
    labelnum: int
    seed: int
    exp: str          # the training scripts' --exp

    @property
    def name(self) -> str:
        return f"{self.method}_{self.labelnum}_s{self.seed}"

    def eval_dir(self, out: Path, teacher: bool) -> Path:
        return Path(out) / "eval" / (self.name + ("_teacher" if teacher else ""))


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; NaN for a single value) of finite values."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not values.size:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def read_summary(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: rerun the same command to evaluate the run")
    return json.loads(path.read_text())


def seed_metrics(summary: dict) -> dict:
    """One seed's numbers: each metric averaged over the foreground classes (each class's mean
    over cases), the per-class means, and the empty predictions."""
    classes = summary["classes"]
    per_class = {c: {m: classes[c][m]["mean"] for m in METRICS} for c in classes}
    return {"metrics": {m: mean_std(per_class[c][m] for c in per_class)[0] for m in METRICS},
            "per_class": per_class,
            "empty_predictions": sum(classes[c]["empty_predictions"] for c in classes),
            "units": summary.get("units", "voxels")}


def collect(runs, out: Path, labelnums, train_cases: int) -> list[dict]:
    """One row per (labelnum, method, evaluated model): per-seed values, mean and std over seeds."""
    rows = []
    for labelnum in labelnums:
        for method, spec in METHODS.items():
            for teacher in spec.evaluated_models:
                chosen = [r for r in runs if r.method == method and r.labelnum == labelnum]
                if not chosen:
                    continue
                seeds = {r.seed: seed_metrics(read_summary(r.eval_dir(out, teacher) / "summary.json"))
                         for r in chosen}
                row = {"method": method, "label": spec.label + (" (teacher)" if teacher else ""),
                       "model": "teacher" if teacher else "student", "labelnum": labelnum,
                       "labeled_percent": round(100 * labelnum / train_cases, 1), "seeds": list(seeds),
                       "units": next(iter(seeds.values()))["units"],
                       "per_seed": {m: [s["metrics"][m] for s in seeds.values()] for m in METRICS},
                       "empty_predictions": sum(s["empty_predictions"] for s in seeds.values())}
                row["mean"], row["std"] = {}, {}
                for m in METRICS:
                    row["mean"][m], row["std"][m] = mean_std(row["per_seed"][m])
                classes = next(iter(seeds.values()))["per_class"]
                row["per_class"] = {c: {m: dict(zip(("mean", "std"), mean_std(s["per_class"][c][m]
                                                                             for s in seeds.values())))
                                        for m in METRICS} for c in classes}
                rows.append(row)
    return rows


def differences(rows: list[dict]) -> list[dict]:
    """Mean Teacher (student and teacher) minus labeled-only, Dice points, paired by seed."""
    found = []
    for sup in (r for r in rows if r["method"] == "SUP"):
        for mt in (r for r in rows if r["method"] == "MT" and r["labelnum"] == sup["labelnum"]):
            paired = [100 * (a - b) for s, a in zip(mt["seeds"], mt["per_seed"]["dice"])
                      for t, b in zip(sup["seeds"], sup["per_seed"]["dice"]) if s == t]
            mean, std = mean_std(paired)
            found.append({"labelnum": sup["labelnum"], "model": mt["model"], "dice_points": paired,
                          "mean": mean, "std": std})
    return found


def _cell(mean: float, std: float, percent: bool, sign: str = "") -> str:
    if not math.isfinite(mean):
        return "n/a"
    scale = 100 if percent else 1
    return f"{mean * scale:{sign}.2f}" + (f" ± {std * scale:.2f}" if math.isfinite(std) else "")


def markdown_report(header: dict, rows: list[dict], commands: list[list[str]], pictures: list[str]) -> str:
    units = rows[0]["units"] if rows else "voxels"
    lines = [f"# {header['dataset']}: Mean Teacher against labeled-only training", "",
             f"Trained on `{header['train_list']}` for {header['max_iterations']} iterations, seeds "
             f"{', '.join(map(str, header['seeds']))}; the **last** checkpoint of each run is evaluated on "
             f"`{header['eval_list']}`. Each cell is the mean ± standard deviation over seeds (n - 1) of the "
             f"per-seed mean over cases (and over foreground classes). Dice and Jaccard in %, 95HD and ASD in "
             f"{units}. " + (f"Validation on `{header['val_list']}` only draws the curves; no checkpoint is chosen."
                            if header["val_list"] else "No validation (the evaluation cases are test cases, which no "
                            "run may validate on); no checkpoint is chosen."), "",
             f"Command: `{header['command']}`", "",
             "| method | labeled | seeds | Dice % | Jaccard % | 95HD | ASD | Dice per seed | empty predictions |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_cell(r["mean"][m], r["std"][m], m in PERCENT) for m in METRICS]
        per_seed = ", ".join(f"{100 * d:.2f}" for d in r["per_seed"]["dice"])
        lines.append(f"| {r['label']} | {r['labelnum']} ({r['labeled_percent']:g} %) | {len(r['seeds'])} | "
                     + " | ".join(cells) + f" | {per_seed} | {r['empty_predictions']} |")
    diffs = differences(rows)
    if diffs:
        lines += ["", "Mean Teacher minus labeled-only, Dice points, paired by seed:", ""]
        for d in diffs:
            lines.append(f"- {d['labelnum']} labeled, MT {d['model']}: {_cell(d['mean'], d['std'], False, sign='+')} "
                         f"(per seed: {', '.join(f'{p:+.2f}' for p in d['dice_points'])})")
    if rows and len(rows[0]["per_class"]) > 1:
        classes = list(rows[0]["per_class"])
        lines += ["", "Dice % per foreground class:", "",
                  "| method | labeled | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
        for r in rows:
            cells = [_cell(r["per_class"][c]["dice"]["mean"], r["per_class"][c]["dice"]["std"], True) for c in classes]
            lines.append(f"| {r['label']} | {r['labelnum']} | " + " | ".join(cells) + " |")
    for picture in pictures:
        lines += ["", f"![{picture}]({picture})"]
    lines += ["", "## Commands", "", "Each training (`--resume` is added to continue an unfinished run) and each "
              "evaluation, in order:", "", "```"] + [shlex.join(c) for c in commands] + ["```", ""]
    return "\n".join(lines)
