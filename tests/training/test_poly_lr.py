"""training/schedule.py: AD-MT's polynomial learning-rate decay."""
import pytest

from training.schedule import poly_lr_at


def test_poly_lr_at_start_half_and_end():
    assert poly_lr_at(0, 0.01, 1000) == 0.01
    assert poly_lr_at(500, 0.01, 1000) == pytest.approx(0.01 * 0.5 ** 0.9, rel=1e-12)
    assert poly_lr_at(1000, 0.01, 1000) == 0.0


def test_poly_lr_at_by_hand_and_power():
    assert poly_lr_at(1, 0.01, 4) == pytest.approx(0.01 * 0.75 ** 0.9, rel=1e-12)
    assert poly_lr_at(3, 0.1, 4, power=2.0) == pytest.approx(0.1 * 0.25 ** 2, rel=1e-12)
    assert poly_lr_at(250, 0.02, 1000, power=1.0) == pytest.approx(0.015, rel=1e-12)


def test_poly_lr_decreases_and_never_goes_negative():
    values = [poly_lr_at(i, 0.01, 100) for i in range(0, 101)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert poly_lr_at(150, 0.01, 100) == 0.0  # past the end: 0, no complex number or NaN
