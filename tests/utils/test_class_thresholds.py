"""utils/class_thresholds.py by hand: each class's threshold is the global one scaled by its
reach relative to the best class's; the reach is a slowly forgetting running maximum; a class
capped below the threshold still gets confident voxels (where a fixed threshold gives it none)."""
import pytest
import torch

from utils.class_thresholds import ReachRelativeThresholds
from utils.losses import confident_cross_entropy


def voxels(*probs):
    """(1, C, N, 1, 1) from N per-voxel class distributions."""
    return torch.tensor(probs, dtype=torch.float32).T.reshape(1, len(probs[0]), len(probs), 1, 1)


def test_before_any_batch_every_class_has_the_global_threshold():
    assert ReachRelativeThresholds(3, 0.8).per_class().tolist() == pytest.approx([0.8, 0.8, 0.8])


def test_threshold_scales_with_the_class_reach_relative_to_the_best():
    thresholds = ReachRelativeThresholds(3, 0.8)
    # class 0 reaches 0.98, class 1 0.9, class 2 (the capped one) only 0.7
    thresholds.update(voxels([0.98, 0.01, 0.01], [0.05, 0.9, 0.05], [0.2, 0.1, 0.7]))
    assert thresholds.reach.tolist() == pytest.approx([0.98, 0.9, 0.7])
    assert thresholds.per_class().tolist() == pytest.approx([0.8, 0.8 * 0.9 / 0.98, 0.8 * 0.7 / 0.98])


def test_reach_is_a_running_maximum_that_forgets_slowly():
    thresholds = ReachRelativeThresholds(2, 0.8, decay=0.9)
    thresholds.update(voxels([0.6, 0.4], [0.1, 0.9]))
    assert thresholds.reach.tolist() == pytest.approx([0.6, 0.9])
    # a batch without class 1 (its highest probability 0.3) lowers its reach only by the decay
    thresholds.update(voxels([0.7, 0.3], [0.8, 0.2]))
    assert thresholds.reach.tolist() == pytest.approx([0.8, 0.81])
    # a higher probability is taken at once
    thresholds.update(voxels([0.05, 0.95]))
    assert thresholds.reach.tolist() == pytest.approx([0.72, 0.95])


def test_a_class_capped_below_the_threshold_still_teaches():
    """Voxel 0 background at 0.97; voxels 1 and 2 the capped class at its ceiling 0.7 and a bit
    below. A fixed 0.8 keeps only voxel 0; relative to the reach, voxel 1 (0.7 >= 0.8 * 0.7 /
    0.97 = 0.577) and voxel 2 (0.6) count too."""
    probs = voxels([0.97, 0.03], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5])
    confidence, labels = probs.max(dim=1)
    logits = torch.log(probs)
    _, fixed_share = confident_cross_entropy(logits, labels, confidence, 0.8)
    assert fixed_share.item() == pytest.approx(1 / 4)
    thresholds = ReachRelativeThresholds(2, 0.8)
    thresholds.update(probs)
    per_voxel = thresholds.per_class()[labels]
    assert per_voxel.flatten().tolist() == pytest.approx([0.8, 0.8 * 0.7 / 0.97, 0.8 * 0.7 / 0.97, 0.8])
    loss, share = confident_cross_entropy(logits, labels, confidence, per_voxel)
    assert share.item() == pytest.approx(3 / 4)
    # the mean cross-entropy of the three confident voxels: -log of each one's own probability
    assert loss.item() == pytest.approx(-(torch.log(torch.tensor([0.97, 0.7, 0.6]))).mean().item(), rel=1e-5)


def test_state_travels_in_the_state_dict():
    thresholds = ReachRelativeThresholds(2, 0.8)
    thresholds.update(voxels([0.9, 0.1], [0.4, 0.6]))
    restored = ReachRelativeThresholds(2, 0.8)
    restored.load_state_dict(thresholds.state_dict())
    assert torch.equal(restored.per_class(), thresholds.per_class())
