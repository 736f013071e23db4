"""The layer benchmark's rewrites compute the same values and gradients as the layers they replace."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_layers  # noqa: E402


def values_and_grads(fn, layer: nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_(x.shape[1] > 1)
    y = fn(x)
    y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
    grads = [p.grad.clone() for p in layer.parameters()] + ([x.grad] if x.requires_grad else [])
    layer.zero_grad()
    return y.detach(), grads


@pytest.mark.parametrize("make_layer, rewrite, in_channels", [
    (lambda: nn.Conv3d(1, 16, 3, padding=1), bench_layers.conv_with_padded_channels, 1),
    (lambda: nn.Conv3d(6, 10, 2, stride=2), bench_layers.strided_conv_as_matmul, 6),
    (lambda: nn.ConvTranspose3d(10, 6, 2, stride=2), bench_layers.transposed_conv_as_matmul, 10),
])
def test_rewrite_matches_layer(make_layer, rewrite, in_channels):
    torch.manual_seed(0)
    layer = make_layer()
    x = torch.randn(2, in_channels, 4, 6, 8)
    expected, expected_grads = values_and_grads(layer, layer, x)
    got, got_grads = values_and_grads(lambda t: rewrite(layer, t), layer, x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_runs_on_cpu_and_prints_every_block(capsys):
    bench_layers.main(["--cpu", "--patch_size", "32", "32", "16", "--batch_size", "2", "--labeled_bs", "1",
                       "--reps", "1", "--warmup", "0", "--compile_blocks", ""])
    out = capsys.readouterr().out
    for name in bench_layers.BLOCKS:
        assert f"\n{name} " in out
    assert "whole student step" in out and "matmul-up" in out and "pad8" in out


def test_bad_patch_is_one_line_error(capsys):
    with pytest.raises(SystemExit) as stop:
        bench_layers.main(["--cpu", "--patch_size", "20", "16", "16"])
    assert stop.value.code != 0
    assert "multiple of 16" in capsys.readouterr().err
