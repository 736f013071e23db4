"""End-to-end runs of train_uamt.py and train_bcp.py on the tiny synthetic dataset: they train,
log their own terms, resume exactly (BCP across its stage boundary too), and their checkpoints
evaluate with inference.py."""
import csv
from pathlib import Path

import pytest

from conftest import TINY, log_lines, run_script

UAMT, BCP = "train_uamt.py", "train_bcp.py"
# BCP pairs labeled with unlabeled patches: 2 labeled + 2 unlabeled, 2 pre-training iterations
BCP_TINY = ["--batch_size", "4", "--labeled_bs", "2", "--pretrain_iterations", "2"]
COMMON = [*TINY, "--max_iterations", "4", "--save_every", "2", "--snapshot_every", "2", "--log_every", "1"]


def data_args(syn):
    return ["--dataset_name", "Synthetic", "--root_path", syn.root, "--train_list", syn.train_list]


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def run_dir(cwd, model):
    return Path(cwd) / "model" / "Synthetic_vnet_2_labeled" / model


def scalars_csv(folder) -> dict:
    """{(iteration, name): value} of the run's scalars.csv, the last value of each."""
    with open(Path(folder) / "scalars.csv", newline="") as f:
        return {(int(r["iteration"]), r["name"]): r["value"] for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def uamt_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uamt")
    ok(run_script(UAMT, [*data_args(syn), *COMMON, "--uncertainty_passes", "4"], cwd))
    return cwd, run_dir(cwd, "UAMT")


@pytest.fixture(scope="module")
def bcp_run(syn, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bcp")
    ok(run_script(BCP, [*data_args(syn), *COMMON, *BCP_TINY], cwd))
    return cwd, run_dir(cwd, "BCP")


def test_uamt_logs_its_consistency_and_the_certain_fraction(uamt_run):
    _, folder = uamt_run
    lines = log_lines(folder)
    assert len(lines) == 4 and all("loss/consistency" in line and "train/certain_fraction" in line for line in lines)
    fractions = [v for (_, name), v in scalars_csv(folder).items() if name == "train/certain_fraction"]
    assert all(0.0 <= float(v) <= 1.0 for v in fractions)
    assert (folder / "iter_4.pth").is_file()


def test_bcp_pretrains_then_self_trains_from_the_pretrained_network(bcp_run):
    _, folder = bcp_run
    lines = log_lines(folder)
    assert [("labeled_outside" in line) for line in lines] == [False, False, True, True]
    assert log_lines(folder, "self-training from the pre-trained network of iteration 2")
    assert all("train/lr 0.01" in line for line in lines)
    # the share of unlabeled voxels the teacher calls foreground, logged in self-training only
    fractions = {i: float(v) for (i, name), v in scalars_csv(folder).items() if name == "train/pseudo_foreground"}
    assert sorted(fractions) == [3, 4] and all(0.0 <= v <= 1.0 for v in fractions.values())


@pytest.mark.parametrize("method", ["uamt", "bcp"])
def test_resume_continues_exactly(method, syn, uamt_run, bcp_run, tmp_path):
    """Resumed from the uninterrupted run's iter_2.pth (for BCP: the end of pre-training) in
    another folder: iterations 3 and 4 log the same losses, to the last digit."""
    script, extra, (_, whole) = ((UAMT, ["--uncertainty_passes", "4"], uamt_run) if method == "uamt"
                                 else (BCP, BCP_TINY, bcp_run))
    ok(run_script(script, [*data_args(syn), *COMMON, *extra, "--exp", "resumed", "--resume", whole / "iter_2.pth"],
                  tmp_path))
    folder = Path(tmp_path) / "model" / "Synthetic_resumed_2_labeled" / ("UAMT" if method == "uamt" else "BCP")
    resumed, uninterrupted = scalars_csv(folder), scalars_csv(whole)
    later = {k: v for k, v in uninterrupted.items() if k[1].startswith("loss") and k[0] > 2}
    assert len(later) >= 4 and all(resumed[k] == v for k, v in later.items())


@pytest.mark.parametrize("method", ["UAMT", "BCP"])
def test_their_checkpoints_evaluate_with_inference(method, syn, uamt_run, bcp_run):
    cwd, _ = uamt_run if method == "UAMT" else bcp_run
    proc = ok(run_script("inference.py", ["--dataset_name", "Synthetic", "--root_path", syn.root, "--test_list",
                                          syn.test_list, "--labelnum", "2", "--model", method, "--teacher",
                                          "--patch_size", "32", "32", "16"], cwd))
    assert "written to" in proc.stdout


def test_a_bcp_checkpoint_segments_new_scans_with_predict(syn, bcp_run, tmp_path):
    cwd, folder = bcp_run
    scan = syn.root / syn.test_list.read_text().split()[0] / "mri_norm2.h5"
    proc = ok(run_script("predict.py", ["-i", scan, "-o", tmp_path / "out", "--checkpoint", folder / "iter_4.pth",
                                        "--teacher", "--patch_size", "32", "32", "16"], cwd))
    assert (tmp_path / "out" / f"{scan.parent.name}.nii.gz").is_file(), proc.stdout


@pytest.mark.parametrize("script,flags,message", [
    (BCP, ["--batch_size", "4", "--labeled_bs", "1"], "--labeled_bs must be even"),
    (BCP, [*BCP_TINY[:4], "--pretrain_iterations", "5"], "--pretrain_iterations must be between 0"),
    (BCP, [*BCP_TINY, "--mask_ratio", "1.5"], "--mask_ratio must be between 0 and 1"),
    (UAMT, ["--uncertainty_passes", "3"], "--uncertainty_passes must be an even number"),
    (UAMT, ["--threshold_start", "0.9", "--threshold_end", "0.5"], "--threshold_start and --threshold_end"),
    (UAMT, ["--consistency_type", "kl"], "UA-MT's masked consistency"),
])
def test_bad_method_flags_are_one_error_line(script, flags, message, syn, tmp_path):
    proc = run_script(script, [*data_args(syn), *COMMON, *flags], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr, proc.stderr


def test_another_methods_checkpoint_is_not_resumed(syn, uamt_run, tmp_path):
    """A UA-MT checkpoint has a teacher, like Mean Teacher's, but is refused by train_mean_teacher.py."""
    _, folder = uamt_run
    proc = run_script("train_mean_teacher.py", [*data_args(syn), *COMMON, "--exp", "other", "--max_iterations", "6",
                                                "--resume", folder / "iter_2.pth"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is a UA-MT checkpoint and this is Mean Teacher training" in proc.stderr, proc.stderr
