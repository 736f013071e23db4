"""The device, precision and memory layout a run computes in, chosen from the machine and the flags."""
import os

import pytest
import torch

import utils.device as device_module
from networks.vnet import VNet
from utils.device import amp_dtype, cpu_has_bf16, memory_format_for, precision_text

CPU = torch.device("cpu")


@pytest.mark.parametrize("has_bf16, dtype, text", [(True, torch.bfloat16, "bf16 autocast"),
                                                    (False, None, "fp32 (this CPU has no bf16 units)")])
def test_cpu_autocast_only_with_bf16_units(monkeypatch, has_bf16, dtype, text):
    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: has_bf16)
    assert amp_dtype(CPU, True) is dtype
    assert precision_text(CPU, True) == text


def test_cpu_default_is_fp32_even_with_bf16_units(monkeypatch):
    """--amp left out: fp32 on the CPU (bf16 cost accuracy on Hippocampus there)."""
    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: True)
    assert amp_dtype(CPU, None) is None
    assert precision_text(CPU, None) == "fp32"


def test_amp_off_is_fp32_everywhere(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: True)
    assert amp_dtype(CPU, False) is None
    assert precision_text(CPU, False) == "fp32"


def test_cpu_has_bf16_answers_a_bool():
    assert isinstance(cpu_has_bf16(), bool)


@pytest.mark.parametrize("channels_last, memory_format", [(True, torch.channels_last_3d), (False, torch.contiguous_format)])
def test_cpu_memory_format_for_follows_the_flag(channels_last, memory_format):
    assert memory_format_for(CPU, channels_last) == memory_format


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 units")
def test_vnet_trains_in_bf16_on_this_cpu():
    """Under the CPU's bf16 autocast in channels_last_3d: logits near fp32's, fp32 gradients."""
    torch.manual_seed(0)
    model = VNet(n_classes=2).to(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 1, 32, 32, 16).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        reference = model(x)
    with torch.autocast("cpu", dtype=amp_dtype(CPU, True)):
        logits = model(x)
    assert logits.dtype == torch.bfloat16
    # the same function at bf16's precision: about 7 % of the logits' spread after 20 layers
    assert (logits.float() - reference).abs().mean() < 0.15 * reference.std()
    assert (logits.argmax(1) == reference.argmax(1)).float().mean() > 0.9
    logits.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


# ------------------------------------------------------------------ --gpu
def test_a_gpu_index_the_machine_lacks_is_named():
    """Before: --gpu 5 on a one-GPU machine hid the GPU and trained on the CPU. CUDA finds
    nothing with CUDA_VISIBLE_DEVICES=5 there, and drops "1" from "0,1" on one GPU."""
    from utils.device import gpu_problem

    problem = gpu_problem("5", cuda_devices=0, machine_gpus=1)
    assert problem.startswith("--gpu 5 names GPU(s) this machine does not have") and "indices below 1" in problem
    assert "--gpu -1" in problem
    assert "CUDA finds 1 of the 2 named" in gpu_problem("0,1", cuda_devices=1, machine_gpus=1)
    assert gpu_problem("0", cuda_devices=1, machine_gpus=1) is None
    assert gpu_problem("0,1", cuda_devices=2, machine_gpus=8) is None
    assert gpu_problem("5", cuda_devices=0, machine_gpus=0) is None, "a CPU-only machine trains on the CPU"


def test_the_cpu_is_chosen_where_there_is_no_gpu_or_it_is_asked_for(monkeypatch):
    from utils.device import gpus_on_this_machine, select_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored after the test
    assert select_device("-1") == CPU and os.environ["CUDA_VISIBLE_DEVICES"] == "-1"
    if gpus_on_this_machine() == 0 and not torch.cuda.is_available():
        assert select_device("0") == CPU and select_device("5") == CPU
