"""Several processes under torchrun (gloo on the CPU): each rank's slice of the batch, equal
models on every rank, one run folder written by rank 0, and resume."""
import csv
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import REPO, log_lines, script_env, training_batches
from dataloaders.case_lists import read_case_list
from dataloaders.check_data import check_cases
from dataloaders.datasets import data_folder
from networks.vnet import VNet
from dataloaders.samplers import EndlessBatchSampler, RankSlice, TwoStreamBatchSampler
from dataloaders.synthetic import generate_dataset
from utils.checkpoint import load_checkpoint
from utils.device import amp_dtype, memory_format_for
from utils.distributed import Ranks, ranks_from_environment
from utils.errors import UserError
from training.run_folder import read_scalars
from training.validation import Validator
from utils.checkpoint import VNET_CONFIG

LABELNUM, LABELED_BS, BATCH, RANKS = 4, 2, 4, 2
FLAGS = ["--patch_size", "32", "32", "16", "--labelnum", str(LABELNUM), "--batch_size", str(BATCH),
         "--labeled_bs", str(LABELED_BS), "--log_every", "1", "--save_every", "2", "--snapshot_every", "100"]


# ------------------------------------------------------------------ the sampler slices
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_rank_slices_make_up_the_whole_batch(world_size):
    whole = TwoStreamBatchSampler(range(6), range(6, 20), 4 * world_size, 2 * world_size, seed=5)
    slices = [RankSlice(whole, rank, world_size) for rank in range(world_size)]
    for n in range(12):
        parts = [s.positioned_batch(n) for s in slices]
        assert all(len(p) == 4 for p in parts)
        labeled = [i for p in parts for i, _ in p[:2]]
        unlabeled = [i for p in parts for i, _ in p[2:]]
        expected = whole.positioned_batch(n)
        assert labeled == [i for i, _ in expected[:2 * world_size]]
        assert unlabeled == [i for i, _ in expected[2 * world_size:]]
        assert len(set(labeled)) == len(labeled), "a labeled case twice in one iteration"
        # positions are those of the whole batch, so augmentations match one big process
        assert sorted(pos for p in parts for _, pos in p) == list(range(4 * world_size))


def test_endless_sampler_passes_whole_batch_positions():
    whole = TwoStreamBatchSampler(range(4), range(4, 10), 8, 4, seed=1)
    items = next(iter(EndlessBatchSampler(RankSlice(whole, 1, 2), start=3, seeded=True)))
    assert [(i, pos) for i, n, pos in items] == [(i, pos) for i, pos in whole.positioned_batch(3)[2:4] +
                                                 whole.positioned_batch(3)[6:8]]
    assert {n for _, n, _ in items} == {3}


def test_slice_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="does not split over 2 ranks"):
        RankSlice(TwoStreamBatchSampler(range(4), range(4, 9), 3, 2, seed=0), 0, 2)


def test_too_few_labeled_cases_for_all_ranks_is_a_user_error(tiny_cases):
    with pytest.raises(UserError, match=r"cannot fill --labeled_bs 2 places per batch on each of 2 processes"):
        training_batches(tiny_cases.root, tiny_cases.ids[:3], tiny_cases.ids[3:], 4, 2, (32, 32, 16), 3,
                              seed=0, device=torch.device("cpu"), on_device=True, rank=0, world_size=2)


@pytest.mark.parametrize("on_device", [True, False])
def test_ranks_batches_are_slices_of_the_one_process_batch(tiny_cases, on_device):
    """Images and labels too (crops and flips included), on both data paths."""
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:]
    cpu, patch = torch.device("cpu"), (16, 16, 8)
    whole = training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, patch, 3, seed=4, device=cpu,
                                  on_device=True)
    ranks = [training_batches(tiny_cases.root, labeled, unlabeled, 2, 1, patch, 3, seed=4, device=cpu,
                                   on_device=on_device, num_workers=0, start_batch=0, rank=r, world_size=2)
             for r in range(2)]
    for _ in range(5):
        image, label = next(whole)
        (image0, label0), (image1, label1) = next(ranks[0]), next(ranks[1])
        order = [image0[:1], image1[:1], image0[1:], image1[1:]]
        assert torch.equal(torch.cat(order), image)
        assert torch.equal(torch.cat([label0[:1], label1[:1], label0[1:], label1[1:]]), label)


# ------------------------------------------------------------------ one process: no-ops
def test_single_process_is_unchanged(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ranks = ranks_from_environment()
    assert ranks == Ranks(0, 1, 0) and ranks.is_main and not ranks.distributed
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))
    assert ranks.wrap(model, torch.device("cpu")) is model
    assert ranks.sync_batchnorm(model, torch.device("cpu")) is model
    before = model.state_dict()["1.running_mean"].clone()
    ranks.average_buffers(model)
    assert torch.equal(model.state_dict()["1.running_mean"], before)
    assert ranks.gather({"a": 1}) == [{"a": 1}]
    state = torch.get_rng_state()
    ranks.reseed(3)
    assert torch.equal(torch.get_rng_state(), state), "one process keeps its random stream"


def test_bad_environment_is_a_user_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="start with torchrun"):
        ranks_from_environment()


# ------------------------------------------------------------------ torchrun end to end
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_data")
    volumes = generate_dataset(out, num_train=12, num_test=2, size=(56, 56, 32))
    ids = (out / "train.list").read_text().split()  # validation cases apart from training and test cases
    (out / "dev_train.list").write_text("\n".join(ids[:10]) + "\n")
    (out / "dev_val.list").write_text("\n".join(ids[10:]) + "\n")
    return ["--dataset_name", "Synthetic", "--root_path", str(volumes), "--val_list", str(out / "dev_val.list"),
            "--val_every", "3", "--train_list", str(out / "dev_train.list")]


def torchrun(script, args, cwd, probe_dir=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**script_env(), "OMP_NUM_THREADS": "1"}
    target = [str(REPO / "tests" / "helpers" / "torchrun_probe.py"), str(probe_dir), script] if probe_dir else [str(REPO / script)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(RANKS),
           *target, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def mt_run(data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ddp_mt")
    probe = cwd / "probe"
    probe.mkdir()
    torchrun("train_mean_teacher.py", [*data, *FLAGS, "--max_iterations", "6", "--exp", "ddp"], cwd, probe)
    return cwd, probe, cwd / "model" / f"Synthetic_ddp_{LABELNUM}_labeled" / "MT"


def test_ranks_draw_disjoint_labeled_slices_of_one_batch(mt_run):
    _, probe, _ = mt_run
    drawn = [json.loads((probe / f"rank{r}_batches.json").read_text()) for r in range(RANKS)]
    whole = TwoStreamBatchSampler(range(LABELNUM), range(LABELNUM, 10), BATCH * RANKS,
                                  (BATCH - LABELED_BS) * RANKS, seed=1337)
    for n in map(str, range(6)):
        labeled = [set(d[n][:LABELED_BS]) for d in drawn]
        assert not labeled[0] & labeled[1], f"iteration {n}: the ranks share a labeled case"
        assert all(i < LABELNUM for part in labeled for i in part)
        assert [i for d in drawn for i in d[n][:LABELED_BS]] + [i for d in drawn for i in d[n][LABELED_BS:]] \
            == whole.batch(int(n)), "the ranks together draw the batch of one process with twice the batch"


def test_students_and_teachers_are_equal_on_every_rank(mt_run):
    _, probe, folder = mt_run
    states = [torch.load(probe / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]
    assert tensors_equal(states[0]["student"], states[1]["student"])
    assert tensors_equal(states[0]["teacher"], states[1]["teacher"])
    assert not tensors_equal(states[0]["student"], states[0]["teacher"])
    saved = load_checkpoint(folder / "iter_6.pth")
    assert tensors_equal(saved["student"], states[0]["student"])
    assert tensors_equal(saved["teacher"], states[0]["teacher"])
    assert len(saved["rank_random_states"]) == RANKS


def test_rank_zero_alone_writes_one_run_folder(mt_run):
    cwd, _, folder = mt_run
    assert [p.name for p in (cwd / "model").iterdir()] == [folder.parent.name]
    assert sorted(p.name for p in folder.glob("*.pth")) == ["best_model.pth", "iter_6.pth", "latest.pth"]
    iterations = [line for line in log_lines(folder, "iteration") if "loss/total" in line]
    assert len(iterations) == 6 and len(set(iterations)) == 6, "one log line per iteration, from one rank"
    assert len(log_lines(folder, "done:")) == 1
    assert log_lines(folder, "DistributedDataParallel over 2 processes (gloo)")
    assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_logged_losses_are_the_mean_over_ranks(mt_run):
    _, probe, folder = mt_run
    per_rank = [json.loads((probe / f"rank{r}_losses.json").read_text()) for r in range(RANKS)]
    logged = read_scalars(folder)
    assert per_rank[0]["3"]["loss/total"] != pytest.approx(per_rank[1]["3"]["loss/total"], rel=1e-6)  # ranks differ
    for name in ("loss/total", "loss/supervised", "loss/consistency"):
        for iteration, value in logged[name].items():
            mean = sum(r[str(iteration)][name] for r in per_rank) / RANKS
            assert value == pytest.approx(mean, rel=1e-5, abs=1e-7), (name, iteration)


def test_validation_is_shared_by_the_ranks(data, mt_run):
    """Each rank scores one of the two validation cases; the gathered mean is what one process
    scoring both gets."""
    _, _, folder = mt_run
    assert len(log_lines(folder, "new best validation Dice")) >= 1
    logged = read_scalars(folder)["val/dice"]
    assert sorted(logged) == [3, 6]
    root, val_list = data[3], data[5]
    volumes = check_cases(data_folder(root), read_case_list(val_list))
    assert len(volumes) == 2
    cpu = torch.device("cpu")
    model = VNet(n_classes=2, **VNET_CONFIG).to(memory_format=memory_format_for(cpu, True))  # as the run's defaults
    model.load_state_dict(load_checkpoint(folder / "iter_6.pth")["student"])
    expected = Validator(volumes, patch_size=(32, 32, 16), num_classes=2, device=cpu,
                         amp_dtype=amp_dtype(cpu, None))(model)
    assert logged[6] == pytest.approx(expected, abs=1e-6)


def test_resume_under_torchrun_continues_exactly(data, mt_run, tmp_path):
    _, _, uninterrupted = mt_run
    args = [*data, *FLAGS, "--exp", "ddp"]
    torchrun("train_mean_teacher.py", [*args, "--max_iterations", "4"], tmp_path)
    torchrun("train_mean_teacher.py", [*args, "--max_iterations", "6", "--resume"], tmp_path)
    folder = tmp_path / "model" / f"Synthetic_ddp_{LABELNUM}_labeled" / "MT"
    assert log_lines(folder, "resumed after iteration 4")
    final, expected = load_checkpoint(folder / "iter_6.pth"), load_checkpoint(uninterrupted / "iter_6.pth")
    assert tensors_equal(final["student"], expected["student"])
    assert tensors_equal(final["teacher"], expected["teacher"])


def test_labeled_only_under_torchrun(data, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    torchrun("train_sup.py", [*data, *FLAGS, "--max_iterations", "3", "--exp", "ddp"], tmp_path, probe)
    states = [torch.load(probe / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]
    assert tensors_equal(states[0]["student"], states[1]["student"])
    drawn = [json.loads((probe / f"rank{r}_batches.json").read_text()) for r in range(RANKS)]
    for n in map(str, range(3)):
        assert len(drawn[0][n]) == LABELED_BS and not set(drawn[0][n]) & set(drawn[1][n])
    folder = tmp_path / "model" / f"Synthetic_ddp_{LABELNUM}_labeled" / "SUP"
    assert sorted(p.name for p in folder.glob("*.pth")) == ["best_model.pth", "iter_3.pth", "latest.pth"]


@pytest.mark.parametrize("script, model, extra", [("train_uamt.py", "UAMT", ["--uncertainty_passes", "2"]),
                                                  ("train_bcp.py", "BCP", ["--pretrain_iterations", "2"]),
                                                  ("train_admt.py", "ADMT", ["--switch_period", "2"])])
def test_uamt_bcp_and_admt_under_torchrun(script, model, extra, data, tmp_path):
    """Both ranks end with the same student and teacher (for BCP through both stages; for AD-MT
    both teachers, whose turns every rank takes alike), and one rank writes the run folder."""
    probe = tmp_path / "probe"
    probe.mkdir()
    torchrun(script, [*data, *FLAGS, "--max_iterations", "4", "--exp", "ddp", *extra], tmp_path, probe)
    states = [torch.load(probe / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]
    assert tensors_equal(states[0]["student"], states[1]["student"])
    assert tensors_equal(states[0]["teacher"], states[1]["teacher"])
    if model == "ADMT":
        assert tensors_equal(states[0]["teacher_b"], states[1]["teacher_b"])
        assert not tensors_equal(states[0]["teacher"], states[0]["teacher_b"])
        assert tensors_equal(states[0]["class_reach"], states[1]["class_reach"])  # one threshold per class for all
    folder = tmp_path / "model" / f"Synthetic_ddp_{LABELNUM}_labeled" / model
    assert tensors_equal(load_checkpoint(folder / "iter_4.pth")["student"], states[0]["student"])
    iterations = [line for line in log_lines(folder, "iteration") if "loss/total" in line]
    assert len(iterations) == 4 and log_lines(folder, "DistributedDataParallel over 2 processes (gloo)")
    if model == "BCP":
        assert len(log_lines(folder, "self-training from the pre-trained network of iteration 2")) == 1


def test_inference_splits_cases_over_ranks(data, mt_run):
    cwd, _, _ = mt_run
    flags = [*data[:4], "--test_list", data[-1], "--exp", "ddp", "--labelnum", LABELNUM, "--model", "MT",
             "--patch_size", "32", "32", "16", "--allow_overlap"]  # the training cases, to have 10 of them
    single = subprocess.run([sys.executable, str(REPO / "inference.py"), *map(str, flags), "--out", "one"], cwd=cwd,
                            env=script_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    torchrun("inference.py", [*flags, "--out", "two"], cwd)

    def rows(name):
        with open(cwd / name / "metrics.csv") as f:
            return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(f)]

    assert rows("one") == rows("two") and len(rows("two")) == 10  # every training case, in list order
    log = (cwd / "two" / "log.txt").read_text()
    assert "cases split over 2 processes" in log and log.count("Dice") >= 10
    summary = json.loads((cwd / "two" / "summary.json").read_text())
    assert summary["cases"] == 10
