"""experiments/2026-11-26-cpu-la-depth/la_depth_shift.py: shifting along Z moves the content and is undone exactly."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "2026-11-26-cpu-la-depth"))
import la_depth_shift  # noqa: E402
from utils.errors import UserError  # noqa: E402


@pytest.mark.parametrize("s", [-3, 0, 2, 5])
def test_shift_moves_slices_and_repeats_the_edge(s):
    image = np.arange(2 * 2 * 8, dtype=np.float32).reshape(2, 2, 8)
    out = la_depth_shift.shift_along_z(image, s)
    assert out.shape == image.shape
    if s >= 0:
        np.testing.assert_array_equal(out[:, :, s:], image[:, :, :8 - s])
        assert (out[:, :, :s] == image[:, :, :1]).all()
    else:
        np.testing.assert_array_equal(out[:, :, :8 + s], image[:, :, -s:])
        assert (out[:, :, 8 + s:] == image[:, :, -1:]).all()


def test_shift_as_deep_as_the_volume_is_an_error():
    with pytest.raises(UserError, match="not smaller"):
        la_depth_shift.shift_along_z(np.zeros((2, 2, 4)), 4)


def test_z_range():
    label = np.zeros((3, 3, 10), np.uint8)
    label[1, 1, 3] = label[0, 2, 7] = 1
    assert la_depth_shift.z_range(label) == (3, 7)
    with pytest.raises(UserError):
        la_depth_shift.z_range(np.zeros((2, 2, 2)))


def test_main_tests_each_checkpoint_in_turn(syn, tmp_path, capsys):
    from conftest import TINY, run_script
    args = ["--dataset_name", "Synthetic", "--root_path", syn.root, "--train_list", syn.train_list, *TINY,
            "--max_iterations", "2", "--save_every", "1", "--snapshot_every", "1"]
    proc = run_script("train_sup.py", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "model" / "Synthetic_vnet_2_labeled" / "SUP"
    checkpoints = [str(folder / "iter_1.pth"), str(folder / "iter_2.pth")]
    la_depth_shift.main(["--root_path", str(syn.root), "--checkpoint", *checkpoints, "--cases", *syn.test_ids,
                         "--shifts", "0", "2", "--patch_size", "32", "32", "16", "--stride_xy", "16",
                         "--stride_z", "8", "--gpu", "", "--train_list", str(syn.train_list)])
    out = capsys.readouterr().out
    assert out.count("training cases (6)") == 1
    for path in checkpoints:
        assert f"== {path} (student)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(tuple(c[:8] for c in syn.test_ids))]
    assert len(rows) == 2 * len(syn.test_ids)
    assert all(len(row) == 5 and all(0 <= float(d) <= 1 for d in row[3:]) for row in rows)
