"""grid/results.py: per-seed numbers gathered from evaluations, mean and std over seeds, the report."""
import json
import math

import pytest

from grid.results import (Run, collect, differences, effective_schedule, gap_closed, markdown_report, mean_std,
                          schedule_flags, training_speed)
from utils.errors import UserError


def write_summary(folder, dice_by_class, empty=0):
    folder.mkdir(parents=True)
    classes = {f"class_{c}": {**{m: {"mean": d if m in ("dice", "jaccard") else 10 * d, "std": 0.0, "cases": 3}
                                 for m in ("dice", "jaccard", "hd95", "asd")},
                              "empty_predictions": empty, "empty_ground_truth": 0, "flagged_cases": []}
               for c, d in enumerate(dice_by_class, 1)}
    (folder / "summary.json").write_text(json.dumps({"classes": classes, "units": "voxels", "iteration": 9}))


def test_collect_averages_classes_then_seeds(tmp_path):
    runs = [Run(m, 5, s, f"x_s{s}", ("--max_iterations", "9")) for s in (1, 2, 3) for m in ("SUP", "MT")]
    values = {("SUP", 1): (0.6, 0.8), ("SUP", 2): (0.5, 0.7), ("SUP", 3): (0.7, 0.9),
              ("MT", 1): (0.7, 0.9), ("MT", 2): (0.6, 0.6), ("MT", 3): (0.8, 1.0)}
    for run in runs:
        write_summary(run.eval_dir(tmp_path, False), values[run.method, run.seed], empty=1)
        if run.method == "MT":
            write_summary(run.eval_dir(tmp_path, True), (0.5, 0.5))
    rows = collect(runs, tmp_path, [5], 50)
    sup, mt, teacher = rows
    assert sup["per_seed"]["dice"] == pytest.approx([0.7, 0.6, 0.8])
    assert sup["mean"]["dice"] == pytest.approx(0.7) and sup["std"]["dice"] == pytest.approx(0.1)
    assert sup["mean"]["hd95"] == pytest.approx(7.0) and sup["labeled_percent"] == 10.0
    assert sup["empty_predictions"] == 6 and teacher["empty_predictions"] == 0
    assert sup["per_class"]["class_2"]["dice"]["mean"] == pytest.approx(0.8)
    diff = {d["model"]: d for d in differences(rows)}
    assert diff["student"]["dice_points"] == pytest.approx([10.0, 0.0, 10.0])
    assert diff["teacher"]["mean"] == pytest.approx(-20.0)
    md = markdown_report({"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e",
                          "max_iterations": 9, "seeds": [1, 2, 3], "command": "python reproduce.py"},
                         rows, [["python", "train_sup.py"]], ["curves.png"])
    assert "| labeled-only | 5 (10 %) | 3 | `--max_iterations 9` | 70.00 ± 10.00 |" in md
    assert "- 5 labeled, Mean Teacher student: +6.67 ± 5.77 (per seed: +10.00, +0.00, +10.00)" in md
    assert "Dice % per foreground class" in md and "![curves.png](curves.png)" in md


def write_metrics(folder, dice_by_case):
    """metrics.csv as inference.py writes it: a row per case and foreground class."""
    lines = ["case,class,dice"] + [f"{case},{c},{d}" for case, per_class in dice_by_case.items()
                                   for c, d in enumerate(per_class, 1)]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_a_difference_says_on_how_many_cases_it_holds(tmp_path):
    # seed 1: MT higher on a (0.8 vs 0.6 averaged over classes) and c, lower on b, tied on d: 2 of 4;
    # seed 2: higher only on b: 1 of 4 (a mean carried by one case shows)
    runs = [Run(m, 5, s, f"x_s{s}", ("--max_iterations", "9")) for s in (1, 2) for m in ("SUP", "MT")]
    cases = {("SUP", 1): {"a": (0.5, 0.7), "b": (0.9, 0.9), "c": (0.4, 0.4), "d": (0.7, 0.7)},
             ("MT", 1): {"a": (0.9, 0.7), "b": (0.8, 0.8), "c": (0.5, 0.4), "d": (0.6, 0.8)},
             ("SUP", 2): {"a": (0.7, 0.7), "b": (0.2, 0.2), "c": (0.6, 0.6), "d": (0.8, 0.8)},
             ("MT", 2): {"a": (0.6, 0.6), "b": (0.9, 0.9), "c": (0.6, 0.6), "d": (0.7, 0.7)}}
    for run in runs:
        for teacher in (False, True) if run.method == "MT" else (False,):
            write_summary(run.eval_dir(tmp_path, teacher), (0.7, 0.7))
            write_metrics(run.eval_dir(tmp_path, teacher), cases[run.method, run.seed])
    rows = collect(runs, tmp_path, [5], 50)
    assert rows[0]["per_case"][1] == pytest.approx({"a": 0.6, "b": 0.9, "c": 0.4, "d": 0.7})
    student = next(d for d in differences(rows) if d["model"] == "student")
    assert student["better_cases"] == [(2, 4), (1, 4)]
    md = markdown_report({"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e", "max_iterations": 9,
                          "seeds": [1, 2], "command": "python reproduce.py"}, rows, [], [])
    assert "- 5 labeled, Mean Teacher student: +0.00 ± 0.00 (per seed: +0.00, +0.00; better on 2, 1 of 4 cases)" in md
    # evaluations on different cases are not paired case by case: the count is left out
    (run_dir := runs[3].eval_dir(tmp_path, False)).joinpath("metrics.csv").unlink()
    write_metrics(run_dir, {"a": (0.9, 0.9)})
    assert next(d for d in differences(collect(runs, tmp_path, [5], 50)) if d["model"] == "student")["better_cases"] == []


RESUMED_LOG = """$ python train_mean_teacher.py --max_iterations 300
[10:00:00] done: 100 iterations (100 in this process, 30.0 s); speed: 0.5000 s/iteration over the last 80 iterations, data wait 0.0010 s/iteration
[10:01:00] done: 200 iterations (200 in this process, 90.0 s); speed: 0.4000 s/iteration over the last 180 iterations, data wait 0.0010 s/iteration
Killed
$ python train_mean_teacher.py --max_iterations 300 --resume
[11:00:00] done: 300 iterations (100 in this process, 70.0 s); speed: 0.8000 s/iteration over the last 80 iterations, data wait 0.0010 s/iteration
"""


def test_training_speed_weighs_each_process_by_the_iterations_it_timed():
    # the first process's last line (0.4 over 180) and the resumed one's (0.8 over 80)
    assert training_speed(RESUMED_LOG) == pytest.approx((0.4 * 180 + 0.8 * 80) / 260)
    assert training_speed("$ python train_sup.py\nerror: no such file\n") is None


def test_the_report_shows_each_rows_logged_speed(tmp_path):
    runs = [Run("SUP", 5, s, f"x_s{s}", ("--max_iterations", "9")) for s in (1, 2)]
    for run in runs:
        write_summary(run.eval_dir(tmp_path, False), (0.6,))
    run_log = runs[0].train_log(tmp_path)
    run_log.parent.mkdir(parents=True)
    run_log.write_text(RESUMED_LOG)  # the second seed has no log (brought from elsewhere): left out
    row, = collect(runs, tmp_path, [5], 50)
    assert row["seconds_per_iteration"] == pytest.approx(training_speed(RESUMED_LOG))
    md = markdown_report({"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e", "max_iterations": 9,
                          "seeds": [1, 2], "command": "c"}, [row], [], [])
    assert md.splitlines()[[i for i, line in enumerate(md.splitlines()) if line.startswith("| labeled-only")][0]] \
        .endswith("| 0 | 0.523 |")
    (tmp_path / "logs" / "train_SUP_5_s1.txt").unlink()
    assert "| 0 | n/a |" in markdown_report({"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e",
                                              "max_iterations": 9, "seeds": [1, 2], "command": "c"},
                                             collect(runs, tmp_path, [5], 50), [], [])


def test_mean_std_of_one_or_no_value():
    assert mean_std([0.5])[0] == 0.5 and math.isnan(mean_std([0.5])[1])
    assert all(math.isnan(v) for v in mean_std([float("nan"), None]))


def test_each_method_trains_its_own_schedule_scaled_to_the_grid():
    assert schedule_flags("MT", 1000) == ["--max_iterations", "1000"]
    assert schedule_flags("BCP", 6000) == ["--max_iterations", "17000", "--pretrain_iterations", "2000",
                                           "--lr_decay_every", "2500"]
    assert schedule_flags("BCP", 1000) == ["--max_iterations", "2833", "--pretrain_iterations", "333",
                                           "--lr_decay_every", "417"]


def test_the_effective_schedule_is_each_flags_last_value():
    scaled_rest = schedule_flags("BCP", 1500)[2:]  # what reproduce.py passes after --max_iterations
    # a --train_args value comes before the scaled schedule, which wins
    assert effective_schedule("BCP", 1500, ["--lr_decay_every", "700", *scaled_rest]) == [
        "--max_iterations", "4250", "--pretrain_iterations", "500", "--lr_decay_every", "625"]
    assert effective_schedule("BCP", 1000, [*schedule_flags("BCP", 1000)[2:], "--pretrain_iterations", "1000",
                                            "--max_iterations=3500", "--u_weight", "0.5"]) == [
        "--max_iterations", "3500", "--pretrain_iterations", "1000", "--lr_decay_every", "417"]
    assert effective_schedule("UAMT", 1500, ["--patch_size", "64", "64", "32"]) == ["--max_iterations", "1500"]
    with pytest.raises(UserError, match="MT's --max_iterations is '0'"):
        effective_schedule("MT", 1500, ["--max_iterations", "0"])
    # argparse accepts a shortened flag; the grid would not see it, so it refuses it
    with pytest.raises(UserError, match="shorten --pretrain_iterations to --pretrain: write it in full"):
        effective_schedule("BCP", 1000, ["--pretrain", "1000"])
    with pytest.raises(UserError, match="shorten --max_iterations to --max_iter"):
        effective_schedule("MT", 1000, ["--max_iter=200"])
    assert effective_schedule("MT", 1000, ["--", "--max_iterations", "9"]) == ["--max_iterations", "9"]


def test_uamt_and_bcp_are_compared_with_labeled_only_and_with_mean_teacher(tmp_path):
    runs = [Run(m, 5, s, f"x_s{s}", tuple(schedule_flags(m, 9))) for s in (1, 2) for m in ("SUP", "MT", "UAMT", "BCP")]
    dice = {"SUP": 0.6, "MT": 0.7, "UAMT": 0.72, "BCP": 0.75}
    for run in runs:
        write_summary(run.eval_dir(tmp_path, False), (dice[run.method] + 0.01 * run.seed,) * 2)
        if run.method != "SUP":
            write_summary(run.eval_dir(tmp_path, True), (dice[run.method] + 0.02,) * 2)
    rows = collect(runs, tmp_path, [5], 50)
    assert [(r["method"], r["model"]) for r in rows] == [("SUP", "student"), ("MT", "student"), ("MT", "teacher"),
                                                         ("UAMT", "student"), ("UAMT", "teacher"),
                                                         ("BCP", "student"), ("BCP", "teacher")]
    against_mt = {(d["method"], d["model"]): d["mean"] for d in differences(rows, "MT") if d["method"] != "SUP"}
    assert against_mt == pytest.approx({("UAMT", "student"): 2.0, ("UAMT", "teacher"): 2.0,
                                        ("BCP", "student"): 5.0, ("BCP", "teacher"): 5.0})
    md = markdown_report({"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e", "max_iterations": 9,
                          "seeds": [1, 2], "command": "python reproduce.py"}, rows, [], [])
    assert md.startswith("# X: Mean Teacher, UA-MT, BCP against labeled-only training")
    assert "| BCP | 5 (10 %) | 2 | `--max_iterations 26 --pretrain_iterations 3 --lr_decay_every 4` |" in md
    assert "- 5 labeled, BCP teacher: +5.00 ± 0.00 (per seed: +5.00, +5.00)" in md  # minus Mean Teacher's teacher
    assert "- 5 labeled, BCP student: +15.00 ± 0.00" in md  # minus labeled-only


def test_admt_scales_its_iterations_and_its_ramp_up_with_the_grid():
    assert schedule_flags("ADMT", 6000) == ["--max_iterations", "15000", "--consistency_rampup", "40"]
    assert schedule_flags("ADMT", 1500) == ["--max_iterations", "3750", "--consistency_rampup", "10"]
    assert schedule_flags("ADMT", 1000) == ["--max_iterations", "2500", "--consistency_rampup", "6.667"]
    # a ramp-up is a length in units of 150 iterations, not a whole number of iterations
    assert effective_schedule("ADMT", 1500, [*schedule_flags("ADMT", 1500)[2:], "--consistency_rampup", "7.5"]) == [
        "--max_iterations", "3750", "--consistency_rampup", "7.5"]
    with pytest.raises(UserError, match="ADMT's --consistency_rampup is '-1': give a number, at least 0"):
        effective_schedule("ADMT", 1500, ["--consistency_rampup", "-1"])
    with pytest.raises(UserError, match="ADMT's --max_iterations is '2.5'"):
        effective_schedule("ADMT", 1500, ["--max_iterations", "2.5"])


def test_the_share_of_the_gap_to_all_labeled_is_paired_by_seed(tmp_path):
    """Seed 1: labeled-only 0.60, all labeled 0.80, Mean Teacher 0.75 -> 75 %; seed 2: 0.70,
    0.80, 0.72 -> 20 %; the all-labeled row comes last, at its own label count."""
    dice = {("SUP", 1): 0.60, ("SUP", 2): 0.70, ("MT", 1): 0.75, ("MT", 2): 0.72, ("FULL", 1): 0.80, ("FULL", 2): 0.80}
    runs = [Run(m, 50 if m == "FULL" else 5, s, f"x_s{s}", ("--max_iterations", "9"))
            for s in (1, 2) for m in ("SUP", "MT", "FULL")]
    for run in runs:
        write_summary(run.eval_dir(tmp_path, False), (dice[run.method, run.seed],))
        if run.method == "MT":
            write_summary(run.eval_dir(tmp_path, True), (dice[run.method, run.seed] + 0.01,))
    rows = collect(runs, tmp_path, [5], 50)
    assert [(r["method"], r["labelnum"]) for r in rows] == [("SUP", 5), ("MT", 5), ("MT", 5), ("FULL", 50)]
    closed = {c["model"]: c for c in gap_closed(rows)}
    assert closed["student"]["per_seed"] == pytest.approx({1: 75.0, 2: 20.0})
    assert closed["student"]["mean"] == pytest.approx(47.5) and closed["student"]["gap_points"] == pytest.approx(15.0)
    assert closed["teacher"]["per_seed"] == pytest.approx({1: 80.0, 2: 30.0})
    # the all-labeled row is no method's baseline and is not compared with labeled-only
    assert all(d["method"] != "FULL" for d in differences(rows, "SUP"))
    md = markdown_report({"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e", "max_iterations": 9,
                          "seeds": [1, 2], "command": "python reproduce.py"}, rows, [], [])
    assert md.startswith("# X: Mean Teacher against labeled-only training and training with every case labeled")
    assert "| all labeled | 50 (100 %) | 2 |" in md
    assert "training with all 50 cases labeled" in md
    assert "- 5 labeled, Mean Teacher student: 47.50 ± 38.89 % of a 15.00-point gap (per seed: 75 %, 20 %)" in md
    assert gap_closed([r for r in rows if r["method"] != "FULL"]) == []


def test_a_seed_whose_all_labeled_run_is_not_above_labeled_only_has_no_share(tmp_path):
    """Seed 1: 0.60 -> 0.80 (MT 0.70: 50 %); seed 2: all labeled 0.68 below labeled-only 0.70,
    where (0.72 - 0.70) / (0.68 - 0.70) would read as -100 %: left out and said."""
    dice = {("SUP", 1): 0.60, ("SUP", 2): 0.70, ("MT", 1): 0.70, ("MT", 2): 0.72, ("FULL", 1): 0.80, ("FULL", 2): 0.68}
    runs = [Run(m, 50 if m == "FULL" else 5, s, f"x_s{s}", ("--max_iterations", "9"))
            for s in (1, 2) for m in ("SUP", "MT", "FULL")]
    for run in runs:
        write_summary(run.eval_dir(tmp_path, False), (dice[run.method, run.seed],))
        if run.method == "MT":
            write_summary(run.eval_dir(tmp_path, True), (dice[run.method, run.seed],))
    rows = collect(runs, tmp_path, [5], 50)
    student = next(c for c in gap_closed(rows) if c["model"] == "student")
    assert student["per_seed"] == pytest.approx({1: 50.0}) and student["gap_points"] == pytest.approx(20.0)
    assert student["no_gap"] == pytest.approx({2: -2.0})
    header = {"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e", "max_iterations": 9,
              "seeds": [1, 2], "command": "c"}
    assert ("- 5 labeled, Mean Teacher student: 50.00 % of a 20.00-point gap (per seed: 50 %); no gap to close "
            "with seed 2 (-2.00 points): all labeled not above labeled-only") in markdown_report(header, rows, [], [])
    only_seed_2 = [r for r in collect([r for r in runs if r.seed == 2], tmp_path, [5], 50)]
    assert "- 5 labeled, Mean Teacher student: n/a; no gap to close with seed 2 (-2.00 points)" in \
        markdown_report({**header, "seeds": [2]}, only_seed_2, [], [])


def test_a_share_over_100_percent_says_the_all_labeled_run_was_no_ceiling(tmp_path):
    """Seed 1: labeled-only 0.70, all labeled 0.72, Mean Teacher 0.74 -> 200 %, as Hippocampus
    gave on 2026-12-06: the report says the ceiling was not one; Mean Teacher at 0.71 (50 %) not."""
    header = {"dataset": "X", "train_list": "t", "eval_list": "e", "val_list": "e", "max_iterations": 9,
              "seeds": [1], "command": "c"}

    def report(folder, mean_teacher_dice):
        dice = {"SUP": 0.70, "MT": mean_teacher_dice, "FULL": 0.72}
        runs = [Run(m, 50 if m == "FULL" else 5, 1, "x_s1", ("--max_iterations", "9")) for m in dice]
        for run in runs:
            write_summary(run.eval_dir(folder, False), (dice[run.method],))
            if run.method == "MT":
                write_summary(run.eval_dir(folder, True), (dice[run.method],))
        rows = collect(runs, folder, [5], 50)
        return next(c for c in gap_closed(rows) if c["model"] == "student"), markdown_report(header, rows, [], [])

    student, md = report(tmp_path / "above", 0.74)
    assert student["per_seed"] == pytest.approx({1: 200.0})
    assert "- 5 labeled, Mean Teacher student: 200.00 % of a 2.00-point gap (per seed: 200 %)" in md
    assert "Over 100 %: the method scored above training with every case labeled (seed 1)" in md
    student, md = report(tmp_path / "below", 0.71)
    assert student["per_seed"] == pytest.approx({1: 50.0}) and "Over 100 %" not in md
