"""The runs of a reproduction grid and its results: per-seed metrics gathered from each
evaluation's ``summary.json``, mean and std over seeds, and the Markdown report."""
import csv
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.metrics import METRICS


# The schedule every method's defaults are measured against: the original Mean Teacher and
# UA-MT scripts' 6000 iterations. A grid of --max_iterations M runs each method's own schedule
# scaled by M / 6000, so every method gets the same share of its published schedule.
ORIGINAL_ITERATIONS = 6000


@dataclass(frozen=True)
class Method:
    script: str
    label: str
    evaluated_models: tuple  # False: the student, True: the EMA teacher
    # the method's own schedule flags where they differ from the original 6000 iterations
    # (whole numbers are iterations; a float, such as a ramp-up length, is scaled as a float)
    schedule: tuple = (("--max_iterations", ORIGINAL_ITERATIONS),)
    flags: tuple = ()  # fixed flags of its script
    all_labeled: bool = False  # trained once per seed with every training case labeled


METHODS = {"SUP": Method("train_sup.py", "labeled-only", (False,)),
           "MT": Method("train_mean_teacher.py", "Mean Teacher", (False, True)),
           "UAMT": Method("train_uamt.py", "UA-MT", (False, True)),
           # BCP's defaults: 2000 pre-training + 15000 self-training iterations, lr x0.1 every 2500
           "BCP": Method("train_bcp.py", "BCP", (False, True),
                         (("--max_iterations", 17000), ("--pretrain_iterations", 2000), ("--lr_decay_every", 2500))),
           # AD-MT's defaults: 15000 iterations (poly decay), the weight ramped up over 40 x 150 of them
           "ADMT": Method("train_admt.py", "AD-MT", (False, True),
                          (("--max_iterations", 15000), ("--consistency_rampup", 40.0))),
           # the ceiling: labeled-only training with every training case labeled
           "FULL": Method("train_sup.py", "all labeled", (False,), flags=("--model", "FULL"), all_labeled=True)}
PERCENT = {"dice", "jaccard"}  # shown x 100


def schedule_flags(method: str, max_iterations: int) -> list[str]:
    """``method``'s schedule in a grid of ``max_iterations``: its own schedule scaled by
    max_iterations / 6000 (at least 1 iteration each), e.g. BCP in a 1000-iteration grid:
    --max_iterations 2833 --pretrain_iterations 333 --lr_decay_every 417."""
    scale = max_iterations / ORIGINAL_ITERATIONS
    return [text for flag, value in METHODS[method].schedule
            for text in (flag, f"{value * scale:.4g}" if isinstance(value, float) else str(max(round(value * scale), 1)))]


def effective_schedule(method: str, max_iterations: int, later_flags: list[str]) -> list[str]:
    """The schedule ``method``'s training script reads in a grid of ``max_iterations``: each flag
    of ``schedule_flags`` at its last value in ``--max_iterations <scaled>`` followed by
    ``later_flags`` (the flags after it on the script's command line, scaled schedule included),
    so that a method's own --*_args (``--bcp_args "--pretrain_iterations 1000"``) show."""
    scaled = schedule_flags(method, max_iterations)
    tokens = [*scaled[:2], *later_flags]
    values = {}
    for at, token in enumerate(tokens):
        name, equals, inline = token.partition("=")
        # argparse would take "--max_iter" as --max_iterations; a grid that misread it would
        # evaluate a checkpoint the run never wrote
        shortened = [flag for flag in scaled[::2]
                     if len(name) > 2 and name.startswith("--") and flag.startswith(name) and flag != name]
        if shortened:
            raise UserError(f"{method}'s flags shorten {shortened[0]} to {name}: write it in full, the grid reads it by name")
        if name in scaled[::2] and (equals or at + 1 < len(tokens)):
            values[name] = inline if equals else tokens[at + 1]
    kinds = dict(METHODS[method].schedule)
    for name, value in values.items():
        if isinstance(kinds[name], float):
            if not _non_negative_number(value):
                raise UserError(f"{method}'s {name} is {value!r}: give a number, at least 0")
        elif not value.isdigit() or int(value) < 1:
            raise UserError(f"{method}'s {name} is {value!r}: give a whole number of iterations, at least 1")
    return [text for name in scaled[::2] for text in (name, values[name])]


def _non_negative_number(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and float(text) >= 0
    except ValueError:
        return False


@dataclass(frozen=True)
class Run:
    method: str       # a key of METHODS
    labelnum: int
    seed: int
    exp: str          # the training scripts' --exp
    schedule: tuple   # its schedule flags as the script reads them (effective_schedule), --max_iterations first

    @property
    def iterations(self) -> int:
        """The run's --max_iterations: its last checkpoint is the one evaluated."""
        return int(self.schedule[1])

    @property
    def name(self) -> str:
        return f"{self.method}_{self.labelnum}_s{self.seed}"

    def eval_dir(self, out: Path, teacher: bool) -> Path:
        return Path(out) / "eval" / (self.name + ("_teacher" if teacher else ""))

    def train_log(self, out: Path) -> Path:
        return Path(out) / "logs" / f"train_{self.name}.txt"


_SPEED = re.compile(r"speed: ([0-9.]+) s/iteration over the last ([0-9]+) iterations")


def training_speed(log_text: str) -> float | None:
    """A run's seconds per training iteration from its console log: each process's last speed
    line (a resumed run appends a ``$ command`` line and a process per resume), weighted by
    the iterations it timed; None where no process timed any."""
    timed = []
    for process in re.split(r"^\$ ", log_text, flags=re.MULTILINE):
        found = _SPEED.findall(process)
        if found:
            timed.append((float(found[-1][0]), int(found[-1][1])))
    iterations = sum(count for _, count in timed)
    return sum(seconds * count for seconds, count in timed) / iterations if iterations else None


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


def case_dice(eval_dir: Path) -> dict:
    """{case: Dice averaged over the foreground classes} from an evaluation's metrics.csv; empty
    where the evaluation wrote none."""
    per_case: dict = {}
    if not (Path(eval_dir) / "metrics.csv").is_file():
        return per_case
    with open(Path(eval_dir) / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            per_case.setdefault(row["case"], []).append(float(row["dice"]))
    return {case: float(np.mean(values)) for case, values in per_case.items()}


def collect(runs, out: Path, labelnums, train_cases: int) -> list[dict]:
    """One row per (labelnum, method, evaluated model): per-seed values, mean and std over seeds;
    the all-labeled runs (FULL) at their own label count, last."""
    rows = []
    for labelnum in [*labelnums, *sorted({r.labelnum for r in runs} - set(labelnums))]:
        for method, spec in METHODS.items():
            for teacher in spec.evaluated_models:
                chosen = [r for r in runs if r.method == method and r.labelnum == labelnum]
                if not chosen:
                    continue
                seeds = {r.seed: seed_metrics(read_summary(r.eval_dir(out, teacher) / "summary.json"))
                         for r in chosen}
                speeds = [training_speed(r.train_log(out).read_text(errors="replace"))
                          for r in chosen if r.train_log(out).is_file()]
                row = {"method": method, "label": spec.label + (" (teacher)" if teacher else ""),
                       "model": "teacher" if teacher else "student", "labelnum": labelnum,
                       "iterations": chosen[0].iterations,
                       "schedule": " ".join(chosen[0].schedule),
                       "labeled_percent": round(100 * labelnum / train_cases, 1), "seeds": list(seeds),
                       "units": next(iter(seeds.values()))["units"],
                       "per_seed": {m: [s["metrics"][m] for s in seeds.values()] for m in METRICS},
                       "empty_predictions": sum(s["empty_predictions"] for s in seeds.values()),
                       # per case, so that a difference of means can say on how many cases it holds
                       "per_case": {r.seed: case_dice(r.eval_dir(out, teacher)) for r in chosen},
                       # as logged on the machine that trained it (runs sharing it slow each other)
                       "seconds_per_iteration": mean_std(speeds)[0] if any(speeds) else None}
                row["mean"], row["std"] = {}, {}
                for m in METRICS:
                    row["mean"][m], row["std"][m] = mean_std(row["per_seed"][m])
                classes = next(iter(seeds.values()))["per_class"]
                row["per_class"] = {c: {m: dict(zip(("mean", "std"), mean_std(s["per_class"][c][m]
                                                                             for s in seeds.values())))
                                        for m in METRICS} for c in classes}
                rows.append(row)
    return rows


def differences(rows: list[dict], baseline: str = "SUP") -> list[dict]:
    """Every other method's rows minus ``baseline``'s at the same label count, Dice points,
    paired by seed: against labeled-only (one row) each model; against a method with a teacher,
    student minus student and teacher minus teacher. ``better_cases``: per paired seed evaluated
    on the same cases, (cases where the method scored higher, cases), so that a mean carried by
    one case shows."""
    found = []
    for base in (r for r in rows if r["method"] == baseline):
        for other in (r for r in rows if r["method"] != baseline and r["labelnum"] == base["labelnum"]
                      and (baseline == "SUP" or r["model"] == base["model"])):
            paired = [100 * (a - b) for s, a in zip(other["seeds"], other["per_seed"]["dice"])
                      for t, b in zip(base["seeds"], base["per_seed"]["dice"]) if s == t]
            mean, std = mean_std(paired)
            better_cases = []
            for seed in (s for s in other["seeds"] if s in base["seeds"]):
                a, b = other.get("per_case", {}).get(seed, {}), base.get("per_case", {}).get(seed, {})
                if a and a.keys() == b.keys():
                    better_cases.append((sum(a[case] > b[case] for case in a), len(a)))
            found.append({"labelnum": base["labelnum"], "method": other["method"], "model": other["model"],
                          "baseline": baseline, "dice_points": paired, "mean": mean, "std": std,
                          "better_cases": better_cases if len(better_cases) == len(paired) else []})
    return found


def gap_closed(rows: list[dict]) -> list[dict]:
    """For every semi-supervised row: the share of the gap between labeled-only training and
    training with every case labeled (FULL) that it closes, (method - labeled-only) / (FULL -
    labeled-only) of Dice, paired by seed (seeds with all three runs), in %. A seed whose FULL
    run is not above labeled-only has no gap to close: it is listed in ``no_gap``, not averaged
    (its share would flip sign)."""
    full = next((r for r in rows if r["method"] == "FULL"), None)
    if full is None:
        return []
    full_dice = dict(zip(full["seeds"], full["per_seed"]["dice"]))
    found = []
    for base in (r for r in rows if r["method"] == "SUP"):
        base_dice = dict(zip(base["seeds"], base["per_seed"]["dice"]))
        for other in (r for r in rows if r["method"] not in ("SUP", "FULL") and r["labelnum"] == base["labelnum"]):
            paired = [seed for seed in other["seeds"] if seed in base_dice and seed in full_dice]
            gaps = {seed: full_dice[seed] - base_dice[seed] for seed in paired}
            shares = {seed: 100 * (dice - base_dice[seed]) / gaps[seed]
                      for seed, dice in zip(other["seeds"], other["per_seed"]["dice"]) if gaps.get(seed, 0) > 0}
            mean, std = mean_std(shares.values())
            found.append({"labelnum": base["labelnum"], "method": other["method"], "model": other["model"],
                          "per_seed": shares, "mean": mean, "std": std,
                          "gap_points": mean_std(100 * gaps[s] for s in shares)[0],
                          "no_gap": {seed: 100 * gap for seed, gap in gaps.items() if gap <= 0}})
    return found


def _cell(mean: float, std: float, percent: bool, sign: str = "") -> str:
    if not math.isfinite(mean):
        return "n/a"
    scale = 100 if percent else 1
    return f"{mean * scale:{sign}.2f}" + (f" ± {std * scale:.2f}" if math.isfinite(std) else "")


def markdown_report(header: dict, rows: list[dict], commands: list[list[str]], pictures: list[str]) -> str:
    units = rows[0]["units"] if rows else "voxels"
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    title = ", ".join(METHODS[m].label for m in methods if m not in ("SUP", "FULL"))
    lines = [f"# {header['dataset']}: {title or 'labeled-only training'}"
             + (" against labeled-only training" if "SUP" in methods and title else "")
             + (" and training with every case labeled" if "FULL" in methods else ""), "",
             f"Trained on `{header['train_list']}` for {header['max_iterations']} iterations (each method its own "
             f"schedule scaled by {header['max_iterations']} / {ORIGINAL_ITERATIONS}: see the table), seeds "
             f"{', '.join(map(str, header['seeds']))}; the **last** checkpoint of each run is evaluated on "
             f"`{header['eval_list']}`. Each cell is the mean ± standard deviation over seeds (n - 1) of the "
             f"per-seed mean over cases (and over foreground classes). Dice and Jaccard in %, 95HD and ASD in "
             f"{units}; s/iteration: training seconds per iteration as each run logged them, mean over seeds "
             f"(runs that shared a machine slowed each other). "
             + (f"Validation on `{header['val_list']}` only draws the curves; no checkpoint is chosen."
                if header["val_list"] else "No validation (the evaluation cases are test cases, which no "
                "run may validate on); no checkpoint is chosen."), "",
             f"Command: `{header['command']}`", "",
             "| method | labeled | seeds | schedule | Dice % | Jaccard % | 95HD | ASD | Dice per seed | empty predictions "
             "| s/iteration |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_cell(r["mean"][m], r["std"][m], m in PERCENT) for m in METRICS]
        per_seed = ", ".join(f"{100 * d:.2f}" for d in r["per_seed"]["dice"])
        speed = r.get("seconds_per_iteration")
        lines.append(f"| {r['label']} | {r['labelnum']} ({r['labeled_percent']:g} %) | {len(r['seeds'])} | "
                     f"`{r['schedule']}` | " + " | ".join(cells) + f" | {per_seed} | {r['empty_predictions']} | "
                     + (f"{speed:.3g} |" if speed else "n/a |"))
    for baseline in ("SUP", "MT"):
        diffs = [d for d in differences(rows, baseline) if baseline == "SUP" or d["method"] != "SUP"]
        if not diffs:
            continue
        lines += ["", f"Minus {METHODS[baseline].label}, Dice points, paired by seed"
                  + (" (student against student, teacher against teacher)" if baseline != "SUP" else "") + ":", ""]
        for d in diffs:
            lines.append(f"- {d['labelnum']} labeled, {METHODS[d['method']].label} {d['model']}: "
                         f"{_cell(d['mean'], d['std'], False, sign='+')} "
                         f"(per seed: {', '.join(f'{p:+.2f}' for p in d['dice_points'])}"
                         + (f"; better on {', '.join(str(wins) for wins, _ in d['better_cases'])} of "
                            f"{'/'.join(sorted({str(n) for _, n in d['better_cases']}))} cases"
                            if d["better_cases"] else "") + ")")
    closed = gap_closed(rows)
    if closed:
        full = next(r for r in rows if r["method"] == "FULL")
        lines += ["", f"Share of the gap to training with all {full['labelnum']} cases labeled that each method "
                  "closes, (method - labeled-only) / (all labeled - labeled-only) of Dice, paired by seed:", ""]
        for c in closed:
            no_gap = ", ".join(f"{seed} ({points:+.2f} points)" for seed, points in c["no_gap"].items())
            share = (f"{_cell(c['mean'], c['std'], False)} % of a {c['gap_points']:.2f}-point gap "
                     f"(per seed: {', '.join(f'{v:.0f} %' for v in c['per_seed'].values())})"
                     if c["per_seed"] else "n/a")
            lines.append(f"- {c['labelnum']} labeled, {METHODS[c['method']].label} {c['model']}: {share}"
                         + (f"; no gap to close with seed {no_gap}: all labeled not above labeled-only"
                            if no_gap else ""))
        above = sorted({seed for c in closed for seed, v in c["per_seed"].items() if v > 100})
        if above:  # a share over 100 % is true arithmetic, but it means the "ceiling" was not one
            lines += ["", f"Over 100 %: the method scored above training with every case labeled (seed "
                          f"{', '.join(map(str, above))}), so that run is no ceiling here; read the Dice "
                          "differences above instead."]
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
