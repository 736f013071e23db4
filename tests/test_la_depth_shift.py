"""benchmarks/la_depth_shift.py: shifting along Z moves the content and is undone exactly."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
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
