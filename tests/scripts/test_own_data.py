"""Your own data: unlabeled cases are images without labels (MSD: no file in labelsTr/, every
image of imagesTs/ and --unlabeled_dir; h5: no 'label' dataset), the labeled set defaults to
the cases with labels, and a run on such a folder computes exactly what the benchmark
protocol computes with the labels present and --labelnum: the unlabeled labels are never used."""
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import log_lines, run_script
from dataloaders.synthetic import generate_dataset

HIPPO_ROOT = os.environ.get("HIPPO_ROOT")
needs_hippocampus = pytest.mark.skipif(not HIPPO_ROOT or not Path(HIPPO_ROOT).is_dir(),
                                       reason="HIPPO_ROOT (the MSD Task04 folder) is not set")
SMALL = ["--batch_size", "4", "--labeled_bs", "2", "--log_every", "1", "--save_every", "100", "--val_every", "100"]


def msd_copy(target: Path, ids: list[str], labeled: list[str], *, images="imagesTr", unlabeled_dir=None,
             nnunet_names=False) -> Path:
    """An MSD folder with the images of ``ids`` from $HIPPO_ROOT and labels for ``labeled`` only;
    the unlabeled images go to ``images`` (imagesTr or imagesTs) or ``unlabeled_dir``."""
    source = Path(HIPPO_ROOT)
    (target / "imagesTr").mkdir(parents=True)
    (target / "labelsTr").mkdir()
    shutil.copy(source / "dataset.json", target)
    for case in ids:
        folder = target / "imagesTr" if case in labeled else (unlabeled_dir or target / images)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{case}_0000.nii.gz" if nnunet_names else f"{case}.nii.gz"
        shutil.copy(source / "imagesTr" / f"{case}.nii.gz", folder / name)
        if case in labeled:
            shutil.copy(source / "labelsTr" / f"{case}.nii.gz", target / "labelsTr")
    return target


def loss_lines(run: Path) -> list[str]:
    return [line for line in log_lines(run) if "loss/" in line]


def header_line(run: Path, fragment: str) -> str:
    lines = [line for line in log_lines(run, "") if fragment in line]
    assert lines, (run / "log.txt").read_text()
    return lines[0]


@pytest.fixture(scope="module")
def hippocampus_cases():
    ids = [line.strip() for line in (Path(HIPPO_ROOT) / "dev_train.list").read_text().splitlines() if line.strip()]
    return ids[:12]


@needs_hippocampus
def test_unlabeled_images_without_label_files_train_exactly_as_with_hidden_labels(tmp_path, hippocampus_cases):
    """The issue's proof: 12 images, labels for 4. Same losses, to the last digit, as the
    benchmark protocol on the same cases with all 12 labels present and --labelnum 4."""
    ids, labeled = hippocampus_cases, hippocampus_cases[:4]
    all_labels = msd_copy(tmp_path / "all", ids, ids)
    some_labels = msd_copy(tmp_path / "some", ids, labeled)
    order = tmp_path / "order.list"
    order.write_text("\n".join(ids) + "\n")  # the labeled cases first, as --labelnum needs
    common = ["--dataset_name", "Hippocampus", "--max_iterations", "4", "--deterministic", "1", *SMALL]
    benchmark = run_script("train_mean_teacher.py", [*common, "--root_path", all_labels, "--train_list", order,
                                                     "--labelnum", "4", "--exp", "hidden"], tmp_path)
    assert benchmark.returncode == 0, benchmark.stderr[-3000:]
    own = run_script("train_mean_teacher.py", [*common, "--root_path", some_labels, "--exp", "own"], tmp_path)
    assert own.returncode == 0, own.stderr[-3000:]

    hidden_run = tmp_path / "model" / "Hippocampus_hidden_4_labeled" / "MT"
    own_run = tmp_path / "model" / "Hippocampus_own_4_labeled" / "MT"  # named by the 4 cases with labels
    assert len(loss_lines(own_run)) == 4 and loss_lines(own_run) == loss_lines(hidden_run)
    assert "4 labeled cases, 8 unlabeled (8 with labels not used: --labelnum 4)" in header_line(hidden_run, "labeled case")
    assert "4 labeled cases, 8 unlabeled (8 without labels)" in header_line(own_run, "labeled case")
    config = json.loads((own_run / "config.json").read_text())["args"]
    assert config["labelnum"] == 4 and config["labels_from_files"] and config["train_list"] is None


@needs_hippocampus
def test_images_ts_unlabeled_dir_and_nnunet_names_are_unlabeled_cases(tmp_path, hippocampus_cases):
    ids, labeled = hippocampus_cases[:6], hippocampus_cases[:3]
    in_ts = msd_copy(tmp_path / "ts", ids, labeled, images="imagesTs", nnunet_names=True)
    extra = tmp_path / "more_scans"
    elsewhere = msd_copy(tmp_path / "elsewhere", ids, labeled, unlabeled_dir=extra)
    common = ["--dataset_name", "Hippocampus", "--max_iterations", "1", *SMALL]
    proc = run_script("train_mean_teacher.py", [*common, "--root_path", in_ts, "--exp", "ts"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "model" / "Hippocampus_ts_3_labeled" / "MT"
    assert "3 labeled cases, 3 unlabeled (3 without labels)" in header_line(run, "labeled case")
    # --check_data finds the same in another folder (--unlabeled_dir), lists the two sets apart
    # and checks the unlabeled images
    checked = run_script("train_mean_teacher.py", [*common, "--root_path", elsewhere, "--unlabeled_dir", extra,
                                                   "--check_data"], tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "3 labeled cases, 3 unlabeled (3 without labels)" in checked.stdout
    assert "labeled: all cases load and agree" in checked.stdout
    assert "unlabeled: all cases load (images only: their labels are not read)" in checked.stdout
    # labeled-only training uses the labeled set alone, and says so
    sup = run_script("train_sup.py", [*common, "--root_path", in_ts, "--exp", "ts"], tmp_path)
    assert sup.returncode == 0, sup.stderr[-3000:]
    assert "the unlabeled ones are not used" in header_line(tmp_path / "model" / "Hippocampus_ts_3_labeled" / "SUP",
                                                              "labeled case")


@needs_hippocampus
def test_labelnum_over_an_unlabeled_case_and_a_broken_unlabeled_image_are_one_line(tmp_path, hippocampus_cases):
    ids, labeled = hippocampus_cases[:6], hippocampus_cases[:3]
    root = msd_copy(tmp_path / "some", ids, labeled)
    common = ["--dataset_name", "Hippocampus", "--root_path", root, "--max_iterations", "1", *SMALL]
    proc = run_script("train_mean_teacher.py", [*common, "--labelnum", "4"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"--labelnum 4: 1 of the first 4 training cases have no label (e.g. {ids[3]}" in proc.stderr
    # an unlabeled image that is truncated is found before training, named by its file
    broken = root / "imagesTr" / f"{ids[5]}.nii.gz"
    broken.write_bytes(broken.read_bytes()[:300])
    proc = run_script("train_mean_teacher.py", common, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "1 problem(s) in the data" in proc.stderr and f"case {ids[5]}:" in proc.stderr and str(broken) in proc.stderr
    assert not (tmp_path / "model").exists()


def test_h5_cases_without_a_label_are_unlabeled(tmp_path):
    """The h5 layout: a case file with an image and no label is an unlabeled case; without a
    list file every case folder but those of test.list is a training case. The DataLoader path
    (--data_on_device 0) reads the unlabeled images alone too."""
    volumes = Path(generate_dataset(tmp_path / "data", num_train=6, num_test=1, size=(48, 48, 24)))
    for case in sorted(p.name for p in volumes.iterdir())[3:]:
        with h5py.File(volumes / case / "mri_norm2.h5", "r+") as f:
            del f["label"]
    (tmp_path / "data" / "train.list").unlink()
    common = ["--dataset_name", "Synthetic", "--root_path", volumes, "--patch_size", "32", "32", "16",
              "--max_iterations", "2", "--data_on_device", "0", "--num_workers", "1", *SMALL]
    proc = run_script("train_mean_teacher.py", [*common, "--exp", "h5"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "model" / "Synthetic_h5_3_labeled" / "MT"
    assert ("3 labeled cases, 3 unlabeled (3 without labels); the 1 cases of test.list left out"
            in header_line(run, "labeled case"))
    assert np.isfinite([float(line.split("loss/total ")[1].split(",")[0]) for line in loss_lines(run)]).all()
