"""utils/uncertainty.py against hand-computed cases."""
import math

import pytest
import torch

from utils.ema import clipped_noise
from utils.uncertainty import (masked_softmax_mse, mean_teacher_probabilities, predictive_entropy,
                               uncertainty_threshold)


def test_entropy_of_certain_and_uniform_voxels():
    probs = torch.stack([torch.tensor([[1.0, 0.5]]), torch.tensor([[0.0, 0.5]])], dim=1).reshape(1, 2, 2, 1, 1)
    entropy = predictive_entropy(probs)
    assert entropy.shape == (1, 1, 2, 1, 1)
    assert entropy[0, 0, 0].item() == pytest.approx(-math.log(1 + 1e-6), abs=1e-6)  # certain: about 0
    assert entropy[0, 0, 1].item() == pytest.approx(-math.log(0.5 + 1e-6), rel=1e-5)  # uniform: ln 2


def test_threshold_ramps_from_three_quarters_of_ln2_to_ln2():
    assert uncertainty_threshold(0, 6000, 2) == pytest.approx(0.75 * math.log(2) + 0.25 * math.log(2) * math.exp(-5))
    assert uncertainty_threshold(6000, 6000, 2) == pytest.approx(math.log(2))
    assert uncertainty_threshold(3000, 6000, 3) == pytest.approx((0.75 + 0.25 * math.exp(-5 * 0.25)) * math.log(3))


def test_masked_mse_averages_over_the_certain_voxels_only():
    student = torch.zeros(1, 2, 2, 1, 1)  # softmax 0.5 / 0.5 everywhere
    teacher = torch.zeros(1, 2, 2, 1, 1)
    teacher[0, 1, 1] = math.log(3.0)  # voxel 1: teacher 0.25 / 0.75
    certain = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1, 1)
    assert masked_softmax_mse(student, teacher, certain).item() == pytest.approx(0.0)  # voxel 1 is left out
    certain = torch.ones(1, 1, 2, 1, 1)
    # (0.25^2 + 0.25^2) over 2 classes x 2 voxels
    assert masked_softmax_mse(student, teacher, certain).item() == pytest.approx(2 * 0.0625 / (2 * 2))
    assert masked_softmax_mse(student, teacher, torch.zeros(1, 1, 2, 1, 1)).item() == 0.0  # nothing certain


def test_mean_of_noisy_passes_and_the_noise_clip():
    torch.manual_seed(0)
    noise = clipped_noise(torch.zeros(10000), 0.1)
    assert noise.abs().max().item() <= 0.2 + 1e-7 and noise.std().item() == pytest.approx(0.1, rel=0.15)
    calls = []

    def teacher(x):  # logits that depend on the input: class 1 gets the voxel value
        calls.append(x.shape[0])
        return torch.cat([torch.zeros_like(x), x], dim=1)

    images = torch.zeros(3, 1, 2, 2, 2)
    probs = mean_teacher_probabilities(teacher, images, passes=8, noise_std=0.1)
    assert calls == [6, 6, 6, 6]  # 4 forward passes of the batch repeated twice
    assert probs.shape == (3, 2, 2, 2, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(3, 2, 2, 2))
    # without noise every pass is softmax(0, 0) = 0.5
    torch.testing.assert_close(mean_teacher_probabilities(teacher, images, passes=4, noise_std=0.0),
                               torch.full((3, 2, 2, 2, 2), 0.5))
    with pytest.raises(ValueError, match="multiple"):
        mean_teacher_probabilities(teacher, images, passes=3, noise_std=0.1)
