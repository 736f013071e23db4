"""dataloaders/resampling.py: MSD cases at different voxel sizes are trained at one spacing
(the median, or --target_spacing); uniform data is read as it is."""
import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import log_lines, run_script
from dataloaders.datasets import data_folder
from dataloaders.resampling import resample, training_target
from utils.checkpoint import load_checkpoint


def test_target_is_the_median_only_where_spacings_differ():
    alike = [(1.0, 1.0, 1.0), (1.05, 1.0, 0.98)]
    assert training_target(alike) is None  # within 10 %: nothing is resampled
    assert training_target(alike, requested=(0.5, 0.5, 0.5)) == (0.5, 0.5, 0.5)
    assert training_target([(1, 1, 1), (1, 1, 1), (1, 1, 3)]) == (1.0, 1.0, 1.0)


def test_resample_keeps_the_extent_and_the_label_values():
    label = np.zeros((10, 8, 6), np.uint8)
    label[2:6, 2:4, 1:3] = 2
    finer = resample(label, (1.0, 1.0, 2.0), (1.0, 1.0, 1.0), is_label=True)
    assert finer.shape == (10, 8, 12) and finer.dtype == np.uint8
    assert set(np.unique(finer).tolist()) == {0, 2}
    assert (finer == 2).sum() == 2 * (label == 2).sum()  # each slice doubled
    image = np.linspace(0, 1, 10 * 8 * 6, dtype=np.float32).reshape(10, 8, 6)
    coarser = resample(image, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), is_label=False)
    assert coarser.shape == (5, 4, 3) and coarser.dtype == np.float32
    assert coarser[0, 0, 0] == pytest.approx(image[0, 0, 0]) and coarser[1, 1, 1] == pytest.approx(image[2, 2, 2])


def test_a_round_trip_keeps_the_extent_and_the_border():
    """Probabilities taken to a coarser grid and back: each voxel's still sum to 1, and a
    constant field comes back constant up to the far border (its value there, not zero)."""
    rng = np.random.default_rng(1)
    probabilities = rng.random((3, 20, 16, 10)).astype(np.float32)
    probabilities /= probabilities.sum(0)
    coarse = [resample(p, (1.0, 1.0, 1.0), (3.0, 3.0, 3.0), is_label=False) for p in probabilities]
    assert coarse[0].shape == (7, 5, 3)
    back = np.stack([resample(p, (3.0, 3.0, 3.0), (1.0, 1.0, 1.0), is_label=False, shape=(20, 16, 10))
                     for p in coarse])
    assert back.shape == (3, 20, 16, 10)
    np.testing.assert_allclose(back.sum(0), 1, atol=1e-5)
    constant = resample(np.full((7, 5, 3), 0.75, np.float32), (3.0, 3.0, 3.0), (1.0, 1.0, 1.0), is_label=False,
                        shape=(20, 16, 10))
    np.testing.assert_allclose(constant, 0.75, atol=1e-6)


def msd_folder(root, spacings):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "blob"},
                                                   "modality": {"0": "MRI"}}))
    rng = np.random.default_rng(0)
    for number, spacing in enumerate(spacings):
        shape = (40, 40, 24 if spacing[2] == 1 else 12)
        image = rng.normal(size=shape).astype(np.float32)
        label = np.zeros(shape, np.uint8)
        label[10:30, 10:30, shape[2] // 4: 3 * shape[2] // 4] = 1
        image[label == 1] += 3
        for folder, volume in (("imagesTr", image), ("labelsTr", label)):
            nii = nib.Nifti1Image(volume, np.diag([*spacing, 1.0]))
            nib.save(nii, root / folder / f"case_{number}.nii.gz")
    return root


def test_a_dataset_of_mixed_spacings_trains_at_the_median(tmp_path):
    root = msd_folder(tmp_path / "mixed", [(1, 1, 1), (1, 1, 1), (1, 1, 2)])
    data = data_folder(root)
    assert data.read("case_2")[0].shape == (40, 40, 12)  # read as stored, without a target
    proc = run_script("train_sup.py", ["--dataset_name", "Hippocampus", "--root_path", root, "--patch_size", "32", "32",
                                       "16", "--labeled_bs", "2", "--max_iterations", "1", "--exp", "mixed"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "model" / "Hippocampus_mixed_3_labeled" / "SUP"
    assert any("1 of 3 training cases resampled to 1 x 1 x 1 mm (their median spacing)" in line
               for line in log_lines(run, ""))
    assert load_checkpoint(run / "iter_1.pth")["spacing"] == [1.0, 1.0, 1.0]
    # inference.py predicts the coarse case at the training voxel size and scores it on its own grid
    (root / "case_2.list").write_text("case_2\n")
    evaluated = run_script("inference.py", ["--dataset_name", "Hippocampus", "--root_path", root, "--exp", "mixed",
                                            "--labelnum", "3", "--model", "SUP", "--test_list", root / "case_2.list",
                                            "--allow_overlap"], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    log = (run / "test" / "log.txt").read_text()
    assert "case_2: predicted at the training voxel size (1.0, 1.0, 1.0) mm (its own: (1.0, 1.0, 2.0))" in log
    resampled = dataclasses.replace(data, target_spacing=(1.0, 1.0, 1.0))
    image, label = resampled.read("case_2")
    assert image.shape == label.shape == (40, 40, 24)
    assert resampled.read("case_0")[0].shape == (40, 40, 24)


def test_target_spacing_is_refused_for_h5_data(tmp_path, syn):
    proc = run_script("train_sup.py", ["--dataset_name", "Synthetic", "--root_path", syn.root,
                                       "--target_spacing", "1", "1", "1", "--max_iterations", "1"], tmp_path)
    assert proc.returncode == 2 and "--target_spacing is for NIfTI data" in proc.stderr
