"""dataloaders/batches.py: the DataLoader path and the on-device path give the same batches."""
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import dataloaders.batches as batches_module
from conftest import decode_image, write_case
from dataloaders.batches import DeviceBatches, LoaderBatches, make_training_batches, read_volumes, seed_worker
from dataloaders.la_heart import LAHeart, check_patch_fits, read_case, read_shape
from dataloaders.samplers import TwoStreamBatchSampler
from utils.errors import UserError

CPU = torch.device("cpu")
PATCH = (32, 32, 16)


def two_stream(ids, labeled, batch_size, labeled_bs, seed):
    return TwoStreamBatchSampler(range(labeled), range(labeled, len(ids)), batch_size, batch_size - labeled_bs,
                                 rng=np.random.default_rng([seed, 0]))


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


def test_loader_and_device_batches_identical(tiny_cases):
    ids, seed = tiny_cases.ids, 5
    loader = LoaderBatches(tiny_cases.root, ids, two_stream(ids, 2, 3, 2, seed), PATCH,
                           np.random.default_rng([seed, 1]), CPU, num_workers=0, seed=seed)
    device = DeviceBatches(read_volumes(tiny_cases.root, ids), two_stream(ids, 2, 3, 2, seed), PATCH,
                           np.random.default_rng([seed, 1]), CPU)
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


@pytest.mark.parametrize("labeled_bs,batch_size,n_unlabeled", [(2, 4, 2), (2, 2, 0)])
def test_make_training_batches_paths_identical(tiny_cases, labeled_bs, batch_size, n_unlabeled):
    labeled, unlabeled = tiny_cases.ids[:2], tiny_cases.ids[2:2 + n_unlabeled]
    streams = [make_training_batches(tiny_cases.root, labeled, unlabeled, batch_size, labeled_bs, PATCH, seed=3,
                                     device=CPU, on_device=on_device, num_workers=0)
               for on_device in (False, True)]
    assert isinstance(streams[0], LoaderBatches) and isinstance(streams[1], DeviceBatches)
    allowed = [[0, 1]] * labeled_bs + [[2, 3]] * (batch_size - labeled_bs)
    for a, b in itertools.islice(zip(*streams), 6):
        assert a[0].shape == (batch_size, 1, *PATCH) and a[1].shape == (batch_size, *PATCH)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        check_aligned(*a, case_numbers=allowed)


def test_make_training_batches_seed_matters(tiny_cases):
    def first(seed):
        return next(make_training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH,
                                          seed=seed, device=CPU, on_device=True))[0]

    assert torch.equal(first(1), first(1))
    assert not torch.equal(first(1), first(2))


@pytest.mark.parametrize("patch", [(48, 32, 16), (32, 48, 16), (32, 32, 32)])
def test_make_training_batches_patch_too_large(tiny_cases, patch):
    with pytest.raises(UserError, match="larger than every volume"):
        make_training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, patch, seed=0,
                              device=CPU, on_device=True)


def test_make_training_batches_missing_case(tiny_cases):
    with pytest.raises(UserError, match="'ghost'"):
        make_training_batches(tiny_cases.root, tiny_cases.ids[:2], ["ghost"], 4, 2, PATCH, seed=0,
                              device=CPU, on_device=False, num_workers=0)


def test_two_workers_aligned_and_not_identical(tiny_cases):
    """Every batch is case_a alone, so two workers with the same augmentation stream would
    give batch 2k == batch 2k+1."""
    ids = ["case_a"]
    sampler = TwoStreamBatchSampler([0], [], 1, 0, rng=np.random.default_rng(0))
    loader = LoaderBatches(tiny_cases.root, ids, sampler, PATCH, np.random.default_rng(1), CPU,
                           num_workers=2, seed=7)
    got = [next(loader) for _ in range(12)]
    for image, label in got:
        assert image.shape == (1, 1, *PATCH) and label.shape == (1, *PATCH)
        check_aligned(image, label, case_numbers=[[0]])
    equal_pairs = sum(torch.equal(got[2 * k][0], got[2 * k + 1][0]) for k in range(6))
    assert equal_pairs <= 1
    assert len({g[0].numpy().tobytes() for g in got}) >= 8


def test_loader_batches_leave_torch_global_rng_alone(tiny_cases):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make_training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH, seed=0,
                          device=CPU, on_device=False, num_workers=0)
    assert torch.equal(torch.rand(3), expected)


def test_device_batches_leave_torch_global_rng_alone(tiny_cases):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    stream = make_training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH, seed=0,
                                   device=CPU, on_device=True)
    next(stream)
    assert torch.equal(torch.rand(3), expected)


def test_worker_streams_distinct_from_sampler_and_augment_streams(tiny_cases, monkeypatch):
    seed = 11
    stream = make_training_batches(tiny_cases.root, tiny_cases.ids[:2], tiny_cases.ids[2:], 4, 2, PATCH,
                                   seed=seed, device=CPU, on_device=False, num_workers=0)
    sampler_rng = stream.loader.batch_sampler.batch_sampler.rng
    augment_rng = stream.loader.dataset.rng
    fresh = lambda rng: rng.bit_generator.state["state"]["state"]  # noqa: E731
    own = {fresh(sampler_rng), fresh(augment_rng)}
    for worker_id in range(2):
        dataset = SimpleNamespace(rng=None)
        monkeypatch.setattr(batches_module, "get_worker_info", lambda: SimpleNamespace(dataset=dataset))
        seed_worker(worker_id, seed)
        assert fresh(dataset.rng) not in own, f"worker {worker_id}"
        own.add(fresh(dataset.rng))


