"""utils/ema.py: the EMA decay schedule, the teacher update and make_teacher."""
import copy

import pytest
import torch
from torch import nn

from utils.ema import ema_decay_at, make_teacher, update_teacher


def test_ema_decay_schedule():
    assert ema_decay_at(0, 0.99) == 0.0
    assert ema_decay_at(1, 0.99) == 0.5
    assert ema_decay_at(2, 0.99) == pytest.approx(2 / 3)
    assert ema_decay_at(9, 0.99) == pytest.approx(0.9)
    assert ema_decay_at(98, 0.99) == pytest.approx(1 - 1 / 99)
    assert ema_decay_at(99, 0.99) == 0.99
    assert ema_decay_at(100_000, 0.99) == 0.99


def test_ema_decay_capped_by_decay():
    assert ema_decay_at(1, 0.3) == 0.3
    assert ema_decay_at(0, 0.3) == 0.0
    assert ema_decay_at(5, 0.0) == 0.0


class Net(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.lin = nn.Linear(7, 5, dtype=dtype)
        self.bn = nn.BatchNorm1d(5, dtype=dtype)


def pair(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return Net(dtype), Net(dtype)


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 0.99, 0.37])
def test_update_teacher_matches_manual_float64(foreach, alpha):
    teacher, student = pair(torch.float64)
    before_t = [p.detach().clone() for p in teacher.parameters()]
    before_s = [p.detach().clone() for p in student.parameters()]
    update_teacher(teacher, student, alpha, foreach=foreach)
    for t, t0, s0 in zip(teacher.parameters(), before_t, before_s):
        torch.testing.assert_close(t.detach(), alpha * t0 + (1 - alpha) * s0, rtol=1e-13, atol=1e-15)
    for s, s0 in zip(student.parameters(), before_s):
        assert torch.equal(s.detach(), s0), "the student must not change"


@pytest.mark.parametrize("foreach", [True, False])
def test_update_teacher_matches_manual_float32(foreach):
    teacher, student = pair(torch.float32, seed=1)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    before_t = [p.detach().clone() for p in teacher.parameters()]
    before_s = [p.detach().clone() for p in student.parameters()]
    alpha = 0.9
    update_teacher(teacher, student, alpha, foreach=foreach)
    for t, t0, s0 in zip(teacher.parameters(), before_t, before_s):
        # float32 rounding of lerp / mul+add (about 1 ulp) is the only allowed difference
        torch.testing.assert_close(t.detach(), alpha * t0 + (1 - alpha) * s0, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("foreach", [True, False])
def test_alpha_zero_copies_and_alpha_one_keeps(foreach):
    teacher, student = pair()
    update_teacher(teacher, student, 0.0, foreach=foreach)
    for t, s in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(t, s)
    teacher, student = pair(seed=3)
    before = [p.detach().clone() for p in teacher.parameters()]
    update_teacher(teacher, student, 1.0, foreach=foreach)
    for t, t0 in zip(teacher.parameters(), before):
        assert torch.equal(t.detach(), t0)


def test_foreach_and_loop_agree():
    t1, student = pair(seed=4)
    t2 = copy.deepcopy(t1)
    with torch.no_grad():
        for p in t1.parameters():
            p.mul_(3)
        for p in t2.parameters():
            p.mul_(3)
    for _ in range(5):
        update_teacher(t1, student, 0.8, foreach=True)
        update_teacher(t2, student, 0.8, foreach=False)
    for a, b in zip(t1.parameters(), t2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("foreach", [True, False])
def test_buffers_untouched(foreach):
    teacher, student = pair(seed=5)
    with torch.no_grad():
        teacher.bn.running_mean.fill_(3.0)
        teacher.bn.running_var.fill_(7.0)
        teacher.bn.num_batches_tracked.fill_(11)
        student.bn.running_mean.fill_(-1.0)
        student.bn.running_var.fill_(0.5)
        student.bn.num_batches_tracked.fill_(2)
    update_teacher(teacher, student, 0.5, foreach=foreach)
    assert torch.equal(teacher.bn.running_mean, torch.full((5,), 3.0))
    assert torch.equal(teacher.bn.running_var, torch.full((5,), 7.0))
    assert teacher.bn.num_batches_tracked.item() == 11


def test_update_builds_no_autograd_graph():
    student = Net()
    teacher = make_teacher(student, Net())
    out = student.lin(torch.randn(3, 7)).sum()  # student params require grad
    update_teacher(teacher, student, 0.5)
    assert all(p.grad_fn is None and not p.requires_grad for p in teacher.parameters())
    out.backward()  # the student's graph is intact
    assert student.lin.weight.grad is not None


def test_make_teacher_copies_and_freezes():
    torch.manual_seed(6)
    student, fresh = Net(), Net()
    with torch.no_grad():
        student.bn.running_mean.fill_(2.5)
    teacher = make_teacher(student, fresh)
    assert teacher is fresh
    for (name, a), (_, b) in zip(student.state_dict().items(), teacher.state_dict().items()):
        assert torch.equal(a, b), name
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    # a copy, not shared storage
    with torch.no_grad():
        student.lin.weight.add_(1.0)
    assert not torch.equal(student.lin.weight, teacher.lin.weight)


def test_repeated_updates_converge_to_student():
    teacher, student = pair(seed=7)
    for step in range(200):
        update_teacher(teacher, student, 0.9)
    for t, s in zip(teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, s, rtol=0, atol=1e-6)


def bn_pair(seed=8):
    teacher, student = pair(seed=seed)
    with torch.no_grad():
        teacher.bn.running_mean.copy_(torch.arange(5.0))
        teacher.bn.running_var.fill_(4.0)
        teacher.bn.num_batches_tracked.fill_(11)
        student.bn.running_mean.fill_(-1.0)
        student.bn.running_var.copy_(torch.arange(1.0, 6.0))
        student.bn.num_batches_tracked.fill_(2)
    return teacher, student


@pytest.mark.parametrize("foreach", [True, False])
def test_buffers_true_averages_float_buffers_not_the_counter(foreach):
    teacher, student = bn_pair()
    before_t = [p.detach().clone() for p in teacher.parameters()]
    before_s = [p.detach().clone() for p in student.parameters()]
    update_teacher(teacher, student, 0.75, foreach=foreach, buffers=True)
    torch.testing.assert_close(teacher.bn.running_mean, 0.75 * torch.arange(5.0) + 0.25 * -1.0)
    torch.testing.assert_close(teacher.bn.running_var, 0.75 * 4.0 + 0.25 * torch.arange(1.0, 6.0))
    assert teacher.bn.num_batches_tracked.item() == 11
    assert teacher.bn.num_batches_tracked.dtype == torch.int64
    # the parameters are averaged as without buffers, the student left alone
    for t, t0, s0 in zip(teacher.parameters(), before_t, before_s):
        torch.testing.assert_close(t.detach(), 0.75 * t0 + 0.25 * s0, rtol=1e-6, atol=1e-7)
    assert torch.equal(student.bn.running_mean, torch.full((5,), -1.0))
    assert torch.equal(student.bn.running_var, torch.arange(1.0, 6.0))
    assert student.bn.num_batches_tracked.item() == 2
    assert all(p.grad_fn is None for p in teacher.buffers())


def test_buffers_true_with_alpha_zero_copies_the_statistics():
    teacher, student = bn_pair(seed=9)
    update_teacher(teacher, student, 0.0, buffers=True)
    assert torch.equal(teacher.bn.running_mean, student.bn.running_mean)
    assert torch.equal(teacher.bn.running_var, student.bn.running_var)
    assert teacher.bn.num_batches_tracked.item() == 11


def test_buffers_default_leaves_the_statistics_alone():
    teacher, student = bn_pair(seed=10)
    update_teacher(teacher, student, 0.5)
    assert torch.equal(teacher.bn.running_mean, torch.arange(5.0))
    assert torch.equal(teacher.bn.running_var, torch.full((5,), 4.0))
    assert teacher.bn.num_batches_tracked.item() == 11
