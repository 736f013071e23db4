"""End to end on real MSD data: Mean Teacher for a few iterations on Hippocampus cases from
$HIPPO_ROOT (3 classes, NIfTI), then inference.py with per-class metrics."""
import csv
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import run_script
from utils.checkpoint import load_checkpoint

HIPPO_ROOT = os.environ.get("HIPPO_ROOT")
pytestmark = pytest.mark.skipif(not HIPPO_ROOT or not Path(HIPPO_ROOT).is_dir(),
                                reason="HIPPO_ROOT (the MSD Task04 folder) is not set")


def test_mean_teacher_and_inference_on_real_hippocampus_cases(tmp_path):
    root = Path(HIPPO_ROOT)
    ids = [line.strip() for line in (root / "dev_train.list").read_text().splitlines() if line.strip()]
    (tmp_path / "train.list").write_text("\n".join(ids[:4]) + "\n")
    (tmp_path / "test.list").write_text("\n".join(ids[4:6]) + "\n")
    common = ["--dataset_name", "Hippocampus", "--root_path", root, "--labelnum", "2", "--exp", "e2e"]
    trained = run_script("train_mean_teacher.py", [*common, "--train_list", tmp_path / "train.list",
                                                   "--max_iterations", "3", "--log_every", "1"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = tmp_path / "model" / "Hippocampus_e2e_2_labeled" / "MT"
    checkpoint = load_checkpoint(run / "iter_3.pth")
    assert checkpoint["network"]["n_classes"] == 3
    assert torch.isfinite(torch.stack([v.float().sum() for v in checkpoint["student"].values()])).all()

    evaluated = run_script("inference.py", [*common, "--test_list", tmp_path / "test.list", "--model", "MT"], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = list(csv.DictReader(open(run / "test" / "metrics.csv")))
    assert sorted((r["case"], r["class"]) for r in rows) == sorted((c, k) for c in ids[4:6] for k in ("1", "2"))
    summary = json.loads((run / "test" / "summary.json").read_text())
    assert summary["cases"] == 2
