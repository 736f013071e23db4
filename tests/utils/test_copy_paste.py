"""utils/copy_paste.py against hand-computed cases: the cube, the pasted images, the pseudo-labels'
largest component, the weighted loss and the watch on empty pseudo-labels."""
import math

import pytest
import torch
import torch.nn.functional as F

from utils.copy_paste import (EmptyPseudoLabelWatch, copy_paste_loss, cube_mask, masked_cross_entropy,
                              masked_dice_loss, paste, pseudo_labels)

CPU = torch.device("cpu")


@pytest.mark.parametrize("patch", [(112, 112, 80), (48, 48, 32), (32, 48, 32)])
def test_the_cube_is_two_thirds_of_each_side_inside_the_patch(patch):
    torch.manual_seed(0)
    for _ in range(20):
        mask = cube_mask(patch, 2 / 3, CPU)
        assert mask.shape == patch and mask.dtype == torch.long
        inside = (mask == 0).nonzero()
        sides = [int(s * 2 / 3) for s in patch]
        assert len(inside) == math.prod(sides)
        low, high = inside.min(0).values, inside.max(0).values
        assert (high - low + 1).tolist() == sides  # one solid cube
        assert all(h < s - 1 for h, s in zip(high.tolist(), patch))  # starts before side - cube


def test_paste_puts_one_patch_outside_and_the_other_inside():
    mask = torch.ones(4, 4, 4, dtype=torch.long)
    mask[1:3, 1:3, 1:3] = 0
    a, b = torch.full((2, 1, 4, 4, 4), 1.0), torch.full((2, 1, 4, 4, 4), 5.0)
    mixed = paste(a, b, mask)
    assert mixed.shape == a.shape
    assert (mixed[:, :, 1:3, 1:3, 1:3] == 5).all() and mixed.sum().item() == 2 * (56 * 1 + 8 * 5)
    labels = paste(torch.zeros(2, 4, 4, 4, dtype=torch.long), torch.ones(2, 4, 4, 4, dtype=torch.long), mask)
    assert labels.dtype == torch.long and labels.sum().item() == 2 * 8


def test_pseudo_labels_keep_the_largest_confident_component():
    probs = torch.full((1, 2, 8, 8, 8), 0.0)
    probs[:, 1] = 0.2
    probs[:, 1, 0:3, 0:3, 0:3] = 0.9   # 27 voxels
    probs[:, 1, 6:8, 6:8, 6:8] = 0.6   # 8 voxels, apart: dropped
    probs[:, 1, 4, 0, 0] = 0.5         # exactly 0.5 counts, but it is alone: dropped
    probs[:, 0] = 1 - probs[:, 1]
    labels = pseudo_labels(torch.log(probs.clamp_min(1e-9)))
    assert labels.shape == (1, 8, 8, 8) and labels.dtype == torch.long
    assert labels.sum().item() == 27 and labels[0, :3, :3, :3].all()
    three = torch.zeros(1, 3, 4, 4, 4)
    three[:, 2, :2] = 5.0  # class 2 confident on the first half
    assert (pseudo_labels(three)[0, :2] == 2).all() and (pseudo_labels(three)[0, 2:] == 0).all()


def test_masked_dice_counts_only_the_masked_voxels():
    logits = torch.zeros(1, 2, 2, 1, 1)  # softmax 0.5 / 0.5
    target = torch.tensor([1, 0]).reshape(1, 2, 1, 1)
    # whole: class 0: 2*0.5/(1 + 1), class 1: 2*0.5/(1 + 1) -> Dice 0.5 each
    assert masked_dice_loss(logits, target).item() == pytest.approx(1 - (1 + 1e-5) / (2 + 1e-5))
    mask = torch.tensor([1, 0]).reshape(1, 2, 1, 1)  # voxel 0 only (class 1)
    class0 = 1e-5 / (0.5 + 1e-5)
    class1 = (2 * 0.5 + 1e-5) / (1.5 + 1e-5)
    assert masked_dice_loss(logits, target, mask).item() == pytest.approx(1 - (class0 + class1) / 2)
    assert masked_cross_entropy(logits, target, mask).item() == pytest.approx(math.log(2))


def test_copy_paste_loss_weighs_ground_truth_one_and_pseudo_labels_half():
    torch.manual_seed(3)
    logits = torch.randn(2, 2, 4, 4, 4)
    truth = torch.randint(0, 2, (2, 4, 4, 4))
    pseudo = torch.randint(0, 2, (2, 4, 4, 4))
    mask = torch.ones(4, 4, 4, dtype=torch.long)
    mask[:2, :2, :2] = 0
    loss = copy_paste_loss(logits, truth, pseudo, mask, outside_weight=1.0, inside_weight=0.5)
    outside = mask.expand(2, 4, 4, 4).float()
    inside = 1 - outside
    ce = F.cross_entropy(logits, truth, reduction="none")
    ce_pseudo = F.cross_entropy(logits, pseudo, reduction="none")
    expected_ce = (ce * outside).sum() / outside.sum() + 0.5 * (ce_pseudo * inside).sum() / inside.sum()
    expected_dice = masked_dice_loss(logits, truth, outside) + 0.5 * masked_dice_loss(logits, pseudo, inside)
    assert loss.item() == pytest.approx(((expected_ce + expected_dice) / 2).item(), rel=1e-6)
    # the other direction: pseudo-labels outside (weight 0.5), ground truth inside (1)
    reverse = copy_paste_loss(logits, pseudo, truth, mask, outside_weight=0.5, inside_weight=1.0)
    assert reverse.item() != pytest.approx(loss.item())


def test_the_empty_pseudo_label_watch_tells_once_when_a_window_falls_short():
    watch = EmptyPseudoLabelWatch(window=3, ratio=0.01)
    # labeled patches 20 % foreground; pseudo-labels: a stray voxel share (1e-4) is short, 1 % is not
    assert [watch.update(f, 0.2) for f in (0.0, 1e-4)] == [False, False]  # window not full yet
    assert watch.update(0.01, 0.2) is False  # mean 0.0034 >= 0.01 * 0.2
    assert watch.update(0.0, torch.tensor(0.2)) is False  # (1e-4 + 0.01 + 0) / 3 still >= 0.002
    assert watch.update(torch.tensor(1e-4), 0.2) is False  # (0.01 + 0 + 1e-4) / 3 = 0.0034
    assert watch.update(0.0, 0.2) is True  # (0 + 1e-4 + 0) / 3 < 0.002: told
    assert watch.shares() == pytest.approx((1e-4 / 3, 0.2))
    assert [watch.update(0.0, 0.2) for _ in range(3)] == [False] * 3  # told once only
