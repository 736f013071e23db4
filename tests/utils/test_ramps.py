"""utils/ramps.py against the formulas written out by hand."""
import math

import pytest

from utils.ramps import cosine_rampdown, linear_rampup, sigmoid_rampup


@pytest.mark.parametrize("current,length", [(0, 40), (10, 40), (20, 40), (39, 40), (40, 40), (3.5, 7.0)])
def test_sigmoid_rampup_formula(current, length):
    t = current / length
    assert sigmoid_rampup(current, length) == pytest.approx(math.exp(-5 * (1 - t) ** 2), rel=1e-12)


def test_sigmoid_rampup_landmarks():
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(40, 40) == 1.0
    assert sigmoid_rampup(41, 40) == 1.0
    assert sigmoid_rampup(10_000, 40) == 1.0
    assert sigmoid_rampup(-5, 40) == pytest.approx(math.exp(-5))  # clipped at 0


def test_sigmoid_rampup_monotone_in_unit_interval():
    values = [sigmoid_rampup(i, 40) for i in range(0, 60)]
    assert all(0 < v <= 1 for v in values)
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_zero_length_ramps_are_one():
    assert sigmoid_rampup(0, 0) == 1.0
    assert sigmoid_rampup(5, 0) == 1.0
    assert linear_rampup(0, 0) == 1.0
    assert linear_rampup(3, 0) == 1.0


def test_sigmoid_rampup_returns_python_float():
    assert type(sigmoid_rampup(3, 10)) is float
    assert type(linear_rampup(3, 10)) is float
    assert type(cosine_rampdown(3, 10)) is float


@pytest.mark.parametrize("current,length,expected", [(0, 10, 0.0), (2.5, 10, 0.25), (10, 10, 1.0),
                                                     (12, 10, 1.0), (-1, 10, 0.0), (7, 14, 0.5)])
def test_linear_rampup(current, length, expected):
    assert linear_rampup(current, length) == pytest.approx(expected)


@pytest.mark.parametrize("current,length", [(0, 10), (2.5, 10), (5, 10), (7, 10), (10, 10)])
def test_cosine_rampdown_formula(current, length):
    expected = 0.5 * (math.cos(math.pi * current / length) + 1)
    assert cosine_rampdown(current, length) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_rampdown_landmarks():
    assert cosine_rampdown(0, 10) == 1.0
    assert cosine_rampdown(5, 10) == pytest.approx(0.5)
    assert cosine_rampdown(10, 10) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("current", [-1, 10.5, 100])
def test_cosine_rampdown_out_of_range_raises(current):
    with pytest.raises(ValueError):
        cosine_rampdown(current, 10)
