"""utils/cutmix.py: hand-made boxes move exactly the voxels they name, on images and on
per-voxel tensors alike; random boxes stay in the patch, follow torch's seed and share one
lam per batch."""
import pytest
import torch

from utils.cutmix import CutMixBoxes, random_boxes


def coded_images(batch=3, channels=2, shape=(6, 5, 4)):
    """Every voxel its own value: 1000 * sample + 100 * channel + a running index."""
    n = shape[0] * shape[1] * shape[2]
    voxels = torch.arange(n, dtype=torch.float32).reshape(shape)
    return torch.stack([torch.stack([1000 * b + 100 * c + voxels for c in range(channels)]) for b in range(batch)])


BOXES = CutMixBoxes(source=(1, 2, 0),
                    starts=((0, 0, 0), (2, 1, 1), (5, 4, 3)),
                    ends=((2, 3, 4), (6, 5, 3), (6, 5, 4)))


def expected_mix(batch, boxes):
    """The mix voxel by voxel, by plain loops over the box coordinates."""
    out = batch.clone()
    for i, (src, start, end) in enumerate(zip(boxes.source, boxes.starts, boxes.ends)):
        for x in range(start[0], end[0]):
            for y in range(start[1], end[1]):
                for z in range(start[2], end[2]):
                    out[i, ..., x, y, z] = batch[src, ..., x, y, z]
    return out


def test_hand_made_boxes_move_exactly_their_voxels_on_images():
    images = coded_images()
    mixed = BOXES.apply(images)
    assert torch.equal(mixed, expected_mix(images, BOXES))
    # spot checks by hand: sample 0 takes [0:2, 0:3, 0:4] of sample 1, every channel
    assert torch.equal(mixed[0, :, :2, :3, :4], images[1, :, :2, :3, :4])
    assert torch.equal(mixed[0, :, 2:], images[0, :, 2:])
    assert torch.equal(mixed[0, :, :2, 3:], images[0, :, :2, 3:])
    # sample 1 takes [2:6, 1:5, 1:3] of sample 2
    assert torch.equal(mixed[1, :, 2:6, 1:5, 1:3], images[2, :, 2:6, 1:5, 1:3])
    assert torch.equal(mixed[1, :, :2], images[1, :, :2])
    assert torch.equal(mixed[1, :, 2:, :, 3:], images[1, :, 2:, :, 3:])
    assert torch.equal(mixed[1, :, 2:, 0], images[1, :, 2:, 0])
    # sample 2 takes the one voxel (5, 4, 3) of sample 0
    assert mixed[2, 1, 5, 4, 3].item() == images[0, 1, 5, 4, 3].item() == 100 + (5 * 5 + 4) * 4 + 3
    changed = (mixed[2] != images[2]).nonzero().tolist()
    assert changed == [[0, 5, 4, 3], [1, 5, 4, 3]]
    # number of voxels replaced per sample: the box volumes (times the channels)
    assert [(mixed[i] != images[i]).sum().item() for i in range(3)] == [2 * 2 * 3 * 4, 2 * 4 * 4 * 2, 2 * 1]


def test_labels_move_with_the_images():
    images = coded_images(channels=1)
    labels = images[:, 0].long()  # (B, X, Y, Z) with the same codes
    mixed_images, mixed_labels = BOXES.apply(images), BOXES.apply(labels)
    assert mixed_labels.shape == labels.shape and mixed_labels.dtype == torch.int64
    assert torch.equal(mixed_labels, mixed_images[:, 0].long())
    assert torch.equal(mixed_labels, expected_mix(labels, BOXES))
    # and a boolean mask too
    mask = images[:, 0] % 2 == 0
    assert torch.equal(BOXES.apply(mask), mixed_images[:, 0] % 2 == 0)


def test_identity_source_leaves_the_sample_unchanged():
    images = coded_images()
    boxes = CutMixBoxes(source=(0, 2, 1), starts=((0, 0, 0),) * 3, ends=((6, 5, 4),) * 3)
    mixed = boxes.apply(images)
    assert torch.equal(mixed[0], images[0])
    # the others swap whole patches
    assert torch.equal(mixed[1], images[2]) and torch.equal(mixed[2], images[1])


def test_empty_box_changes_nothing():
    images = coded_images()
    boxes = CutMixBoxes(source=(1, 2, 0), starts=((3, 2, 2),) * 3, ends=((3, 2, 2),) * 3)
    assert torch.equal(boxes.apply(images), images)


def test_input_is_not_modified_and_output_is_a_copy():
    images = coded_images()
    before = images.clone()
    mixed = BOXES.apply(images)
    assert torch.equal(images, before)
    mixed.fill_(-1)
    assert torch.equal(images, before)


@pytest.mark.parametrize("batch", [2, 4])
def test_wrong_batch_size_is_an_error(batch):
    with pytest.raises(ValueError, match="batch of 3"):
        BOXES.apply(coded_images(batch=batch))


SHAPE = (32, 24, 16)


def test_random_boxes_are_within_the_patch_and_sources_a_permutation():
    torch.manual_seed(0)
    for _ in range(50):
        boxes = random_boxes(5, SHAPE)
        assert sorted(boxes.source) == list(range(5))
        assert len(boxes.starts) == len(boxes.ends) == 5
        for start, end in zip(boxes.starts, boxes.ends):
            assert len(start) == len(end) == 3
            for a, b, side in zip(start, end, SHAPE):
                assert isinstance(a, int) and isinstance(b, int)
                assert 0 <= a <= b <= side


def test_random_boxes_are_reproducible_under_the_seed():
    torch.manual_seed(123)
    first = [random_boxes(4, SHAPE) for _ in range(3)]
    torch.manual_seed(123)
    again = [random_boxes(4, SHAPE) for _ in range(3)]
    assert first == again
    torch.manual_seed(124)
    other = [random_boxes(4, SHAPE) for _ in range(3)]
    assert other != first
    # consecutive draws differ (the global generator moves on)
    assert first[0] != first[1]


def test_one_lam_per_batch():
    """One cut ratio for the batch: before clipping each box is 2 * (int(side * cut) // 2) long
    on each axis, the same for every sample; clipped boxes are only shorter, and they start at
    0 or end at the side."""
    torch.manual_seed(7)
    unclipped_seen = 0
    for _ in range(200):
        boxes = random_boxes(6, SHAPE)
        lengths = [[b - a for a, b in zip(start, end)] for start, end in zip(boxes.starts, boxes.ends)]
        for axis, side in enumerate(SHAPE):
            unclipped = {lengths[i][axis] for i in range(6)
                         if boxes.starts[i][axis] > 0 and boxes.ends[i][axis] < side}
            unclipped_seen += len(unclipped) > 0
            assert len(unclipped) <= 1, (axis, lengths)  # the one length of the batch on this axis
            if unclipped:
                (full,) = unclipped
                assert full <= side and full % 2 == 0  # 2 * (length // 2)
                for i in range(6):  # a box clipped by an edge is only shorter
                    assert lengths[i][axis] <= full
                    if lengths[i][axis] < full:
                        assert boxes.starts[i][axis] == 0 or boxes.ends[i][axis] == side
        # the three axes share one cut: int(side * cut) is consistent with a single cut value
        cuts = []
        for axis, side in enumerate(SHAPE):
            unclipped = [lengths[i][axis] for i in range(6)
                         if boxes.starts[i][axis] > 0 and boxes.ends[i][axis] < side]
            if unclipped:
                cuts.append((axis, side, unclipped[0]))
        if len(cuts) >= 2:
            # 2 * (int(side * cut) // 2) == length  =>  cut in [length / side, (length + 2) / side)
            low = max(length / side for _, side, length in cuts)
            high = min((length + 2) / side for _, side, length in cuts)
            assert low < high, cuts
    assert unclipped_seen > 100  # the check above saw many boxes away from the edges


@pytest.mark.parametrize("seed", [0, 1, 2, 5, 42])
def test_random_boxes_are_at_most_the_drawn_length_and_even_where_unclipped(seed):
    """lam is the batch's first draw from torch's generator, so it can be read back with the
    same seed: every box is at most int(side * sqrt(1 - lam)) long, and an unclipped one is
    centre +- n // 2, an even length."""
    torch.manual_seed(seed)
    lam = torch.distributions.Beta(4.0, 4.0).sample().item()
    torch.manual_seed(seed)
    boxes = random_boxes(4, SHAPE)
    assert sorted(boxes.source) == [0, 1, 2, 3]
    for start, end in zip(boxes.starts, boxes.ends):
        for a, b, side in zip(start, end, SHAPE):
            length = int(side * (1 - lam) ** 0.5)
            assert 0 <= a <= b <= side and b - a <= length
            if 0 < a and b < side:
                assert b - a == 2 * (length // 2)


def test_random_box_centres_are_drawn_from_side_over_8():
    """A box's centre is in [side // 8, side): an unclipped box is centred there."""
    torch.manual_seed(11)
    side = 64
    seen = 0
    for _ in range(300):
        boxes = random_boxes(3, (side, side, side))
        for start, end in zip(boxes.starts, boxes.ends):
            for a, b in zip(start, end):
                if b < side and a > 0:
                    seen += 1
                    assert side // 8 <= (a + b) // 2 < side
    assert seen > 100
