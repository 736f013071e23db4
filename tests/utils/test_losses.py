"""utils/losses.py against hand computations in float64 numpy."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from utils.losses import (CONSISTENCY_LOSSES, DICE_SMOOTH, confident_cross_entropy, foreground_dice_loss,
                          soft_dice_loss, softmax_kl_loss, softmax_mse_loss, supervised_loss)


def np_softmax(x, axis=1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_dice_loss(p, t, s=1e-5):
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    return 1 - (2 * (p * t).sum() + s) / ((p * p).sum() + (t * t).sum() + s)


def logits_and_labels(n_classes, seed=0, shape=(2, 3, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], n_classes, *shape[1:], generator=g) * 2
    labels = torch.randint(0, n_classes, shape, generator=g)
    return logits, labels


def test_smooth_constant():
    assert DICE_SMOOTH == 1e-5


def test_soft_dice_perfect_prediction_is_zero():
    target = torch.zeros(2, 4, 4, 4)
    target[0, 1:3, 1:3, 1:3] = 1
    target[1, 0, 0, 0] = 1
    assert soft_dice_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_disjoint_is_one():
    target = torch.zeros(1, 4, 4, 4)
    target[0, :2] = 1
    probs = 1 - target
    loss = soft_dice_loss(probs, target).item()
    expected = 1 - DICE_SMOOTH / (32 + 32 + DICE_SMOOTH)
    assert loss == pytest.approx(expected, abs=1e-7)
    assert loss == pytest.approx(1.0, abs=1e-6)


def test_soft_dice_partial_by_hand():
    probs = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.25, 1.0])
    target = torch.tensor([1, 0, 1, 0, 1, 1])
    # sum(p t) = 0.5 + 0.25 + 1 = 1.75; sum(p^2) = 0.25 + 0.25 + 0.0625 + 1 = 1.5625; sum(t^2) = 4
    expected = 1 - (2 * 1.75 + 1e-5) / (1.5625 + 4 + 1e-5)
    assert soft_dice_loss(probs, target).item() == pytest.approx(expected, rel=1e-6)


def test_soft_dice_accepts_bool_target():
    probs = torch.tensor([0.2, 0.9, 0.4])
    target = torch.tensor([False, True, True])
    assert soft_dice_loss(probs, target).item() == pytest.approx(np_dice_loss([0.2, 0.9, 0.4], [0, 1, 1]), rel=1e-6)


def test_soft_dice_empty_target_and_empty_prediction_is_zero():
    zeros = torch.zeros(3, 3, 3)
    assert soft_dice_loss(zeros, zeros).item() == pytest.approx(0.0, abs=1e-7)


def test_foreground_dice_two_classes_equals_channel_one():
    logits, labels = logits_and_labels(2)
    got = foreground_dice_loss(logits, labels)
    ref = soft_dice_loss(F.softmax(logits, dim=1)[:, 1], labels == 1)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    probs = np_softmax(logits.numpy())
    assert got.item() == pytest.approx(np_dice_loss(probs[:, 1], labels.numpy() == 1), rel=1e-5)


def test_foreground_dice_three_classes_averages_foreground():
    logits, labels = logits_and_labels(3, seed=1)
    probs = np_softmax(logits.numpy())
    lab = labels.numpy()
    expected = 0.5 * (np_dice_loss(probs[:, 1], lab == 1) + np_dice_loss(probs[:, 2], lab == 2))
    assert foreground_dice_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_dice_with_background_averages_every_class_by_hand():
    """One patch of two voxels, both foreground, softmax 0.5 / 0.5 everywhere (zero logits):
    background 1 - (0 + s) / (0.25 + 0.25 + s) ~ 1; foreground 1 - (2 * 1 + s) / (0.5 + 2 + s) = 0.2;
    AD-MT's every-class mean 0.6, the foreground-only loss 0.2."""
    logits, labels = torch.zeros(1, 2, 2, 1, 1), torch.ones(1, 2, 1, 1, dtype=torch.long)
    s = DICE_SMOOTH
    background, foreground = 1 - s / (0.5 + s), 1 - (2 + s) / (2.5 + s)
    assert foreground_dice_loss(logits, labels).item() == pytest.approx(foreground, rel=1e-6)
    assert foreground_dice_loss(logits, labels, with_background=True).item() == pytest.approx(
        (background + foreground) / 2, rel=1e-6)
    assert (background + foreground) / 2 == pytest.approx(0.6, abs=1e-4)
    ce = np.log(2)  # -log 0.5 at each voxel
    assert supervised_loss(logits, labels, with_background=True).item() == pytest.approx(
        0.5 * (ce + (background + foreground) / 2), rel=1e-6)


def test_dice_with_background_three_classes_against_numpy():
    logits, labels = logits_and_labels(3, seed=4)
    probs, lab = np_softmax(logits.numpy()), labels.numpy()
    expected = np.mean([np_dice_loss(probs[:, c], lab == c) for c in range(3)])
    assert foreground_dice_loss(logits, labels, with_background=True).item() == pytest.approx(expected, rel=1e-5)


def test_supervised_loss_is_half_ce_plus_dice():
    logits, labels = logits_and_labels(2, seed=2)
    ce = F.cross_entropy(logits, labels)
    probs = np_softmax(logits.numpy())
    lab = labels.numpy()
    ce_hand = -np.mean(np.log(np.take_along_axis(probs, lab[:, None], axis=1)))
    assert ce.item() == pytest.approx(ce_hand, rel=1e-5)
    expected = 0.5 * (ce_hand + np_dice_loss(probs[:, 1], lab == 1))
    assert supervised_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_supervised_loss_accepts_uint8_labels_and_has_gradient():
    logits, labels = logits_and_labels(2, seed=3)
    logits.requires_grad_(True)
    loss = supervised_loss(logits, labels.to(torch.uint8))
    assert loss.item() == pytest.approx(supervised_loss(logits, labels).item(), rel=1e-7)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_softmax_mse_by_hand():
    s, _ = logits_and_labels(3, seed=4)
    t, _ = logits_and_labels(3, seed=5)
    expected = np.mean((np_softmax(s.numpy()) - np_softmax(t.numpy())) ** 2)
    assert softmax_mse_loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_softmax_kl_by_hand():
    s, _ = logits_and_labels(2, seed=6)
    t, _ = logits_and_labels(2, seed=7)
    ps, pt = np_softmax(s.numpy()), np_softmax(t.numpy())
    expected = np.mean(pt * (np.log(pt) - np.log(ps)))
    assert softmax_kl_loss(s, t).item() == pytest.approx(expected, rel=1e-5)
    assert softmax_kl_loss(s, t).item() > 0


def test_tiny_two_voxel_case_by_hand():
    s = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]]).reshape(1, 2, 2)   # (B=1, C=2, 2 voxels)
    t = torch.zeros(1, 2, 2)
    # student: voxel 0 uniform, voxel 1 p(c0) = 1 / (1 + e^-1) = sigmoid(1)
    q = 1 / (1 + np.exp(-1.0))
    mse = ((q - 0.5) ** 2 + (1 - q - 0.5) ** 2) / 4
    kl = (0.5 * np.log(0.5 / q) + 0.5 * np.log(0.5 / (1 - q))) / 4
    assert softmax_mse_loss(s, t).item() == pytest.approx(mse, rel=1e-5)
    assert softmax_kl_loss(s, t).item() == pytest.approx(kl, rel=1e-5)


@pytest.mark.parametrize("fn", [softmax_mse_loss, softmax_kl_loss])
def test_consistency_zero_for_identical_logits(fn):
    s, _ = logits_and_labels(2, seed=8)
    assert fn(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("fn", [softmax_mse_loss, softmax_kl_loss])
def test_consistency_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="shape"):
        fn(torch.zeros(2, 2, 4, 4, 4), torch.zeros(1, 2, 4, 4, 4))


def test_consistency_gradient_only_through_student():
    s, _ = logits_and_labels(2, seed=9)
    t, _ = logits_and_labels(2, seed=10)
    s.requires_grad_(True)
    softmax_mse_loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_consistency_registry():
    assert CONSISTENCY_LOSSES == {"mse": softmax_mse_loss, "kl": softmax_kl_loss}


# --- confident_cross_entropy (AD-MT's unlabeled loss) ------------------------------------------

def two_voxels():
    """(B=1, C=2, 2 voxels): voxel 0 logits (2, 0), voxel 1 logits (0, 1)."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 2)
    labels = torch.tensor([[1, 1]])
    return logits, labels


def test_confident_cross_entropy_by_hand():
    logits, labels = two_voxels()
    # only voxel 1 is confident: its CE against class 1 is -log(e^1 / (1 + e^1)) = log(1 + e^-1)
    loss, share = confident_cross_entropy(logits, labels, torch.tensor([[0.5, 0.9]]), 0.8)
    assert loss.item() == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-6)
    assert share.item() == 0.5
    # only voxel 0: -log(e^0 / (e^2 + 1)) = log(1 + e^2)
    loss, share = confident_cross_entropy(logits, labels, torch.tensor([[0.95, 0.1]]), 0.8)
    assert loss.item() == pytest.approx(np.log1p(np.exp(2.0)), rel=1e-6)
    assert share.item() == 0.5
    # both: their mean; the threshold itself counts (>=)
    loss, share = confident_cross_entropy(logits, labels, torch.tensor([[0.8, 0.8]]), 0.8)
    assert loss.item() == pytest.approx((np.log1p(np.exp(2.0)) + np.log1p(np.exp(-1.0))) / 2, rel=1e-6)
    assert share.item() == 1.0


def test_confident_cross_entropy_threshold_zero_is_plain_cross_entropy():
    logits, labels = logits_and_labels(3, seed=11)
    confidence = torch.rand(labels.shape, generator=torch.Generator().manual_seed(0))
    loss, share = confident_cross_entropy(logits, labels, confidence, 0.0)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert share.item() == 1.0
    # and a threshold that keeps some: the mean of their CE
    loss, share = confident_cross_entropy(logits, labels, confidence, 0.6)
    keep = confidence >= 0.6
    per_voxel = F.cross_entropy(logits, labels, reduction="none")
    assert loss.item() == pytest.approx(per_voxel[keep].mean().item(), rel=1e-6)
    assert share.item() == pytest.approx(keep.float().mean().item(), rel=1e-6)


def test_confident_cross_entropy_with_no_confident_voxel_is_zero_and_finite():
    logits, labels = two_voxels()
    logits.requires_grad_(True)
    loss, share = confident_cross_entropy(logits, labels, torch.tensor([[0.5, 0.79]]), 0.8)
    assert loss.item() == 0.0 and share.item() == 0.0
    assert torch.isfinite(loss) and torch.isfinite(share)
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_confident_cross_entropy_gradient_only_from_confident_voxels():
    logits, labels = logits_and_labels(2, seed=12, shape=(1, 3, 2, 2))
    confidence = torch.zeros(labels.shape)
    confidence[0, 1, 0, 1] = 0.9
    confidence[0, 2, 1, 0] = 1.0
    logits.requires_grad_(True)
    loss, share = confident_cross_entropy(logits, labels, confidence, 0.8)
    assert share.item() == pytest.approx(2 / 12)
    loss.backward()
    grad_per_voxel = logits.grad.abs().sum(dim=1)  # (1, 3, 2, 2)
    assert (grad_per_voxel > 0).nonzero().tolist() == [[0, 1, 0, 1], [0, 2, 1, 0]]
    # the gradient of a mean over 2 voxels: (softmax - one_hot) / 2 at each of them
    probs = F.softmax(logits.detach(), dim=1)
    for x, y, z in [(1, 0, 1), (2, 1, 0)]:
        expected = probs[0, :, x, y, z].clone()
        expected[labels[0, x, y, z]] -= 1
        torch.testing.assert_close(logits.grad[0, :, x, y, z], expected / 2, rtol=1e-5, atol=1e-7)
