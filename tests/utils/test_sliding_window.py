"""utils/sliding_window.py: window placement and whole-volume prediction."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.bench_inference import plain_predict  # the original UA-MT test_single_case

from utils.sliding_window import sliding_window_predict, window_counts, window_grid, window_starts

CPU = torch.device("cpu")


def covered(starts, patch):
    hit = set()
    for s in starts:
        hit.update(range(s, s + patch))
    return hit


@pytest.mark.parametrize("patch", [16, 32, 7])
@pytest.mark.parametrize("stride_div", [1, 2, 4])
def test_window_starts_cover_every_voxel(patch, stride_div):
    stride = max(patch // stride_div, 1)
    for size in range(patch, 3 * patch + 5):
        starts = window_starts(size, patch, stride)
        assert starts[0] == 0
        assert starts[-1] == size - patch, "last window flush with the border"
        assert covered(starts, patch) == set(range(size))
        assert all(b > a for a, b in zip(starts, starts[1:])), starts
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))
        assert all(0 <= s <= size - patch for s in starts)


def test_window_starts_by_hand():
    assert window_starts(112, 112, 18) == [0]
    assert window_starts(100, 112, 18) == [0]
    assert window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert window_starts(41, 16, 8) == [0, 8, 16, 24, 25]
    assert window_starts(20, 16, 16) == [0, 4]


def test_window_starts_stride_larger_than_patch():
    try:
        starts = window_starts(100, 32, 48)
    except ValueError:
        return
    assert covered(starts, 32) == set(range(100))


def test_window_grid_is_product():
    grid = window_grid((40, 16, 20), (16, 16, 8), (8, 8, 4))
    assert grid == list(itertools.product([0, 8, 16, 24], [0], [0, 4, 8, 12]))


class PointwiseLogits(nn.Module):
    """logits_c = w_c * x + b_c voxel by voxel (a 1x1x1 conv with fixed weights); records its inputs."""

    def __init__(self, w=(1.5, -0.5, 0.25), b=(0.0, 0.3, -1.0)):
        super().__init__()
        self.conv = nn.Conv3d(1, len(w), 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(w).reshape(-1, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor(b))
        self.w, self.b = np.array(w), np.array(b)
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return self.conv(x)

    def expected(self, image):
        logits = self.w[:, None, None, None] * np.asarray(image, np.float64)[None] + self.b[:, None, None, None]
        e = np.exp(logits - logits.max(0, keepdims=True))
        return e / e.sum(0, keepdims=True)


def volume(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * 3


@pytest.mark.parametrize("shape", [(40, 37, 20), (16, 16, 8), (10, 20, 5), (9, 9, 9)])
@pytest.mark.parametrize("sw_batch", [1, 4])
def test_pointwise_model_gives_pointwise_softmax(shape, sw_batch):
    model = PointwiseLogits().eval()
    image = volume(shape)
    probs, labels = sliding_window_predict(model, image, patch_size=(16, 16, 8), stride_xy=8, stride_z=4, num_classes=3,
                                          device=CPU, sw_batch=sw_batch)
    assert probs.shape == (3, *shape) and probs.dtype == torch.float32
    assert labels.shape == shape and labels.dtype == torch.int64
    expected = model.expected(image)
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(0).numpy(), 1.0, atol=1e-5)
    assert torch.equal(labels, probs.argmax(0))
    # the labels agree with the hand computation wherever the top class is not a near tie
    top2 = np.sort(expected, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    np.testing.assert_array_equal(labels.numpy()[clear], expected.argmax(0)[clear])
    # every batch of windows is (n <= sw_batch, 1, *patch)
    padded = tuple(max(s, p) for s, p in zip(shape, (16, 16, 8)))
    n_windows = len(window_grid(padded, (16, 16, 8), (8, 8, 4)))
    assert sum(x.shape[0] for x in model.inputs) == n_windows
    assert all(x.shape[1:] == (1, 16, 16, 8) and x.shape[0] <= sw_batch for x in model.inputs)


def test_smaller_volume_is_zero_padded_centered():
    model = PointwiseLogits().eval()
    image = volume((10, 16, 5)) + 100  # all far from zero
    sliding_window_predict(model, image, patch_size=(16, 16, 8), stride_xy=8, stride_z=4, num_classes=3, device=CPU)
    (window,) = model.inputs
    w = window[0, 0].numpy()
    assert (w[:3] == 0).all() and (w[13:] == 0).all()           # x: 6 missing -> 3 before, 3 after
    assert (w[:, :, :1] == 0).all() and (w[:, :, 6:] == 0).all()  # z: 3 missing -> 1 before, 2 after
    np.testing.assert_array_equal(w[3:13, :, 1:6], image)


def test_tensor_input_and_constant_model():
    class Constant(nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[2:])
            out[:, 1] = np.log(3.0)  # softmax = (1/4, 3/4) everywhere
            return out

    image = torch.from_numpy(volume((33, 20, 12)))
    probs, labels = sliding_window_predict(Constant(), image, patch_size=(16, 16, 8), stride_xy=5, stride_z=3,
                                          num_classes=2, device=CPU)
    np.testing.assert_allclose(probs[0].numpy(), 0.25, rtol=1e-6)
    np.testing.assert_allclose(probs[1].numpy(), 0.75, rtol=1e-6)
    assert (labels == 1).all()


def test_averaging_of_overlapping_windows():
    """A model that says class 1 only in the first half (along x) of each window: the averaged
    probability at a voxel is the fraction of its windows that have it in their first half."""
    class FirstHalf(nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[2:])
            out[:, 1, : x.shape[2] // 2] = 50.0
            out[:, 0, x.shape[2] // 2:] = 50.0
            return out

    size, patch, stride = 24, 16, 4
    probs, _ = sliding_window_predict(FirstHalf(), np.zeros((size, 16, 8), np.float32), patch_size=(patch, 16, 8),
                                      stride_xy=stride, stride_z=8, num_classes=2, device=CPU)
    starts = [0, 4, 8]
    for x in range(size):
        windows = [s for s in starts if s <= x < s + patch]
        expected = sum(x - s < patch // 2 for s in windows) / len(windows)
        np.testing.assert_allclose(probs[1, x].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("shape, patch, strides", [((40, 37, 20), (16, 16, 8), (8, 8, 4)),
                                                   ((16, 33, 9), (16, 16, 8), (5, 5, 3)),
                                                   ((31, 17, 8), (16, 16, 8), (16, 16, 8))])
def test_window_counts_match_the_grid(shape, patch, strides):
    """Every voxel is covered, and the separable count equals counting window by window."""
    expected = np.zeros(shape, np.float32)
    for corner in window_grid(shape, patch, strides):
        expected[tuple(slice(c, c + p) for c, p in zip(corner, patch))] += 1
    counts = window_counts(shape, patch, strides)
    np.testing.assert_array_equal(counts, expected)
    assert counts.min() >= 1


class SmallConvNet(nn.Module):
    """A window-position-dependent network (3x3x3 convs with zero padding), so that the
    averaging over overlapping windows matters."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, classes, 3, padding=1))

    def forward(self, x):
        return self.net(x) * 3


@pytest.mark.parametrize("shape, strides", [((37, 30, 19), (7, 3)), ((12, 20, 6), (5, 2)), ((16, 16, 8), (4, 4))])
def test_same_as_original_ua_mt(shape, strides):
    model = SmallConvNet().eval()
    image = volume(shape, seed=3)
    probs, labels = sliding_window_predict(model, image, patch_size=(16, 16, 8), stride_xy=strides[0],
                                          stride_z=strides[1], num_classes=3, device=CPU, sw_batch=5)
    ref_labels, ref_probs = plain_predict(model, image, (16, 16, 8), *strides, 3, CPU)
    assert probs.shape == ref_probs.shape and labels.shape == ref_labels.shape == shape
    # Batched and single-window convolutions may take different CPU kernels (CI saw 4e-5),
    # while a wrong grid or wrong averaging would be off by far more than 5e-4.
    np.testing.assert_allclose(probs.numpy(), ref_probs, rtol=0, atol=5e-4)
    clear = np.abs(np.diff(np.sort(ref_probs, axis=0)[-2:], axis=0))[0] > 2e-3
    np.testing.assert_array_equal(labels.numpy()[clear], ref_labels[clear])
