"""The Mean Teacher update: the teacher's weights follow an exponential moving
average of the student's (Tarvainen & Valpola, 2017)."""
import torch
from torch import nn


def ema_decay_at(step: int, ema_decay: float) -> float:
    """alpha = min(1 - 1 / (step + 1), ema_decay): a true average early in training,
    so the teacher starts as a copy of the student (step 0 gives alpha 0)."""
    return min(1.0 - 1.0 / (step + 1), ema_decay)


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, alpha: float, foreach: bool = True,
                   buffers: bool = False) -> None:
    """teacher <- alpha * teacher + (1 - alpha) * student, for every parameter.

    Buffers (BatchNorm statistics) are left alone by default, as in the original scripts:
    the teacher keeps its own, gathered from its own forward passes; ``buffers`` averages the
    floating-point ones too (AD-MT, whose resting teacher predicts in eval mode).
    ``foreach`` updates all tensors in one multi-tensor kernel; False is the
    original per-tensor loop (kept for comparison).
    """
    teacher_params = [p for p in teacher.parameters()]
    student_params = [p.detach() for p in student.parameters()]
    if buffers:
        pairs = [(t, s) for t, s in zip(teacher.buffers(), student.buffers()) if t.is_floating_point()]
        teacher_params += [t for t, _ in pairs]
        student_params += [s.detach() for _, s in pairs]
    if foreach:
        torch._foreach_lerp_(teacher_params, student_params, 1.0 - alpha)
    else:
        for t, s in zip(teacher_params, student_params):
            t.mul_(alpha).add_(s, alpha=1.0 - alpha)


def make_teacher(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """Copy the student's state into ``teacher`` and detach its parameters from autograd."""
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def clipped_noise(images: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian noise of ``std``, clipped at 2 std: the teacher's input noise of the LA scripts."""
    return torch.clamp(torch.randn_like(images) * std, -2 * std, 2 * std)
