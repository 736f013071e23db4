"""Choosing the device, seeding, and describing the runtime for the run header."""
import ctypes
import os
import random
import warnings

import numpy as np
import torch

from utils.errors import UserError

CPU_CHOICES = ("", "-1")  # --gpu values that ask for the CPU (CUDA_VISIBLE_DEVICES hiding every GPU)


def select_device(gpu: str) -> torch.device:
    """Make only the GPUs named in ``gpu`` ("0", "0,1") visible and return the first, or the CPU
    where there is no GPU (or ``gpu`` is "-1"). A ``gpu`` naming GPUs this machine does not have is
    a ``UserError``: CUDA would hide every GPU and the run would train on the CPU unasked. Must
    run before anything touches CUDA."""
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if gpu.strip() in CPU_CHOICES:
        return torch.device("cpu")
    available = torch.cuda.is_available()
    problem = gpu_problem(gpu, cuda_devices=torch.cuda.device_count() if available else 0,
                          machine_gpus=gpus_on_this_machine())
    if problem:
        raise UserError(problem)
    return torch.device("cuda") if available else torch.device("cpu")


def gpu_problem(gpu: str, *, cuda_devices: int, machine_gpus: int) -> str | None:
    """Why ``--gpu`` cannot be honoured, or None: it names more GPUs than the ``cuda_devices``
    CUDA finds with ``CUDA_VISIBLE_DEVICES=gpu`` (CUDA drops an index that does not exist and
    every one after it) on a machine with GPUs (``machine_gpus``, as the driver counts them). On
    a machine without any, the CPU is the answer whatever ``gpu`` says."""
    named = [entry for entry in gpu.split(",") if entry.strip()]
    if cuda_devices >= len(named) or max(cuda_devices, machine_gpus) == 0:
        return None
    have = max(cuda_devices, machine_gpus)
    return (f"--gpu {gpu} names GPU(s) this machine does not have: CUDA finds {cuda_devices} of the "
            f"{len(named)} named, and the machine has {have} GPU(s), numbered from 0; pass indices below {have}, "
            "or --gpu -1 to train on the CPU")


def gpus_on_this_machine() -> int:
    """The GPUs the NVIDIA driver knows (whatever CUDA_VISIBLE_DEVICES says), asked through
    NVML so that CUDA is not started; 0 without a driver."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        count = ctypes.c_uint(0)
        if nvml.nvmlInit_v2() != 0 or nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (OSError, AttributeError):  # no driver library, or one without these calls
        return 0


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; deterministic cuDNN kernels, or the fastest (benchmark)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def runtime_versions() -> dict:
    """torch / CUDA / cuDNN versions and the GPU name, for config.json and the log header."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def warn_known_bad_runtime() -> str | None:
    """torch 2.9.0 turned cuDNN off for 3D convolutions (about 4x slower); say so once."""
    if torch.__version__.startswith("2.9.0") and torch.cuda.is_available():
        message = ("torch 2.9.0 disables cuDNN for 3D convolutions, which makes this network about 4x slower "
                   "on a GPU; install another torch version")
        warnings.warn(message)
        return message
    return None


def amp_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """The autocast precision for ``--amp``, None for fp32. ``amp`` None (the flag left out)
    means on for CUDA, off on the CPU. On: bf16 where the GPU has it, fp16 otherwise (with a
    grad scaler); bf16 on a CPU with bf16 units (AVX512-BF16 or AMX), fp32 on other CPUs, which
    emulate bf16 many times slower than they compute in fp32. The CPU default is fp32 because
    bf16 cost accuracy in Hippocampus runs there (README, "bf16 on a CPU")."""
    if amp is None:
        amp = device.type == "cuda"
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def memory_format_for(device: torch.device, channels_last: bool) -> torch.memory_format:
    """channels_last_3d when asked for, on CUDA (cuDNN) and on the CPU (oneDNN), where it pays
    in fp32 and bf16 alike; the default layout otherwise."""
    return torch.channels_last_3d if channels_last and device.type in ("cuda", "cpu") else torch.contiguous_format


def memory_format_text(memory_format: torch.memory_format) -> str:
    """The memory format's name in the logs: "channels_last_3d" or "NCDHW"."""
    return "channels_last_3d" if memory_format == torch.channels_last_3d else "NCDHW"


def precision_text(device: torch.device, amp: bool | None) -> str:
    """How the network computes, for the logs: "bf16 autocast", "fp16 autocast" or "fp32"."""
    dtype = amp_dtype(device, amp)
    if dtype is not None:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + " autocast"
    return "fp32 (this CPU has no bf16 units)" if amp and device.type == "cpu" else "fp32"


def random_states() -> dict:
    """Every random stream a run draws from (Python, numpy, torch CPU and CUDA), for checkpoints."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
