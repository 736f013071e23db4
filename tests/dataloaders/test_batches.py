"""dataloaders/batches.py: the DataLoader path and the on-device path give the same batches,
whatever the number of workers, and a stream started at batch k continues the full one."""
import itertools
import random

import numpy as np
import pytest
import torch

from conftest import decode_image, training_batches, write_case
from dataloaders.batches import DeviceBatches, LoaderBatches
from dataloaders.check_data import DataProblems
from dataloaders.datasets import data_folder
from dataloaders.la_heart import LAHeart, check_patch_fits, read_case, read_shape
from dataloaders.samplers import TwoStreamBatchSampler
from dataloaders.transforms import Compose, RandomCrop, RandomRotFlip, ToTensor, sample_rng
from utils.errors import UserError

CPU = torch.device("cpu")
PATCH = (32, 32, 16)
NUM_CLASSES = 3  # the tiny cases' labels are 1 and 2


def two_stream(ids, labeled, batch_size, labeled_bs, seed):
    return TwoStreamBatchSampler(range(labeled), range(labeled, len(ids)), batch_size, batch_size - labeled_bs,
                                 seed=seed)


def volumes_of(root, ids):
    return [read_case(root, case_id) for case_id in ids]


def take(stream, count):
    return [next(stream) for _ in range(count)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for n, ((ai, al), (bi, bl)) in enumerate(zip(a, b)):
        assert torch.equal(ai, bi), f"image of batch {n}"
        assert torch.equal(al, bl), f"label of batch {n}"


def check_aligned(image, label, case_numbers=None):
    """label == (x + y + z + case) % 2 + 1 where the image is real data, 0 where it is padding."""
    image, label = image.numpy(), label.numpy()
    real = image[:, 0] > 0
    case, x, y, z = decode_image(image[:, 0])
    expected = (x + y + z + case) % 2 + 1
    np.testing.assert_array_equal(label[real], expected[real])
    assert (label[~real] == 0).all()
    if case_numbers is not None:
        for b, allowed in enumerate(case_numbers):
            assert set(np.unique(case[b][real[b]]).tolist()) <= set(allowed)


def test_read_case_and_shape(tiny_cases):
    for case_id, shape in tiny_cases.shapes.items():
        image, label = read_case(tiny_cases.root, case_id)
        assert image.shape == label.shape == shape
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert read_shape(tiny_cases.root, case_id) == shape


def test_read_case_errors(tmp_path, tiny_cases):
    with pytest.raises(UserError, match="does not exist"):
        read_case(tiny_cases.root, "no_such_case")
    with pytest.raises(UserError, match="does not exist"):
        read_shape(tiny_cases.root, "no_such_case")
    write_case(tmp_path, "bad", np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(UserError, match="differs"):
        read_case(tmp_path, "bad")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "mri_norm2.h5").write_bytes(b"not an h5 file")
    with pytest.raises(UserError, match="cannot read"):
        read_case(tmp_path, "garbage")


def test_laheart_missing_root(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        LAHeart(tmp_path / "missing", ["a"])


def test_check_patch_fits():
    shapes = {"a": (40, 30, 20), "b": (30, 50, 10)}
    check_patch_fits(shapes, (32, 48, 16))  # each axis fits some volume
    with pytest.raises(UserError, match="axis 0"):
        check_patch_fits(shapes, (48, 32, 16))
    with pytest.raises(UserError, match="axis 2 .largest is 20"):
        check_patch_fits(shapes, (16, 16, 32))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_and_device_batches_identical(tiny_cases, num_workers):
    ids, seed = tiny_cases.ids, 5
    loader = LoaderBatches(tiny_cases.root, ids, two_stream(ids, 2, 3, 2, seed), patch_size=PATCH, seed=seed,
                           device=CPU, num_workers=num_workers)
    device = DeviceBatches(volumes_of(tiny_cases.root, ids), two_stream(ids, 2, 3, 2, seed), patch_size=PATCH,
                           seed=seed, device=CPU)
    padded_seen = False
    for _ in range(10):  # 2 labeled, 2 per batch: one batch per epoch, so this crosses epochs
        (li, ll), (di, dl) = next(loader), next(device)
        assert li.shape == di.shape == (3, 1, *PATCH)
        assert ll.shape == dl.shape == (3, *PATCH)
        assert li.dtype == di.dtype == torch.float32
        assert ll.dtype == dl.dtype == torch.int64
        assert torch.equal(li, di)
        assert torch.equal(ll, dl)
        check_aligned(li, ll, case_numbers=[[0, 1], [0, 1], [2, 3]])
        padded_seen |= bool((li == 0).any())
    assert padded_seen, "case_d (20 voxels along x) must have been padded at least once"


def test_batches_follow_the_sampler_and_sample_rng(tiny_cases):
    """Batch n holds the sampler's cases of batch n, each augmented from sample_rng(seed, n, position)."""
    ids, seed = tiny_cases.ids, 8
    sampler = two_stream(ids, 2, 4, 2, seed)
    stream = DeviceBatches(volumes_of(tiny_cases.root, ids), two_stream(ids, 2, 4, 2, seed), patch_size=PATCH,
                           seed=seed, device=CPU)
    transform = Compose([RandomRotFlip(), RandomCrop(PATCH), ToTensor()])
    for n, (image, label) in enumerate(take(stream, 4)):
        for position, index in enumerate(sampler.batch(n)):
            image_np, label_np = read_case(tiny_cases.root, ids[index])
            expected = transform({"image": image_np, "label": label_np}, sample_rng(seed, n, position))
            assert torch.equal(image[position], expected["image"]), (n, position)
            assert torch.equal(label[position], expected["label"]), (n, position)


def test_laheart_seeded_item_uses_sample_rng(tiny_cases):
    transform = Compose([RandomRotFlip(), RandomCrop(PATCH), ToTensor()])
    dataset = LAHeart(tiny_cases.root, tiny_cases.ids, transform=transform, seed=4)
    image, label = read_case(tiny_cases.root, tiny_cases.ids[2])
    for n, position in [(0, 0), (0, 1), (7, 0), (7, 3)]:
        got = dataset[(2, n, position)]
        expected = transform({"image": image, "label": label}, sample_rng(4, n, position))
        assert torch.equal(got["image"], expected["image"]) and torch.equal(got["label"], expected["label"])
        assert got["case"] == tiny_cases.ids[2]
        again = dataset[(2, n, position)]  # the same item twice: the same augmentation, no hidden state
        assert torch.equal(again["image"], got["image"])
    assert not torch.equal(dataset[(2, 0, 0)]["image"], dataset[(2, 0, 1)]["image"])
    assert not torch.equal(dataset[(2, 0, 0)]["image"], dataset[(2, 1, 0)]["image"])
    other = LAHeart(tiny_cases.root, tiny_cases.ids, transform=transform, seed=5)
    assert not torch.equal(other[(2, 0, 0)]["image"], dataset[(2, 0, 0)]["image"])


def test_sample_rng_streams_are_distinct():
    firsts = {sample_rng(seed, n, p).integers(0, 2**62) for seed in (0, 1) for n in range(20) for p in range(4)}
    assert len(firsts) == 2 * 20 * 4
    assert sample_rng(3, 4, 1).integers(0, 2**62) == sample_rng(3, 4, 1).integers(0, 2**62)


@pytest.mark.parametrize("labeled_bs,batch_size,n_unlabeled", [(2, 4, 2), (2, 2, 0)])
def test_make_training_batches_paths_identical(tiny_cases, labeled_bs, batch_size, n_unlabeled):
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:2 + n_unlabeled]
    streams = [training_batches(tiny_cases.root, labeled, unlabeled, batch_size, labeled_bs, PATCH, NUM_CLASSES,
                                     seed=3, device=CPU, on_device=on_device, num_workers=0)
               for on_device in (False, True)]
    assert isinstance(streams[0], LoaderBatches) and isinstance(streams[1], DeviceBatches)
    for a, b in itertools.islice(zip(*streams), 6):
        assert a[0].shape == (batch_size, 1, *PATCH) and a[1].shape == (batch_size, *PATCH)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        check_aligned(a[0][:labeled_bs], a[1][:labeled_bs], case_numbers=[[0, 1]] * labeled_bs)
        # the unlabeled cases' labels are never read: their places hold the all-zero placeholder
        real = a[0][labeled_bs:, 0] > 0
        assert set(np.unique(decode_image(a[0][labeled_bs:, 0].numpy())[0][real.numpy()]).tolist()) <= {2, 3}
        assert not a[1][labeled_bs:].any()


def test_crop_margin_same_on_both_paths_and_reaches_outside(tiny_cases):
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:4]
    streams = [training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=3,
                                     device=CPU, on_device=on_device, num_workers=0, crop_margin=(0, 0, 6))
               for on_device in (False, True)]
    empty_slices = 0
    for a, b in itertools.islice(zip(*streams), 8):
        assert a[0].shape == (4, 1, *PATCH)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        empty_slices += int((a[0] == 0).all(dim=(1, 2, 3)).sum())  # (B, Z) slices wholly outside
    assert empty_slices > 0  # some crops reach past the volume's ends along z


def test_mirrored_crop_margin_same_on_both_paths_and_never_zero(tiny_cases):
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:4]
    streams = [training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=3,
                                     device=CPU, on_device=on_device, num_workers=0, crop_margin=(0, 0, 6),
                                     crop_fill="mirror")
               for on_device in (False, True)]
    zero = training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=3, device=CPU,
                                 on_device=True, crop_margin=(0, 0, 6))
    differs = 0
    for a, b, z in itertools.islice(zip(*streams, zero), 8):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not (a[0] == 0).all(dim=(1, 2, 3)).any()  # no slice wholly outside the volume
        inside = ~(z[0] == 0).all(dim=(1, 2, 3), keepdim=True).expand_as(z[0])  # the zero fill's volume slices
        assert torch.equal(a[0][inside], z[0][inside])
        differs += int((a[0] != z[0]).any())
    assert differs > 0


def test_mirrored_crop_margin_larger_than_a_volume_is_refused(tiny_cases):
    with pytest.raises(UserError, match="too large to mirror.*--crop_fill zero"):
        training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:4], 4, 2, PATCH, NUM_CLASSES,
                              seed=3, device=CPU, on_device=True, crop_margin=(0, 0, 500), crop_fill="mirror")


def test_batches_do_not_depend_on_the_number_of_workers(tiny_cases):
    """Each sample's augmentation comes from (seed, batch, position), not from a worker's stream."""
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:]
    reference = take(training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=12,
                                           device=CPU, on_device=True), 7)
    for num_workers in (0, 1, 2):
        stream = training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=12,
                                       device=CPU, on_device=False, num_workers=num_workers)
        assert_same_batches(take(stream, 7), reference)


@pytest.mark.parametrize("on_device,num_workers", [(True, 0), (False, 0), (False, 2)])
@pytest.mark.parametrize("start", [1, 4])
def test_start_batch_continues_the_stream(tiny_cases, on_device, num_workers, start):
    """A resumed run (start_batch k) gets batches k, k+1, ... of the uninterrupted run."""
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:]

    def stream(start_batch):
        return training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=2,
                                     device=CPU, on_device=on_device, num_workers=num_workers,
                                     start_batch=start_batch)

    full = take(stream(0), start + 3)
    assert_same_batches(take(stream(start), 3), full[start:])


def test_make_training_batches_seed_matters(tiny_cases):
    def first(seed):
        return next(training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH,
                                          NUM_CLASSES, seed=seed, device=CPU, on_device=True))[0]

    assert torch.equal(first(1), first(1))
    assert not torch.equal(first(1), first(2))


@pytest.mark.parametrize("patch", [(48, 32, 16), (32, 48, 16), (32, 32, 32)])
def test_make_training_batches_patch_too_large(tiny_cases, patch):
    with pytest.raises(UserError, match="larger than every volume"):
        training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, patch, NUM_CLASSES,
                              seed=0, device=CPU, on_device=True)


def test_make_training_batches_missing_case(tiny_cases):
    with pytest.raises(UserError, match="'ghost'"):
        training_batches(tiny_cases.root, tiny_cases.ids[:2], ["ghost"], 4, 2, PATCH, NUM_CLASSES, seed=0,
                              device=CPU, on_device=False, num_workers=0)


@pytest.mark.parametrize("on_device", [True, False])
def test_make_training_batches_checks_every_case_first(tiny_cases, on_device):
    """All problems at once, one line each, before any worker starts: a missing case and labels
    outside the classes (the tiny cases hold 1 and 2, so with 2 classes every labeled case
    fails; the unlabeled cases' labels are never read, so theirs do not)."""
    with pytest.raises(DataProblems) as info:
        training_batches(tiny_cases.root, tiny_cases.ids[:2], ["ghost", *tiny_cases.ids[2:]], 4, 2, PATCH, 2,
                              seed=0, device=CPU, on_device=on_device, num_workers=2)
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert problems[2].startswith("case ghost:")
    for case_id, problem in zip(tiny_cases.ids[:2], problems[:2]):
        assert problem.startswith(f"case {case_id}:") and "label value(s) 2" in problem, problem
    assert str(info.value).splitlines()[0] == "3 problem(s) in the data:"


def test_two_workers_aligned_and_not_identical(tiny_cases):
    """Every batch is case_a alone, so two workers with the same augmentation stream would
    give batch 2k == batch 2k+1; and the batches are those of the main process."""
    ids = ["case_a"]
    two = LoaderBatches(tiny_cases.root, ids, TwoStreamBatchSampler([0], [], 1, 0, seed=0), patch_size=PATCH, seed=7,
                        device=CPU, num_workers=2)
    got = take(two, 12)
    for image, label in got:
        assert image.shape == (1, 1, *PATCH) and label.shape == (1, *PATCH)
        check_aligned(image, label, case_numbers=[[0]])
    equal_pairs = sum(torch.equal(got[2 * k][0], got[2 * k + 1][0]) for k in range(6))
    assert equal_pairs <= 1
    assert len({g[0].numpy().tobytes() for g in got}) >= 8
    zero = LoaderBatches(tiny_cases.root, ids, TwoStreamBatchSampler([0], [], 1, 0, seed=0), patch_size=PATCH, seed=7,
                        device=CPU, num_workers=0)
    assert_same_batches(take(zero, 12), got)


def global_streams():
    return torch.rand(3), np.random.random_sample(3), random.random()


def seed_globals():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


@pytest.mark.parametrize("on_device,num_workers", [(True, 0), (False, 0), (False, 2)])
def test_batches_leave_global_rngs_alone(tiny_cases, on_device, num_workers):
    seed_globals()
    expected = global_streams()
    seed_globals()
    stream = training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH,
                                   NUM_CLASSES, seed=0, device=CPU, on_device=on_device, num_workers=num_workers)
    first = take(stream, 2)
    got = global_streams()
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    # ... and do not depend on them either
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    again = training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH,
                                  NUM_CLASSES, seed=0, device=CPU, on_device=on_device, num_workers=num_workers)
    assert_same_batches(take(again, 2), first)


def test_case_normalization_z_scores_each_image(tiny_cases):
    root = tiny_cases.root
    for case_id in tiny_cases.ids:
        stored, label = read_case(root, case_id)
        image, same_label = data_folder(root, "case").read(case_id)
        assert image.dtype == np.float32 and np.array_equal(label, same_label)
        assert abs(float(image.mean())) < 1e-5 and float(image.std()) == pytest.approx(1, abs=1e-5)
        np.testing.assert_allclose(image, (stored - stored.mean(dtype=np.float64)) / stored.std(dtype=np.float64),
                                   atol=1e-5)
        assert np.array_equal(data_folder(root, "none").read(case_id)[0], stored)
    with pytest.raises(UserError, match="unknown normalization 'minmax'"):
        data_folder(root, "minmax")


def test_both_data_paths_see_normalized_images(tiny_cases):
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:]
    streams = [training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=7,
                                     device=CPU, on_device=on_device, num_workers=2, normalize="case")
               for on_device in (False, True)]
    stored = training_batches(tiny_cases.root, labeled, unlabeled, 4, 2, PATCH, NUM_CLASSES, seed=7,
                                   device=CPU, on_device=True)
    for (li, ll), (di, dl), (si, sl) in itertools.islice(zip(*streams, stored), 4):
        assert torch.equal(li, di) and torch.equal(ll, dl) and torch.equal(ll, sl)
        assert float(di.abs().max()) < 10 < float(si.abs().max())  # z-scores, not the stored 1e6-scale codes
