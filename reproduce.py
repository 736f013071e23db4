"""Reproduce the semi-supervised claim in one command: with the same few labeled cases, Mean
Teacher (and UA-MT, BCP, AD-MT with --methods) against training on the labeled cases alone, at
two label ratios, over several seeds; with FULL, against training with every case labeled too.

    python reproduce.py --dataset_name LA --root_path "data/LA/2018LA_Seg_Training Set"
    python reproduce.py --dataset_name Hippocampus --root_path data/Hippocampus --labelnum 17 34 \\
        --max_iterations 1000 --train_args "--lr_decay_every 700" --mt_args "--consistency_rampup 6.67"
    python reproduce.py ... --methods SUP MT UAMT BCP ADMT FULL

For every method x labelnum x seed it trains with the method's script (``train_sup.py``,
``train_mean_teacher.py``, ``train_uamt.py``, ``train_bcp.py``, ``train_admt.py``; FULL is
``train_sup.py --model FULL`` with every training case labeled, once per seed; run folders under ``model/`` as
usual, experiment ``{--exp}{iterations}_s{seed}``, an underscore before the iterations where
``--exp`` ends in a digit), evaluates the **last** checkpoint with ``inference.py`` on the
evaluation list, and writes to ``--out``:

    results.md        mean +- std over seeds of Dice, Jaccard, 95HD and ASD per row, each
                      method minus labeled-only (and minus Mean Teacher) paired by seed and
                      the cases it wins, with FULL the share of the gap to it each method
                      closes, and every command run
    results.json      the same numbers, per seed too
    curves.png        supervised loss, consistency loss and weight, validation Dice
    comparison_N.png  a few evaluation cases: ground truth, labeled-only and Mean Teacher outlines
    eval/, logs/      each evaluation's outputs, each command's console output
    scalars/          each run's scalars.csv (gzipped), which the curves are drawn from

Defaults: the development split (``dev_train.list``, ``dev_val.list`` beside the data, else
``train.list``/``test.list``), about 10 % and 20 % of the training cases labeled (LA: 8 and 16
of ``train.list``'s 80, 6 and 13 of ``dev_train.list``'s 64), three seeds, the original
6000-iteration schedule. --max_iterations M scales every method's own schedule by M / 6000:
labeled-only, Mean Teacher and UA-MT train M iterations, BCP (2000 pre-training + 15000
self-training, lr x0.1 every 2500) 17000 M / 6000, AD-MT (15000, its weight ramped up over 40 x
150 iterations) 15000 M / 6000 (the scaled flags follow --train_args). A
method's own --*_args come last and win, its schedule included (``--bcp_args
"--pretrain_iterations 1000 --max_iterations 3500"``); the table shows each method's schedule as
its script reads it. Finished runs are skipped and unfinished ones resumed, so after an
interruption the same command goes on.
A run evaluated in ``--out`` is done even without its checkpoints, so a grid can be run in
parts on other machines (``--labelnum 13`` there, say) and finished with the results folders
brought back; pictures whose inputs stayed elsewhere are kept as they were drawn there. A call
that names only part of the grid tabulated in ``--out`` (``--seeds 1339``, say) writes its table
and pictures as ``results_{methods}_{labelnums}_s{seeds}.md`` and so on, and leaves the larger
``results.md`` as it is (every call does so while ``results.json`` cannot be read).
No checkpoint is ever chosen: the validation Dice of the curves (on ``--val_list``, by default
the evaluation cases unless they are test cases, which training never validates on) is only
drawn.
"""
import gzip
import json
import shlex
import shutil
import subprocess
import sys
import time
from argparse import RawDescriptionHelpFormatter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dataloaders.case_lists import read_case_list
from dataloaders.datasets import DATASETS, data_folder, dataset_label, root_or_default
from dataloaders.la_heart import check_root
from grid.results import METHODS, Run, collect, effective_schedule, markdown_report, schedule_flags
from training.run_folder import read_scalars, run_folder_path, write_text_atomically
from utils.errors import ArgumentParser, UserError, report_user_errors, require_folder_or_nothing
from utils.folder_lock import LOCK_FILE

REPO = Path(__file__).resolve().parent
LABELED_SHARES = (0.1, 0.2)  # the literature's label ratios, whatever the training list


def parse_args():
    p = ArgumentParser(description=__doc__, formatter_class=RawDescriptionHelpFormatter)  # errors in one line
    p.add_argument("--dataset_name", default=None, choices=sorted(DATASETS),
                   help="a named dataset and its published settings (default: LA, or for an MSD folder of your "
                        "own, settings planned from its data)")
    p.add_argument("--root_path", default=None, help="the data folder (default: the dataset's usual place)")
    p.add_argument("--train_list", default=None, help="training cases (default: dev_train.list, else train.list)")
    p.add_argument("--eval_list", default=None, help="evaluation cases (default: dev_val.list, else test.list)")
    p.add_argument("--val_list", default=None,
                   help="validation cases for the curves (default: the evaluation cases; never used to choose)")
    p.add_argument("--labelnum", type=int, nargs="+", default=None,
                   help="labeled cases per row (default: about 10 %% and 20 %% of the training list; LA: 8 16 of 80)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    p.add_argument("--methods", nargs="+", default=["SUP", "MT"], choices=list(METHODS),
                   help="methods of the grid (default: SUP MT; all: SUP MT UAMT BCP ADMT FULL; FULL: labeled-only "
                        "with every training case labeled, once per seed, the ceiling)")
    p.add_argument("--max_iterations", type=int, default=6000)
    p.add_argument("--val_every", type=int, default=None,
                   help="iterations between validations (default: 1/12 of the run)")
    p.add_argument("--exp", default="repro", help="experiment prefix of the run folders")
    p.add_argument("--train_args", default="", help='more flags for every training script: --train_args="--flag value"')
    p.add_argument("--mt_args", default="",
                   help='more flags for the Mean Teacher family (train_mean_teacher.py and train_uamt.py)')
    p.add_argument("--uamt_args", default="", help="more flags for train_uamt.py only")
    p.add_argument("--bcp_args", default="", help="more flags for train_bcp.py only (after its scaled schedule)")
    p.add_argument("--admt_args", default="", help="more flags for train_admt.py only (after its scaled schedule)")
    p.add_argument("--eval_args", default="", help='more flags for inference.py: --eval_args="--flag value"')
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at the same time (several small runs can share one GPU; on a CPU set "
                        "OMP_NUM_THREADS so that jobs x threads fits the cores)")
    p.add_argument("--figure_cases", type=int, default=3, help="evaluation cases in the comparison figure")
    p.add_argument("--gpu", default="0")
    p.add_argument("--out", default=None, help="results folder (default: results/{dataset}_{exp}{iterations}, e.g. LA_repro6000)")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args()
    if args.max_iterations < 1:
        raise UserError(f"--max_iterations must be at least 1, got {args.max_iterations}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.val_every is not None and args.val_every < 1:
        raise UserError(f"--val_every must be at least 1 (leave it out for 1/12 of the run), got {args.val_every}")
    for flag in ("labelnum", "seeds"):
        values = getattr(args, flag) or []
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise UserError(f"--{flag} lists {', '.join(map(str, twice))} more than once; give each value once")
    bad_seeds = [seed for seed in args.seeds if not 0 <= seed < 2 ** 32]
    if bad_seeds:
        raise UserError(f"--seeds must be between 0 and 2**32 - 1, got {bad_seeds[0]}")
    for flag in ("train_args", "mt_args", "uamt_args", "bcp_args", "admt_args", "eval_args"):
        try:
            shlex.split(getattr(args, flag))
        except ValueError as err:  # an unbalanced quote
            raise UserError(f"--{flag} {getattr(args, flag)!r} cannot be read as flags ({err}); close the quote, "
                            f"e.g. --{flag}=\"--flag 'a value'\"") from None
    if any(token.partition("=")[0] == "--max_iterations" for token in shlex.split(args.train_args)):
        raise UserError("--train_args may not set --max_iterations: give the grid's length as reproduce.py's own "
                        "--max_iterations (each method's scaled from it), or one method's in its --*_args")
    if args.out:
        require_folder_or_nothing(args.out)
    return args


def resolve_lists(args) -> None:
    """Fill in the data folder and the case lists; check they exist and do not overlap."""
    args.dataset_flag = args.dataset_name  # passed on to the scripts only where given
    args.dataset_name = dataset_label(args.dataset_name, args.root_path)
    args.root_path = root_or_default(args.dataset_name, args.root_path)
    data = data_folder(check_root(args.root_path))
    for name, preferred, fallback in (("train_list", "dev_train.list", "train.list"),
                                      ("eval_list", "dev_val.list", "test.list")):
        if getattr(args, name) is None:
            dev = data.lists_dir / preferred
            setattr(args, name, str(dev if dev.is_file() else data.lists_dir / fallback))
        setattr(args, name, str(data.list_file(getattr(args, name))))
    train, evaluation = read_case_list(args.train_list), read_case_list(args.eval_list)
    if args.val_list:
        args.val_list = str(data.list_file(args.val_list))
    elif not test_cases(data) & set(evaluation):
        args.val_list = args.eval_list
    # else no validation curve: the evaluation cases are test cases, which training refuses to validate on
    shared = set(train) & set(evaluation)
    if shared:
        raise UserError(f"{len(shared)} case(s) are in both {args.train_list} and {args.eval_list} "
                        f"(e.g. {sorted(shared)[0]}); evaluate on cases the models never trained on")
    args.labelnum = args.labelnum or default_labelnums(len(train))
    for n in args.labelnum:
        if not 1 <= n < len(train):
            raise UserError(f"--labelnum {n} must be between 1 and {len(train) - 1} (the training list has "
                            f"{len(train)} cases and Mean Teacher needs unlabeled ones)")
    args.train_ids, args.eval_ids = train, evaluation
    args.train_cases, args.eval_cases = len(train), len(evaluation)
    args.val_every = args.val_every or max(args.max_iterations // 12, 1)
    # the schedule is part of the name (repro6000); a separator where the name ends in a digit (m16_6000)
    args.grid_name = f"{args.exp}{'_' if args.exp[-1:].isdigit() else ''}{args.max_iterations}"
    args.out = Path(args.out or f"results/{args.dataset_name}_{args.grid_name}")


def test_cases(data) -> set:
    """The cases of the dataset's test.list (beside the data), or none."""
    path = data.lists_dir / "test.list"
    return set(read_case_list(path)) if path.is_file() else set()


def default_labelnums(train_cases: int) -> list[int]:
    """About 10 % and 20 % of ``train_cases`` (rounded; at least 1, and fewer than all)."""
    return sorted({min(max(int(train_cases * share + 0.5), 1), train_cases - 1) for share in LABELED_SHARES})


def plan(args) -> list[Run]:
    """Every run of the grid, labeled-only first so the baseline of a row exists early; the
    all-labeled runs (FULL) once per seed, at the training list's size, last."""
    runs = []
    methods = sorted(args.methods, key=list(METHODS).index)
    for labelnum in args.labelnum:
        for seed in args.seeds:
            for method in (m for m in methods if not METHODS[m].all_labeled):
                runs.append(make_run(args, method, labelnum, seed))
    for method in (m for m in methods if METHODS[m].all_labeled):
        runs += [make_run(args, method, args.train_cases, seed) for seed in args.seeds]
    return runs


def make_run(args, method: str, labelnum: int, seed: int) -> Run:
    schedule = effective_schedule(method, args.max_iterations, method_flags(args, method))
    return Run(method, labelnum, seed, f"{args.grid_name}_s{seed}", tuple(schedule))


def data_flags(args) -> list[str]:
    named = ["--dataset_name", args.dataset_flag] if args.dataset_flag else []
    return [*named, "--root_path", args.root_path]


METHOD_ARGS = {"SUP": (), "MT": ("mt_args",), "UAMT": ("mt_args", "uamt_args"), "BCP": ("bcp_args",),
               "ADMT": ("admt_args",), "FULL": ()}


def method_flags(args, method: str) -> list[str]:
    """The flags after the grid's own: --train_args, the method's schedule beyond
    --max_iterations (BCP's stages and decay, scaled), then its own --*_args, which win."""
    schedule = schedule_flags(method, args.max_iterations)[2:]  # --max_iterations is passed apart
    return [*shlex.split(args.train_args), *schedule,
            *(flag for name in METHOD_ARGS[method] for flag in shlex.split(getattr(args, name)))]


def train_command(args, run: Run) -> list[str]:
    return [sys.executable, str(REPO / METHODS[run.method].script), *data_flags(args), "--train_list",
            args.train_list, *(["--val_list", args.val_list] if args.val_list else []), "--labelnum", str(run.labelnum),
            "--seed", str(run.seed), "--max_iterations", str(run.iterations), "--exp", run.exp,
            # as many validations a run as the grid's (BCP's longer schedule validates less often)
            "--val_every", str(max(round(args.val_every * run.iterations / args.max_iterations), 1)),
            "--gpu", args.gpu, *METHODS[run.method].flags, *method_flags(args, run.method)]


def training_state(folder: Path, max_iterations: int) -> str:
    """"finished" (the last snapshot exists), "resume" (latest.pth exists) or "start"."""
    if (folder / f"iter_{max_iterations}.pth").is_file():
        return "finished"
    return "resume" if (folder / "latest.pth").is_file() else "start"


# What a start writes before its first latest.pth: a folder holding only these was left by an
# interrupted start, which the grid starts again over it. Anything else (an evaluation, a
# recipe, snapshots) is an earlier run's, which the training script refuses to delete.
STARTED_FILES = {"log.txt", "config.json", "scalars.csv", "tensorboard", "best_model.pth", LOCK_FILE}


def interrupted_start(folder: Path) -> bool:
    """Whether ``folder`` holds only what an interrupted start leaves (temporary files included)."""
    return folder.is_dir() and all(entry.name in STARTED_FILES or entry.name.endswith(".tmp")
                                   for entry in folder.iterdir())


def resumable_command(args, run: Run, state: str) -> list[str]:
    """The training command for ``state``: ``--resume`` to continue; a start in a folder left
    by an interrupted start (never latest.pth) replaces it."""
    folder = run_folder_path(args.dataset_name, run.exp, run.labelnum, run.method)
    extra = ["--resume"] if state == "resume" else ["--overwrite"] if interrupted_start(folder) else []
    return train_command(args, run) + extra


# Each run's settings, written beside its checkpoints and its evaluations, so that a rerun with
# other flags is refused instead of reusing numbers made with the old ones. Paths are left out
# (a grid may be run in parts on machines whose data lie elsewhere); the case lists count by
# their IDs.
RECIPE_FILE = "reproduce.json"


def recipe(args, run: Run) -> dict:
    return {"train": {"dataset": args.dataset_name, "method": run.method, "labelnum": run.labelnum, "seed": run.seed,
                      "max_iterations": run.iterations, "train_cases": args.train_ids,
                      "flags": method_flags(args, run.method)},
            "eval": {"eval_cases": args.eval_ids, "flags": shlex.split(args.eval_args)}}


def check_recipe(folder: Path, expected: dict, fix: str) -> None:
    """A one-line error if ``folder`` holds a recipe that differs from ``expected``; a folder
    without one (made before recipes were kept) is taken as it is."""
    path = folder / RECIPE_FILE
    if not path.is_file():
        return
    stored = json.loads(path.read_text())
    differences = [f"{part} {key} {stored.get(part, {}).get(key)!r} there, {value!r} now"
                   if not key.endswith("_cases") else f"other {key.replace('_', ' ')}"
                   for part, settings in expected.items() for key, value in settings.items()
                   if stored.get(part, {}).get(key) != value]
    if differences:
        raise UserError(f"{folder} was made with other settings ({'; '.join(differences)}); rerun with the "
                        f"settings it was made with, or {fix}")


def write_recipe(folder: Path, settings: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / RECIPE_FILE, json.dumps(settings, indent=1))  # a rerun after a kill reads it


def eval_command(args, run: Run, teacher: bool) -> list[str]:
    return [sys.executable, str(REPO / "inference.py"), *data_flags(args), "--test_list", args.eval_list,
            "--exp", run.exp, "--labelnum", str(run.labelnum), "--model", run.method,
            "--iteration", str(run.iterations), "--gpu", args.gpu,
            "--out", str(run.eval_dir(args.out, teacher)), *(["--teacher"] if teacher else []),
            # an evaluation of another checkpoint there (``evaluated`` said so) is replaced
            *(["--overwrite"] if (run.eval_dir(args.out, teacher) / "summary.json").is_file() else []),
            *shlex.split(args.eval_args)]


def shown(command: list[str]) -> list[str]:
    """The command as a reader would type it in the repository: ``python script.py ...``."""
    return ["python", *(str(Path(c).relative_to(REPO)) if c.startswith(str(REPO) + "/") else c for c in command[1:])]


def execute(command: list[str], log_path: Path, what: str) -> float:
    """Run ``command`` with its console output in ``log_path``; a failure stops the grid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"{what} failed (exit {code}): {tail[0]} -- full output in {log_path}; "
                        "fix it and rerun the same command to continue")
    return time.perf_counter() - start


def evaluated(args, run: Run, teacher: bool) -> bool:
    """Whether ``run``'s last checkpoint (student, or teacher) is evaluated in ``--out`` already,
    with the settings asked for now (else a one-line error)."""
    folder = run.eval_dir(args.out, teacher)
    summary = folder / "summary.json"
    if not (summary.is_file() and json.loads(summary.read_text()).get("iteration") == run.iterations):
        return False
    check_recipe(folder, recipe(args, run), "choose a new --out (and a new --exp where the training differs)")
    return True


def keep_scalars(args, run: Run) -> None:
    """Copy the run's ``scalars.csv``, gzipped (a quarter of the size), into ``--out/scalars/``:
    the curves then need only the results folder, not the run folders (whose checkpoints may
    stay on another machine)."""
    source = run_folder_path(args.dataset_name, run.exp, run.labelnum, run.method) / "scalars.csv"
    if source.is_file():
        (args.out / "scalars").mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as csv_file, open(args.out / "scalars" / f"{run.name}.csv.gz", "wb") as target:
            with gzip.GzipFile(fileobj=target, mode="wb", mtime=0) as packed:  # mtime 0: same bytes each time
                shutil.copyfileobj(csv_file, packed)


def complete(args, run: Run, name: str) -> None:
    """Train ``run`` (or resume it, or nothing if finished), then evaluate its last checkpoint
    (student, and teacher for Mean Teacher) unless that evaluation exists. A run whose
    evaluations are all in ``--out`` is done, checkpoints or not, so a results folder brought
    back from another machine continues the grid there."""
    if all(evaluated(args, run, teacher) for teacher in METHODS[run.method].evaluated_models):
        print(f"{name}: evaluated already")
        keep_scalars(args, run)
        return
    folder = run_folder_path(args.dataset_name, run.exp, run.labelnum, run.method)
    state = training_state(folder, run.iterations)
    settings = recipe(args, run)
    if state != "start":
        check_recipe(folder, {"train": settings["train"]}, "choose a new --exp")
    command = resumable_command(args, run, state)
    if args.dry_run:
        print(f"{name}: {'trained already' if state == 'finished' else shlex.join(command)}")
    elif state == "finished":
        print(f"{name}: trained already")
    else:
        print(f"{name}: training ({state}) ...", flush=True)
        seconds = execute(command, args.out / "logs" / f"train_{run.name}.txt", f"training {run.name}")
        write_recipe(folder, {"train": settings["train"]})
        print(f"{name}: trained in {seconds / 60:.1f} min", flush=True)
    for teacher in METHODS[run.method].evaluated_models:
        command = eval_command(args, run, teacher)
        if args.dry_run:
            print(f"{name}: {shlex.join(command)}")
        elif not evaluated(args, run, teacher):
            execute(command, args.out / "logs" / f"eval_{run.name}{'_teacher' if teacher else ''}.txt",
                    f"evaluating {run.name}")
            write_recipe(run.eval_dir(args.out, teacher), settings)
    if not args.dry_run:
        keep_scalars(args, run)


@report_user_errors
def main():
    args = parse_args()
    resolve_lists(args)
    runs = plan(args)
    if not args.dry_run:
        args.out.mkdir(parents=True, exist_ok=True)
    shares = ", ".join(f"{100 * n / args.train_cases:.3g} %" for n in args.labelnum)
    print(f"{len(runs)} runs: {', '.join(args.methods)} x labelnum {args.labelnum} ({shares}) of {args.train_cases} "
          f"training cases x seeds {args.seeds}; {args.max_iterations} iterations; evaluation on {args.eval_cases} "
          f"cases of {args.eval_list}; results in {args.out}" + (f"; {args.jobs} at a time" if args.jobs > 1 else "")
          + ("" if args.val_list else "; no validation curve (the evaluation cases are test cases)"))
    names = [f"[{number}/{len(runs)}] {run.name}" for number, run in enumerate(runs, 1)]
    pool = ThreadPoolExecutor(max_workers=1 if args.dry_run else args.jobs)
    futures = [pool.submit(complete, args, run, name) for run, name in zip(runs, names)]
    try:
        for finished in futures:
            finished.result()
    except UserError:  # the first failure: start nothing more, let the running ones end
        running = sum(f.running() for f in futures)
        if running:
            print(f"a run failed; waiting for the {running} run(s) in progress", file=sys.stderr, flush=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    commands = [shown(c) for run in runs
                for c in [train_command(args, run), *(eval_command(args, run, t)
                                                      for t in METHODS[run.method].evaluated_models)]]
    if args.dry_run:
        return

    results = collect(runs, args.out, args.labelnum, args.train_cases)
    covered = tabulated_runs(args.out)
    stem = results_stem(covered, runs, args.methods, args.labelnum, args.seeds)
    header = {"dataset": args.dataset_name, "train_list": args.train_list, "eval_list": args.eval_list,
              "val_list": args.val_list,
              "max_iterations": args.max_iterations, "seeds": args.seeds,
              "command": shlex.join(shown([sys.executable, str(Path(sys.argv[0]).resolve()), *sys.argv[1:]]))}
    # atomic: the next call reads results.json to tell whether it covers this table
    write_text_atomically(args.out / f"{stem}.json", json.dumps({**header, "rows": results}, indent=2))
    pictures = draw_pictures(args, runs, suffix=stem.removeprefix("results"))
    write_text_atomically(args.out / f"{stem}.md", markdown_report(header, results, commands, pictures))
    print((args.out / f"{stem}.md").read_text().split("\n## Commands")[0])
    if stem != "results" and covered is None:
        print(f"{stem}.md: results.json in {args.out} is unreadable, so results.md is kept as it is; "
              f"move both aside for a call to write results.md")
    elif stem != "results":
        print(f"{stem}.md: this call's part of the grid; results.md, which covers runs this call does not, "
              f"is kept as it is (the full command rewrites it)")
    print(f"written to {args.out}")


def results_stem(covered: set | None, runs: list[Run], methods, labelnums, seeds) -> str:
    """'results', unless --out already holds the table of runs this call does not name (the
    call is a part of the grid: --seeds 1339, say). Then this call's table and pictures get a
    name of their own, so that a smaller table never replaces a larger one."""
    # covered is None when results.json is unreadable: keep it, it may be all there is of a grid
    if covered is not None and covered <= {(run.method, run.labelnum, run.seed) for run in runs}:
        return "results"
    return "_".join(["results", "-".join(methods), "-".join(map(str, labelnums)),
                     "s" + "-".join(map(str, seeds))])


def tabulated_runs(out: Path) -> set | None:
    """The (method, labelnum, seed) of each run in --out's results.json (none without one); None
    if it cannot be read."""
    if not (out / "results.json").is_file():
        return set()
    try:
        return {(row["method"], row["labelnum"], seed) for row in json.loads((out / "results.json").read_text())["rows"]
                for seed in row["seeds"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def draw_pictures(args, runs: list[Run], suffix: str = "") -> list[str]:
    """curves.png and comparison_N.png, their names with the results table's suffix (with
    matplotlib; skipped with a note without it). A picture whose inputs are not all here
    (scalars of some run, checkpoints of a pair) is kept as it is when it exists: it was drawn
    where they were."""
    try:
        from grid import plots
    except ImportError as err:
        print(f"no pictures: {err} (pip install matplotlib)")
        return []
    names = []
    curves_path = args.out / f"curves{suffix}.png"
    scalars = {r: args.out / "scalars" / f"{r.name}.csv.gz" for r in runs}
    if all(path.is_file() for path in scalars.values()) or not curves_path.is_file():
        curves = {r: read_scalars(path) for r, path in scalars.items() if path.is_file()}
        if curves:
            names.append(plots.training_curves(curves, args.dataset_name, curves_path))
    else:
        print(f"{curves_path.name}: kept as it is (the scalars of some runs are not in {args.out / 'scalars'})")
        names.append(curves_path)
    if len(args.methods) > 1:
        cases = read_case_list(args.eval_list)[:args.figure_cases]
        for labelnum in args.labelnum:
            path = args.out / f"comparison{suffix}_{labelnum}.png"
            pair = [r for r in runs if r.labelnum == labelnum and r.seed == args.seeds[0]]  # in METHODS' order
            models = [(METHODS[r.method].label, run_folder_path(args.dataset_name, r.exp, labelnum, r.method)
                       / f"iter_{r.iterations}.pth", r.eval_dir(args.out, teacher=False)) for r in pair]
            if not all(checkpoint.is_file() for _, checkpoint, _ in models):
                if path.is_file():
                    print(f"{path.name}: kept as it is (the checkpoints of seed {args.seeds[0]} are not here)")
                    names.append(path)
                else:
                    print(f"{path.name}: not drawn (the checkpoints of seed {args.seeds[0]} are not here)")
                continue
            title = f"{args.dataset_name}, {labelnum} labeled, seed {args.seeds[0]}: last checkpoints"
            names.append(plots.comparison_figure(models, root=args.root_path, case_ids=cases, gpu=args.gpu, title=title,
                                                   path=path))
    return [n.name for n in names]


if __name__ == "__main__":
    main()
