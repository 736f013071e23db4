"""reproduce.py: the grid runs, evaluates the last checkpoints, aggregates over seeds, skips
finished runs, resumes unfinished ones, and refuses evaluation cases it trained on."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, TINY, log_lines, run_script, script_env
from dataloaders.synthetic import generate_dataset

PATCH = ["--patch_size", "32", "32", "16"]


def reproduce(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "reproduce.py"), *map(str, args)], cwd=cwd, env=script_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("grid")
    volumes = generate_dataset(cwd / "data", num_train=8, num_test=2, size=(48, 48, 24))
    args = ["--dataset_name", "Synthetic", "--root_path", volumes, "--labelnum", "2", "--seeds", "1", "2",
            "--max_iterations", "4", "--val_every", "2", "--out", "res", "--figure_cases", "1", "--jobs", "2",
            "--train_args", " ".join([*PATCH, "--save_every", "2", "--log_every", "2"]),
            "--eval_args", " ".join(PATCH)]
    # an unfinished run already there: the grid must continue it, not start over
    ok(run_script("train_mean_teacher.py", ["--dataset_name", "Synthetic", "--root_path", volumes, *TINY,
                                            "--max_iterations", "2", "--exp", "repro4_s2", "--seed", "2",
                                            "--save_every", "2", "--train_list", cwd / "data" / "train.list"], cwd))
    first = ok(reproduce(args, cwd))
    return cwd, args, first, cwd / "res"


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_every_run_is_trained_and_its_last_checkpoint_evaluated(grid):
    cwd, _, first, out = grid
    assert "4 runs: SUP, MT x labelnum [2] (25 %) of 8 training cases x seeds [1, 2]" in first.stdout
    # the evaluation list is the test list here, which training refuses to validate on
    assert "no validation curve (the evaluation cases are test cases)" in first.stdout
    assert "2 at a time" in first.stdout
    assert first.stdout.count("training (start)") == 3 and first.stdout.count("training (resume)") == 1
    resumed = cwd / "model" / "Synthetic_repro4_s2_2_labeled" / "MT"
    assert log_lines(resumed, "resumed after iteration 2")
    for name in ("SUP_2_s1", "MT_2_s1", "MT_2_s1_teacher", "SUP_2_s2", "MT_2_s2", "MT_2_s2_teacher"):
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["iteration"] == 4 and summary["checkpoint"].endswith("iter_4.pth")
        assert summary["model"] == ("teacher" if name.endswith("teacher") else "student")


def test_results_are_the_mean_and_std_over_seeds(grid):
    _, _, _, out = grid
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["model"]) for r in results["rows"]] == [("SUP", "student"), ("MT", "student"),
                                                                     ("MT", "teacher")]
    for row in results["rows"]:
        suffix = "_teacher" if row["model"] == "teacher" else ""
        per_seed = [json.loads((out / "eval" / f"{row['method']}_2_s{s}{suffix}" / "summary.json").read_text())
                    ["classes"]["class_1"]["dice"]["mean"] for s in (1, 2)]
        assert row["per_seed"]["dice"] == per_seed and row["seeds"] == [1, 2]
        assert row["mean"]["dice"] == pytest.approx(np.mean(per_seed))
        assert row["std"]["dice"] == pytest.approx(np.std(per_seed, ddof=1))
        assert row["labeled_percent"] == 25.0
        assert row["seconds_per_iteration"] > 0  # from the training logs, the resumed run's two processes too
    md = (out / "results.md").read_text()
    assert "| labeled-only | 2 (25 %) | 2 |" in md and "| Mean Teacher (teacher) | 2 (25 %) | 2 |" in md
    assert "python train_mean_teacher.py --dataset_name Synthetic" in md and "python inference.py" in md
    assert "--iteration 4" in md and "**last** checkpoint" in md


def test_pictures_are_written(grid):
    _, _, _, out = grid
    for name in ("curves.png", "comparison_2.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"![{name}]({name})" in (out / "results.md").read_text()


def test_rerun_skips_finished_runs(grid):
    cwd, args, _, out = grid
    checkpoints = {p: p.stat().st_mtime_ns for p in (cwd / "model").rglob("iter_4.pth")}
    assert len(checkpoints) == 4
    again = ok(reproduce(args, cwd))
    assert "training (" not in again.stdout and again.stdout.count("evaluated already") == 4
    assert {p: p.stat().st_mtime_ns for p in (cwd / "model").rglob("iter_4.pth")} == checkpoints
    assert json.loads((out / "results.json").read_text())["rows"]


def test_a_results_folder_alone_continues_the_grid(grid, tmp_path):
    """Results brought back from a GPU machine without the run folders' checkpoints: the
    evaluated runs count as done, the missing ones are trained, the pictures are kept."""
    cwd, args, _, out = grid
    assert sorted(p.name for p in (out / "scalars").iterdir()) == [
        "MT_2_s1.csv.gz", "MT_2_s2.csv.gz", "SUP_2_s1.csv.gz", "SUP_2_s2.csv.gz"]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(cwd / "data", elsewhere / "data")
    shutil.copytree(out, elsewhere / "res")
    pictures = {name: (out / name).read_bytes() for name in ("curves.png", "comparison_2.png")}
    (elsewhere / "res" / "scalars" / "MT_2_s2.csv.gz").unlink()  # as if that run's scalars were lost
    volumes = elsewhere / "data" / "volumes"
    moved = [volumes if a == cwd / "data" / "volumes" else a for a in args]
    again = ok(reproduce([*moved, "--seeds", "1", "2", "3"], elsewhere))
    assert again.stdout.count("evaluated already") == 4 and again.stdout.count("training (start)") == 2
    assert not (elsewhere / "model" / "Synthetic_repro4_s1_2_labeled").exists()
    assert "comparison_2.png: kept as it is" in again.stdout and "curves.png: kept as it is" in again.stdout
    assert {name: (elsewhere / "res" / name).read_bytes() for name in pictures} == pictures
    rows = json.loads((elsewhere / "res" / "results.json").read_text())["rows"]
    assert all(row["seeds"] == [1, 2, 3] for row in rows)


def test_a_part_of_the_grid_never_replaces_the_whole_table(grid):
    """A call naming one seed of one method, in a folder whose results.md covers the grid,
    writes its own table and curves beside it. Before: its one-run table replaced the grid's."""
    cwd, args, _, out = grid
    part = cwd / "res_part"
    shutil.copytree(out, part)
    whole = {name: (part / name).read_bytes() for name in ("results.md", "results.json", "curves.png")}
    proc = ok(reproduce([*args, "--out", "res_part", "--seeds", "2", "--methods", "MT"], cwd))
    assert "results_MT_2_s2.md: this call's part of the grid; results.md" in proc.stdout
    assert {name: (part / name).read_bytes() for name in whole} == whole
    rows = json.loads((part / "results_MT_2_s2.json").read_text())["rows"]
    assert [(r["method"], r["model"], r["seeds"]) for r in rows] == [("MT", "student", [2]), ("MT", "teacher", [2])]
    assert "![curves_MT_2_s2.png](curves_MT_2_s2.png)" in (part / "results_MT_2_s2.md").read_text()
    assert (part / "curves_MT_2_s2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the whole grid again: results.md is its table, as before
    again = ok(reproduce([*args, "--out", "res_part"], cwd))
    assert "this call's part" not in again.stdout
    assert json.loads((part / "results.json").read_text())["rows"] == json.loads(whole["results.json"])["rows"]


def test_an_unreadable_results_json_is_kept_and_said_so(grid):
    """A results.json cut short (a full disk, say) cannot tell which runs results.md covers: even
    the whole grid's call then writes a table of its own name and says what to move aside."""
    cwd, args, _, out = grid
    cut = cwd / "res_cut"
    shutil.copytree(out, cut)
    text = (cut / "results.json").read_text()
    (cut / "results.json").write_text(text[: len(text) // 2])
    kept = {name: (cut / name).read_bytes() for name in ("results.md", "results.json")}
    proc = ok(reproduce([*args, "--out", "res_cut"], cwd))
    assert "results.json in" in proc.stdout and "is unreadable" in proc.stdout and "move both aside" in proc.stdout
    assert "the full command rewrites it" not in proc.stdout
    assert {name: (cut / name).read_bytes() for name in kept} == kept
    assert list(cut.glob("results_*.md"))


def test_dry_run_prints_commands_only(grid, tmp_path):
    cwd, args, _, _ = grid
    proc = ok(reproduce([*args[:-6], "--seeds", "7", "--dry_run", "--out", tmp_path / "dry"], cwd))
    assert "train_sup.py" in proc.stdout and "--seed 7" in proc.stdout and "inference.py" in proc.stdout
    assert not (cwd / "model" / "Synthetic_repro4_s7_2_labeled").exists()
    assert not (tmp_path / "dry").exists()


def test_a_methods_own_schedule_flags_win_and_its_last_checkpoint_is_evaluated(grid, tmp_path):
    """--bcp_args sets BCP's stages (the grid's 4 iterations scale to 11, pre-training 1): the
    script is told 6 (the grid's own --max_iterations flag too), and inference evaluates
    iteration 6, not the scaled 11."""
    cwd, args, _, _ = grid
    proc = ok(reproduce([*args[:-6], "--methods", "BCP", "--seeds", "7", "--bcp_args=--pretrain_iterations 2 "
                         "--max_iterations 6", "--dry_run", "--out", tmp_path / "dry"], cwd))
    train = next(line for line in proc.stdout.splitlines() if "train_bcp.py" in line)
    assert "--max_iterations 6 " in train and "--max_iterations 11" not in train
    assert train.endswith("--pretrain_iterations 2 --max_iterations 6")
    assert "inference.py" in proc.stdout and "--iteration 6 " in proc.stdout and "--iteration 11" not in proc.stdout


def test_a_name_ending_in_a_digit_is_kept_apart_from_the_schedule(grid):
    cwd, args, _, _ = grid
    at = args.index("--out")
    without_out = args[:at] + args[at + 2:-6]
    proc = ok(reproduce([*without_out, "--seeds", "7", "--exp", "m16", "--dry_run"], cwd))
    assert "--exp m16_4_s7" in proc.stdout and "results/Synthetic_m16_4" in proc.stdout


def test_evaluating_on_training_cases_is_refused(grid):
    cwd, _, _, _ = grid
    proc = reproduce(["--dataset_name", "Synthetic", "--root_path", cwd / "data" / "volumes",
                      "--eval_list", cwd / "data" / "train.list", "--dry_run"], cwd)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "case(s) are in both" in proc.stderr and "never trained on" in proc.stderr


def test_a_failing_run_stops_the_grid_with_one_line(grid, tmp_path):
    cwd, args, _, _ = grid
    proc = reproduce([*args[:-6], "--seeds", "5", "--out", tmp_path / "bad", "--train_args", "--base_lr -1 --bogus"],
                     cwd)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "training SUP_2_s5 failed (exit 2)" in proc.stderr and "rerun the same command" in proc.stderr
    assert (tmp_path / "bad" / "logs" / "train_SUP_2_s5.txt").is_file()


def test_labelnum_out_of_range_is_refused(grid):
    cwd, _, _, _ = grid
    proc = reproduce(["--dataset_name", "Synthetic", "--root_path", cwd / "data" / "volumes", "--labelnum", "8",
                      "--dry_run"], cwd)
    assert proc.returncode != 0 and "--labelnum 8 must be between 1 and 7" in proc.stderr


def test_comparison_figure_draws_what_the_evaluation_scored(grid, tmp_path, monkeypatch):
    """An evaluation with --lcc scored the largest components; the figure outlines the same."""
    from grid import plots

    cwd, _, _, out = grid
    models = []
    for method in ("SUP", "MT"):
        evaluation = tmp_path / method
        shutil.copytree(out / "eval" / f"{method}_2_s1", evaluation)
        summary = json.loads((evaluation / "summary.json").read_text())
        (evaluation / "summary.json").write_text(json.dumps({**summary, "lcc": method == "MT"}))
        models.append((method, cwd / "model" / "Synthetic_repro4_s1_2_labeled" / method / "iter_4.pth", evaluation))
    kept = []
    monkeypatch.setattr(plots, "keep_largest_component_per_class",
                        lambda labels, num_classes: kept.append(labels.shape) or labels)
    case_ids = (cwd / "data" / "test.list").read_text().split()[:1]
    path = plots.comparison_figure(models, root=cwd / "data" / "volumes", case_ids=case_ids, gpu="0", title="t",
                                   path=tmp_path / "c.png")
    assert path.is_file() and len(kept) == 1, "only the --lcc evaluation's prediction is reduced"


def test_a_rerun_with_other_settings_is_refused_not_answered_with_old_numbers(grid, tmp_path):
    """Results and checkpoints made with other flags are never passed off as the new ones."""
    cwd, args, _, out = grid
    before = (out / "results.md").read_text()
    other_eval = reproduce([*args, "--eval_args", " ".join([*PATCH, "--lcc"])], cwd)
    assert other_eval.returncode == 2 and "Traceback" not in other_eval.stderr
    assert "was made with other settings" in other_eval.stderr and "eval flags" in other_eval.stderr
    assert "--lcc" in other_eval.stderr and "choose a new --out" in other_eval.stderr
    assert (out / "results.md").read_text() == before
    # a new results folder, but training flags that differ from the finished runs of this --exp
    other_training = reproduce([*args[:-4], "--train_args", " ".join([*PATCH, "--base_lr", "0.02"]),
                                "--eval_args", " ".join(PATCH), "--out", tmp_path / "new"], cwd)
    assert other_training.returncode == 2 and "train flags" in other_training.stderr
    assert "choose a new --exp" in other_training.stderr
    assert not list((tmp_path / "new").rglob("summary.json"))


def test_a_start_interrupted_before_its_first_save_is_started_again(grid):
    """Interrupted after best_model.pth (written at the first validation) but before latest.pth:
    the same command starts that run again instead of refusing the folder."""
    cwd, args, _, _ = grid
    folder = cwd / "model" / "Synthetic_repro4_s9_2_labeled" / "SUP"
    folder.mkdir(parents=True)
    (folder / "best_model.pth").write_bytes(b"left by an interrupted start")
    (folder / "log.txt").write_text("the interrupted start's log\n")
    at = args.index("--out")
    proc = ok(reproduce([*args[:at], "--out", cwd / "res_s9", *args[at + 2:], "--seeds", "9", "--methods", "SUP"],
                        cwd))
    assert "training (start)" in proc.stdout
    assert (folder / "iter_4.pth").is_file() and "interrupted start" not in (folder / "log.txt").read_text()


@pytest.mark.parametrize("flags,message", [
    (["--seeds", "1", "1"], "--seeds lists 1 more than once"),
    (["--labelnum", "2", "3", "2"], "--labelnum lists 2 more than once"),
    (["--seeds", "-1"], "--seeds must be between 0 and 2**32 - 1"),
    (["--val_every", "0"], "--val_every must be at least 1"),
    (["--out", "a_file"], "is a file"),
    # before: a shlex traceback, and the whole usage before the error line
    (["--train_args", "--exp 'unclosed"], "--train_args \"--exp 'unclosed\" cannot be read as flags (No closing "
                                          "quotation); close the quote"),
    (["--mt_args", '"--consistency 1'], "--mt_args"),
    (["--train_args", "--max_iterations 9"], "--train_args may not set --max_iterations"),
    (["--methods", "BCP", "--bcp_args", "--pretrain_iterations x"], "BCP's --pretrain_iterations is 'x': give a whole"),
    (["--bogus"], "error: unrecognized arguments: --bogus (see reproduce.py --help)"),
    (["--methods", "UAMTX"], "argument --methods: invalid choice: 'UAMTX'"),
])
def test_bad_grid_flags_are_one_error_line(grid, flags, message):
    cwd, _, _, _ = grid
    (cwd / "a_file").write_text("")
    proc = reproduce(["--dataset_name", "Synthetic", "--root_path", cwd / "data" / "volumes", *flags, "--dry_run"],
                     cwd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr


def test_a_missing_synthetic_folder_is_refused_not_generated_beside_it(tmp_path):
    proc = reproduce(["--dataset_name", "Synthetic", "--root_path", tmp_path / "nowhere" / "volumes", "--dry_run"],
                     tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data folder not found" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing is written for a path the user gave"


@pytest.mark.parametrize("cases, expected", [(80, "[8, 16] (10 %, 20 %) of 80 training cases"),
                                             (64, "[6, 13] (9.38 %, 20.3 %) of 64 training cases")])
def test_default_label_counts_follow_the_training_list(tmp_path, cases, expected):
    """About 10 % and 20 % of the training list: the published 8 and 16 of train.list's 80 LA
    cases. Before: 6 and 13 whatever the list (7.5 % and 16 % of 80)."""
    (tmp_path / "LA" / "cases").mkdir(parents=True)
    (tmp_path / "LA" / "train.list").write_text("\n".join(f"case{i:03d}" for i in range(cases)) + "\n")
    (tmp_path / "LA" / "test.list").write_text("\n".join(f"test{i:03d}" for i in range(20)) + "\n")
    proc = ok(reproduce(["--dataset_name", "LA", "--root_path", tmp_path / "LA" / "cases", "--seeds", "1",
                         "--dry_run"], tmp_path))
    assert f"x labelnum {expected} x seeds [1]" in proc.stdout, proc.stdout
    labelnums = set(re.findall(r"train_sup\.py .*--labelnum (\d+)", proc.stdout))
    assert labelnums == set(expected[1:expected.index("]")].split(", "))
    assert "--val_list" not in proc.stdout, "the test list is never a validation list"


def test_a_run_folder_with_results_is_never_replaced_only_an_interrupted_start(grid, tmp_path):
    """A start passes --overwrite only over what an interrupted start leaves (its log, before
    any latest.pth). Before: it passed --overwrite over any folder without latest.pth, so the
    log, scalars and evaluations of a run whose checkpoints were deleted went without a word."""
    cwd, args, _, _ = grid
    at = args.index("--out")
    dry = [*args[:at], "--out", tmp_path / "res", *args[at + 2:], "--methods", "SUP", "--dry_run"]
    interrupted = cwd / "model" / "Synthetic_repro4_s21_2_labeled" / "SUP"
    interrupted.mkdir(parents=True)
    for name in ("log.txt", "config.json", "scalars.csv", "best_model.pth"):
        (interrupted / name).write_text("an interrupted start")
    finished = cwd / "model" / "Synthetic_repro4_s22_2_labeled" / "SUP"
    (finished / "test").mkdir(parents=True)
    for name in ("log.txt", "config.json", "scalars.csv", "reproduce.json", "test/summary.json"):
        (finished / name).write_text("{}")
    proc = ok(reproduce([*dry, "--seeds", "21", "22"], cwd))
    commands = {seed: line for line in proc.stdout.splitlines() for seed in ("21", "22")
                if f"SUP_2_s{seed}:" in line and "train_sup.py" in line}
    assert commands["21"].endswith("--overwrite"), commands
    assert "--overwrite" not in commands["22"], commands


def test_admt_and_the_all_labeled_ceiling_join_the_grid(tmp_path):
    """AD-MT trains its own schedule scaled to the grid (15000 / 6000 of it); FULL trains
    labeled-only once per seed with every training case labeled, and the table says how much of
    the gap to it each method closes."""
    volumes = generate_dataset(tmp_path / "data", num_train=6, num_test=2, size=(48, 48, 24))
    proc = ok(reproduce(["--dataset_name", "Synthetic", "--root_path", volumes, "--labelnum", "2", "--seeds", "1",
                         "--max_iterations", "2", "--methods", "SUP", "ADMT", "FULL", "--out", "res",
                         "--figure_cases", "1", "--train_args", " ".join([*PATCH, "--log_every", "1"]),
                         "--eval_args", " ".join(PATCH)], tmp_path))
    assert "3 runs: SUP, ADMT, FULL x labelnum [2]" in proc.stdout
    full_run = tmp_path / "model" / "Synthetic_repro2_s1_6_labeled" / "FULL"
    assert (full_run / "iter_2.pth").is_file() and log_lines(full_run, "6 labeled cases")
    assert (tmp_path / "model" / "Synthetic_repro2_s1_2_labeled" / "ADMT" / "iter_5.pth").is_file()
    results = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [(r["method"], r["model"], r["labelnum"]) for r in results["rows"]] == [
        ("SUP", "student", 2), ("ADMT", "student", 2), ("ADMT", "teacher", 2), ("FULL", "student", 6)]
    assert results["rows"][1]["schedule"] == "--max_iterations 5 --consistency_rampup 0.01333"
    md = (tmp_path / "res" / "results.md").read_text()
    assert "| all labeled | 6 (100 %) | 1 |" in md and "python train_sup.py" in md and "--model FULL" in md
    sup, admt, full = (results["rows"][i]["per_seed"]["dice"][0] for i in (0, 1, 3))
    if full > sup:  # a gap to close (these runs are too short to promise one)
        assert f"- 2 labeled, AD-MT student: {100 * (admt - sup) / (full - sup):.2f} % of a" in md
    else:
        assert f"- 2 labeled, AD-MT student: n/a; no gap to close with seed 1 ({100 * (full - sup):+.2f} points)" in md
