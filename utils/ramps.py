"""Ramp-up and ramp-down schedules of Laine & Aila (2017), used by Mean Teacher.

Each takes the current position and the ramp length in the same unit (epochs,
or iterations // 150 as in the LA scripts) and returns a factor in [0, 1].
"""
import math


def sigmoid_rampup(current: float, rampup_length: float) -> float:
    """exp(-5 (1 - t)^2) with t = current / rampup_length clipped to [0, 1]."""
    if rampup_length == 0:
        return 1.0
    t = min(max(current, 0.0), rampup_length) / rampup_length
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def linear_rampup(current: float, rampup_length: float) -> float:
    """t = current / rampup_length, clipped to [0, 1]."""
    if rampup_length == 0:
        return 1.0
    return float(min(max(current / rampup_length, 0.0), 1.0))


def cosine_rampdown(current: float, rampdown_length: float) -> float:
    """0.5 (cos(pi t) + 1) with t = current / rampdown_length, for 0 <= current <= length."""
    if not 0 <= current <= rampdown_length:
        raise ValueError(f"cosine_rampdown needs 0 <= current <= {rampdown_length}, got {current}")
    return float(0.5 * (math.cos(math.pi * current / rampdown_length) + 1))
