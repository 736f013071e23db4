"""utils/dual_teachers.py: entropy, the entropy-weighted ensemble by hand, the pseudo-labels
and their conflict mask, the student settling conflicts, moving pseudo-labels with CutMix,
and the teachers' random alternating turns."""
import math

import pytest
import torch

from utils.cutmix import CutMixBoxes
from utils.dual_teachers import (PseudoLabels, TeacherTurns, entropy, entropy_weighted_ensemble,
                                 settle_with_student, teachers_pseudo_labels)


def voxels(*probs):
    """(1, C, N, 1, 1) from N per-voxel class distributions."""
    return torch.tensor(probs, dtype=torch.float32).T.reshape(1, len(probs[0]), len(probs), 1, 1)


def test_entropy_of_one_hot_is_zero_and_of_uniform_two_classes_one_bit():
    h = entropy(voxels([1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.25, 0.75]))
    assert h.shape == (1, 4, 1, 1)
    assert h[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert h[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    assert h[0, 2].item() == pytest.approx(1.0, rel=1e-6)
    assert h[0, 3].item() == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)), rel=1e-5)
    # four equal classes: 2 bits
    assert entropy(voxels([0.25] * 4)).item() == pytest.approx(2.0, rel=1e-6)


def test_ensemble_by_hand_for_one_voxel():
    pa, pb = [0.9, 0.1], [0.4, 0.6]
    ha = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    hb = -(0.4 * math.log2(0.4) + 0.6 * math.log2(0.6))
    wa = math.exp(-ha) / (math.exp(-ha) + math.exp(-hb))
    wb = 1 - wa
    expected = [wa * pa[0] + wb * pb[0], wa * pa[1] + wb * pb[1]]
    assert wa > 0.5  # the more certain teacher weighs more
    got = entropy_weighted_ensemble(voxels(pa), voxels(pb)).flatten()
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert got.sum().item() == pytest.approx(1.0, rel=1e-6)
    # symmetric in the teachers
    torch.testing.assert_close(entropy_weighted_ensemble(voxels(pb), voxels(pa)).flatten(), got)
    # and its pseudo-label: class 0 with that confidence, and the teachers conflict
    pseudo = teachers_pseudo_labels(voxels(pa), voxels(pb))
    assert pseudo.labels.item() == 0 and pseudo.conflict.item() is True
    assert pseudo.confidence.item() == pytest.approx(expected[0], rel=1e-5)


def test_ensemble_weights_voxel_by_voxel():
    pa = voxels([0.9, 0.1], [0.5, 0.5])
    pb = voxels([0.5, 0.5], [0.2, 0.8])
    got = entropy_weighted_ensemble(pa, pb).reshape(2, 2).T  # (voxel, class)
    for v, (a, b) in enumerate([([0.9, 0.1], [0.5, 0.5]), ([0.5, 0.5], [0.2, 0.8])]):
        ha = -sum(p * math.log2(p) for p in a)
        hb = -sum(p * math.log2(p) for p in b)
        wa = math.exp(-ha) / (math.exp(-ha) + math.exp(-hb))
        torch.testing.assert_close(got[v], torch.tensor([wa * a[0] + (1 - wa) * b[0], wa * a[1] + (1 - wa) * b[1]]),
                                   rtol=1e-5, atol=1e-6)


def test_ensemble_of_identical_inputs_is_the_input():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 4, 3, 2, generator=g), dim=1)
    torch.testing.assert_close(entropy_weighted_ensemble(probs, probs.clone()), probs, rtol=1e-6, atol=1e-7)


def test_pseudo_labels_conflict_mask():
    pa = voxels([0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8])
    pb = voxels([0.8, 0.2], [0.6, 0.4], [0.45, 0.55], [0.1, 0.9])
    pseudo = teachers_pseudo_labels(pa, pb)
    assert pseudo.labels.dtype == torch.int64 and pseudo.conflict.dtype == torch.bool
    assert pseudo.labels.shape == pseudo.confidence.shape == pseudo.conflict.shape == (1, 4, 1, 1)
    assert pseudo.conflict.flatten().tolist() == [False, True, True, False]
    ensemble = entropy_weighted_ensemble(pa, pb)
    assert torch.equal(pseudo.labels, ensemble.argmax(dim=1))
    assert torch.equal(pseudo.confidence, ensemble.amax(dim=1))
    assert pseudo.labels.flatten().tolist()[0] == 0 and pseudo.labels.flatten().tolist()[3] == 1


def test_single_teacher_gives_its_own_labels_and_no_conflict():
    pa = voxels([0.9, 0.1], [0.3, 0.7], [0.6, 0.4])
    pseudo = teachers_pseudo_labels(pa)
    assert pseudo.labels.flatten().tolist() == [0, 1, 0]
    torch.testing.assert_close(pseudo.confidence.flatten(), torch.tensor([0.9, 0.7, 0.6]))
    assert pseudo.conflict.dtype == torch.bool and not pseudo.conflict.any()
    assert pseudo.conflict.shape == pseudo.labels.shape


def test_settle_with_student_by_hand():
    """Four voxels, each failing one condition but the first:
    0: conflict, student says another class, more confident -> taken from the student;
    1: no conflict (student otherwise would win) -> kept;
    2: conflict, student says the same class (more confident) -> kept;
    3: conflict, another class, but less confident -> kept; 4: equally confident -> kept."""
    teachers = PseudoLabels(labels=torch.tensor([0, 1, 1, 0, 1]),
                            confidence=torch.tensor([0.6, 0.55, 0.7, 0.8, 0.75]),
                            conflict=torch.tensor([True, False, True, True, True]))
    student_labels = torch.tensor([1, 0, 1, 1, 0])
    student_confidence = torch.tensor([0.9, 0.99, 0.95, 0.7, 0.75])
    settled, taken = settle_with_student(teachers, student_labels, student_confidence)
    assert taken.tolist() == [True, False, False, False, False]
    assert settled.labels.tolist() == [1, 1, 1, 0, 1]
    torch.testing.assert_close(settled.confidence, torch.tensor([0.9, 0.55, 0.7, 0.8, 0.75]))
    assert torch.equal(settled.conflict, teachers.conflict)
    # inputs untouched
    assert teachers.labels.tolist() == [0, 1, 1, 0, 1]


def test_settle_with_one_teacher_takes_nothing():
    pseudo = teachers_pseudo_labels(voxels([0.6, 0.4], [0.3, 0.7]))
    settled, taken = settle_with_student(pseudo, torch.tensor([1, 0]).reshape(1, 2, 1, 1),
                                         torch.tensor([0.99, 0.99]).reshape(1, 2, 1, 1))
    assert not taken.any()
    assert torch.equal(settled.labels, pseudo.labels) and torch.equal(settled.confidence, pseudo.confidence)


def test_moved_with_cutmix_moves_labels_confidence_and_conflict_alike():
    g = torch.Generator().manual_seed(1)
    shape = (2, 4, 3, 2)
    labels = torch.randint(0, 3, shape, generator=g)
    confidence = torch.rand(shape, generator=g)
    conflict = torch.rand(shape, generator=g) > 0.5
    pseudo = PseudoLabels(labels, confidence, conflict)
    boxes = CutMixBoxes(source=(1, 0), starts=((1, 0, 0), (0, 1, 1)), ends=((3, 2, 2), (4, 3, 2)))
    moved = pseudo.moved(boxes.apply)
    assert torch.equal(moved.labels, boxes.apply(labels))
    assert torch.equal(moved.confidence, boxes.apply(confidence))
    assert torch.equal(moved.conflict, boxes.apply(conflict))
    assert moved.labels.dtype == torch.int64 and moved.conflict.dtype == torch.bool
    # by hand: sample 0's box [1:3, 0:2, 0:2] is sample 1's, the rest its own
    assert torch.equal(moved.confidence[0, 1:3, 0:2, 0:2], confidence[1, 1:3, 0:2, 0:2])
    assert torch.equal(moved.conflict[0, 0], conflict[0, 0])
    assert torch.equal(moved.labels[1, :, 1:3, 1:2], labels[0, :, 1:3, 1:2])
    assert torch.equal(moved.labels[1, :, 0], labels[1, :, 0])
    # the original is untouched
    assert torch.equal(pseudo.labels, labels) and torch.equal(pseudo.conflict, conflict)


def runs(values):
    """[(value, length)] of consecutive equal values."""
    out = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return [tuple(r) for r in out]


@pytest.mark.parametrize("max_period,seed", [(1, 0), (2, 3), (5, 1337), (19, 7)])
def test_turns_alternate_in_runs_of_1_to_max_period(max_period, seed):
    turns = TeacherTurns(max_period, seed)
    values = [turns.turn(i) for i in range(600)]
    assert set(values) <= {0, 1}
    assert values[0] == 0
    rs = runs(values)
    assert [v for v, _ in rs] == [i % 2 for i in range(len(rs))]  # alternate, teacher 0 first
    assert all(1 <= length <= max_period for _, length in rs[:-1])
    assert rs[-1][1] <= max_period
    if max_period > 1:  # random lengths: more than one length seen, the longest possible reached
        lengths = {length for _, length in rs[:-1]}
        assert len(lengths) > 1 and max(lengths) == max_period and min(lengths) == 1


def test_max_period_1_alternates_every_iteration():
    turns = TeacherTurns(1, 42)
    assert [turns.turn(i) for i in range(10)] == [0, 1] * 5


def test_same_seed_same_turns_queried_in_any_order():
    reference = TeacherTurns(7, 11)
    expected = [reference.turn(i) for i in range(300)]
    fresh = TeacherTurns(7, 11)
    order = list(range(300))[::-1]  # a late iteration first, as after a resume
    got = {i: fresh.turn(i) for i in order}
    assert [got[i] for i in range(300)] == expected
    shuffled = TeacherTurns(7, 11)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0)).tolist()
    assert all(shuffled.turn(i) == expected[i] for i in perm)
    # a resume at 150 on a fresh object
    assert [TeacherTurns(7, 11).turn(i) for i in range(150, 160)] == expected[150:160]


def test_turns_do_not_use_torch_global_generator():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    TeacherTurns(5, 1).turn(100)
    assert torch.equal(torch.get_rng_state(), before)


def test_another_seed_gives_other_turns():
    a = [TeacherTurns(19, 1337).turn(i) for i in range(500)]
    b = [TeacherTurns(19, 1338).turn(i) for i in range(500)]
    assert a != b


@pytest.mark.parametrize("max_period", [0, -1])
def test_max_period_below_1_is_an_error(max_period):
    with pytest.raises(ValueError):
        TeacherTurns(max_period, 0)
