"""dataloaders/transforms.py: image/label alignment, shapes, padding, crops, tensors."""
import numpy as np
import pytest
import torch

from dataloaders.transforms import (CenterCrop, Compose, RandomCrop, RandomRotFlip, ToTensor, center_crop_start,
                                    draw_crop_start, draw_rot_flip, mirrored_indices, padding_to, sample_rng)


def coded_sample(shape):
    """image encodes (x, y, z) as 1 + 10000 x + 100 y + z; label = (x + 2 y + 3 z) % 4 (from coordinates)."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    image = (1 + 10_000 * x + 100 * y + z).astype(np.float32)
    label = ((x + 2 * y + 3 * z) % 4).astype(np.uint8)
    return {"image": image, "label": label, "case": "c"}


def decode(image):
    v = np.rint(np.asarray(image, np.float64)).astype(np.int64) - 1
    x, rest = np.divmod(v, 10_000)
    y, z = np.divmod(rest, 100)
    return x, y, z


def label_of(image):
    x, y, z = decode(image)
    return (x + 2 * y + 3 * z) % 4


# ---------------------------------------------------------------- random draws
def test_draw_rot_flip_ranges_and_all_values_occur():
    rng = np.random.default_rng(0)
    draws = [draw_rot_flip(rng) for _ in range(400)]
    assert set(draws) == {(k, mirror) for k in range(4) for mirror in (False, True)}
    assert all(type(k) is int and type(mirror) is bool for k, mirror in draws)


def test_draw_crop_start_in_range_and_covers_extremes():
    rng = np.random.default_rng(1)
    starts = [draw_crop_start(rng, (20, 16, 9), (16, 16, 8)) for _ in range(300)]
    assert {s[0] for s in starts} == set(range(5))
    assert {s[1] for s in starts} == {0}
    assert {s[2] for s in starts} == {0, 1}


def test_sample_rng_is_a_pure_function_of_seed_batch_and_position():
    """The stream of one sample: the same wherever it is made (worker, main process, after a resume)."""
    draws = lambda rng: (draw_rot_flip(rng), draw_crop_start(rng, (40, 40, 20), (16, 16, 8)))  # noqa: E731
    assert draws(sample_rng(3, 10, 1)) == draws(sample_rng(3, 10, 1))
    assert draws(sample_rng(3, 10, 1)) == draws(np.random.default_rng([3, 2, 10, 1]))
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    outs = {draws(sample_rng(seed, n, p)) for seed in (0, 1) for n in range(10) for p in range(4)}
    assert len(outs) > 60  # 80 streams; a few collisions among 8 x 25 x 25 x 13 outcomes at most
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # the global stream is not used


def test_padding_and_center_helpers():
    assert padding_to((10, 16, 20), (16, 16, 16)) == [(3, 3), (0, 0), (0, 0)]
    assert padding_to((11, 5, 16), (16, 8, 16)) == [(2, 3), (1, 2), (0, 0)]
    assert center_crop_start((20, 31, 8), (16, 16, 8)) == (2, 7, 0)


# ---------------------------------------------------------------- RandomRotFlip
@pytest.mark.parametrize("seed", range(12))
def test_rot_flip_keeps_image_and_label_aligned(seed):
    sample = coded_sample((6, 5, 4))
    out = RandomRotFlip()(sample, np.random.default_rng(seed))
    assert out["image"].shape[2] == 4 and sorted(out["image"].shape[:2]) == [5, 6]
    assert out["image"].shape == out["label"].shape
    np.testing.assert_array_equal(out["label"], label_of(out["image"]))
    # a permutation of the voxels, z untouched
    np.testing.assert_array_equal(np.sort(out["image"], axis=None), np.sort(sample["image"], axis=None))
    _, _, z = decode(out["image"])
    np.testing.assert_array_equal(z, np.broadcast_to(np.arange(4), z.shape))
    assert out["image"].flags.c_contiguous and out["label"].flags.c_contiguous
    assert out["case"] == "c"


def test_rot_flip_uses_k_then_mirror():
    sample = coded_sample((4, 4, 2))
    for seed in range(8):
        k, mirror_x = draw_rot_flip(np.random.default_rng(seed))
        out = RandomRotFlip()(sample, np.random.default_rng(seed))
        expected = sample["image"]
        for _ in range(k):  # one quarter turn in the x/y plane: new[i, j] = old[j, n - 1 - i]
            n = expected.shape[1]
            expected = np.stack([expected[:, n - 1 - i] for i in range(n)], axis=0)
        expected = expected[::-1] if mirror_x else expected
        np.testing.assert_array_equal(out["image"], expected)


def test_rot_flip_outputs_are_the_eight_symmetries_with_the_scan_as_stored():
    """The four rotations (the unchanged volume among them) and the four reflections of the
    square, each about an eighth of the time: training sees the orientation it is evaluated
    in (UA-MT's RandomRotFlip, always mirroring, never showed it)."""
    sample = coded_sample((3, 3, 1))
    rng = np.random.default_rng(3)
    counts = {}
    for _ in range(800):
        out = RandomRotFlip()(sample, rng)["image"]
        counts[out.tobytes()] = counts.get(out.tobytes(), 0) + 1
    rotations = {np.rot90(sample["image"], k, axes=(0, 1)).tobytes() for k in range(4)}
    reflections = {np.rot90(sample["image"], k, axes=(0, 1))[::-1].tobytes() for k in range(4)}
    assert set(counts) == rotations | reflections and len(counts) == 8
    assert sample["image"].tobytes() in counts
    assert all(60 <= n <= 140 for n in counts.values())  # 100 expected each


def test_rot_flip_does_not_modify_input():
    sample = coded_sample((4, 3, 2))
    copy = {k: v.copy() for k, v in sample.items() if k != "case"}
    RandomRotFlip()(sample, np.random.default_rng(0))
    np.testing.assert_array_equal(sample["image"], copy["image"])
    np.testing.assert_array_equal(sample["label"], copy["label"])


# ---------------------------------------------------------------- RandomCrop
@pytest.mark.parametrize("seed", range(8))
def test_random_crop_shape_alignment_contiguous_block(seed):
    sample = coded_sample((24, 20, 12))
    patch = (16, 16, 8)
    out = RandomCrop(patch)(sample, np.random.default_rng(seed))
    assert out["image"].shape == patch == out["label"].shape
    np.testing.assert_array_equal(out["label"], label_of(out["image"]))
    x, y, z = decode(out["image"])
    x0, y0, z0 = x[0, 0, 0], y[0, 0, 0], z[0, 0, 0]
    assert 0 <= x0 <= 8 and 0 <= y0 <= 4 and 0 <= z0 <= 4
    np.testing.assert_array_equal(out["image"], sample["image"][x0:x0 + 16, y0:y0 + 16, z0:z0 + 8])


def test_random_crop_start_matches_draw():
    sample = coded_sample((24, 20, 12))
    start = draw_crop_start(np.random.default_rng(9), (24, 20, 12), (16, 16, 8))
    out = RandomCrop((16, 16, 8))(sample, np.random.default_rng(9))
    assert tuple(int(c[0, 0, 0]) for c in decode(out["image"])) == start


def test_random_crop_pads_with_zeros_when_smaller():
    sample = coded_sample((10, 20, 5))  # x: 10 < 16 (pad 3 + 3), z: 5 < 8 (pad 1 + 2)
    for seed in range(5):
        out = RandomCrop((16, 16, 8))(sample, np.random.default_rng(seed))
        image, label = out["image"], out["label"]
        assert image.shape == (16, 16, 8) == label.shape
        inside = np.zeros(image.shape, bool)
        inside[3:13, :, 1:6] = True
        assert (image[~inside] == 0).all() and (label[~inside] == 0).all()
        assert (image[inside] > 0).all()
        x, y, z = decode(image[3:13, :, 1:6])
        np.testing.assert_array_equal(x[:, 0, 0], np.arange(10))
        np.testing.assert_array_equal(z[0, 0, :], np.arange(5))
        np.testing.assert_array_equal(label[inside].reshape(10, 16, 5), label_of(image[3:13, :, 1:6]))


def test_random_crop_margin_reaches_beyond_the_volume():
    """With a margin of 4 along z the crop start ranges over -4..+4 of the volume (8 - 8 + 2*4),
    and what lies outside the volume is zero image and background label."""
    sample = coded_sample((16, 16, 8))
    z_starts = set()
    for seed in range(60):
        out = RandomCrop((16, 16, 8), margin=(0, 0, 4))(sample, np.random.default_rng(seed))
        image, label = out["image"], out["label"]
        assert image.shape == (16, 16, 8) == label.shape
        inside = (image > 0).all(axis=(0, 1))
        assert inside.any() and (image[:, :, ~inside] == 0).all() and (label[:, :, ~inside] == 0).all()
        first = int(np.argmax(inside))
        z = decode(image[:, :, inside])[2][0, 0]
        z_starts.add(int(z[0]) - first)  # volume slice at the crop's first slice (negative: outside)
        np.testing.assert_array_equal(label[:, :, inside], label_of(image[:, :, inside]))
    assert z_starts == set(range(-4, 5))


def test_mirrored_indices_reflect_about_the_end_voxels():
    np.testing.assert_array_equal(mirrored_indices(5, -3, 11), [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])
    np.testing.assert_array_equal(mirrored_indices(5, 1, 3), [1, 2, 3])


@pytest.mark.parametrize("seed", range(20))
def test_mirrored_margin_draws_the_zero_margin_position_and_mirrors_the_volume(seed):
    """The same rng gives the crop the same place with either fill; inside the volume the two
    agree, outside the mirror holds the volume's own voxels (label matching image)."""
    sample = coded_sample((16, 12, 8))
    zero = RandomCrop((16, 12, 8), margin=(0, 2, 5))(sample, np.random.default_rng(seed))
    mirror = RandomCrop((16, 12, 8), margin=(0, 2, 5), fill="mirror")(sample, np.random.default_rng(seed))
    inside = zero["image"] > 0
    np.testing.assert_array_equal(mirror["image"][inside], zero["image"][inside])
    assert (mirror["image"] > 0).all()
    np.testing.assert_array_equal(mirror["label"], label_of(mirror["image"]))
    inside_z = inside.any(axis=(0, 1))
    first = int(np.argmax(inside_z))
    volume_slice = int(decode(zero["image"][:, :, first][inside[:, :, first]])[2][0])
    start = volume_slice - first  # the volume slice at the crop's first slice (negative: outside)
    np.testing.assert_array_equal(decode(mirror["image"])[2][0, 0], mirrored_indices(8, start, 8))


def test_mirrored_margin_keeps_zero_padding_for_volumes_smaller_than_the_patch():
    sample = coded_sample((10, 16, 8))  # x is 6 short of the patch: zeros there, as without a margin
    out = RandomCrop((16, 16, 8), margin=(0, 0, 3), fill="mirror")(sample, np.random.default_rng(1))
    assert out["image"].shape == (16, 16, 8)
    assert (out["image"][:3] == 0).all() and (out["image"][13:] == 0).all() and (out["label"][:3] == 0).all()
    assert (out["image"][3:13] > 0).all()


def test_padding_to_adds_the_margin_then_what_the_patch_needs():
    assert padding_to((10, 20, 5), (16, 16, 8), (0, 2, 1)) == [(3, 3), (2, 2), (1, 2)]
    assert padding_to((10, 20, 5), (16, 16, 8)) == [(3, 3), (0, 0), (1, 2)]


def test_random_crop_exact_size_is_identity():
    sample = coded_sample((16, 16, 8))
    out = RandomCrop((16, 16, 8))(sample, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], sample["image"])
    np.testing.assert_array_equal(out["label"], sample["label"])


# ---------------------------------------------------------------- CenterCrop
def test_center_crop_is_centered():
    sample = coded_sample((21, 30, 10))
    out = CenterCrop((16, 16, 8))(sample)
    assert out["image"].shape == (16, 16, 8)
    x, y, z = decode(out["image"])
    assert (x[0, 0, 0], y[0, 0, 0], z[0, 0, 0]) == (2, 7, 1)
    np.testing.assert_array_equal(out["image"], sample["image"][2:18, 7:23, 1:9])
    np.testing.assert_array_equal(out["label"], label_of(out["image"]))


def test_center_crop_pads_when_smaller():
    sample = coded_sample((12, 16, 8))
    out = CenterCrop((16, 16, 8))(sample)
    assert (out["image"][:2] == 0).all() and (out["image"][14:] == 0).all()
    np.testing.assert_array_equal(out["image"][2:14], sample["image"])
    np.testing.assert_array_equal(out["label"][2:14], sample["label"])


def test_center_crop_ignores_rng():
    sample = coded_sample((20, 20, 10))
    a = CenterCrop((16, 16, 8))(sample, np.random.default_rng(0))
    b = CenterCrop((16, 16, 8))(sample, None)
    np.testing.assert_array_equal(a["image"], b["image"])


# ---------------------------------------------------------------- ToTensor / Compose
def test_to_tensor_shapes_and_dtypes():
    sample = coded_sample((5, 4, 3))
    sample["image"] = np.flip(sample["image"], axis=0).astype(np.float64)  # non-contiguous, float64
    out = ToTensor()(sample)
    assert out["image"].shape == (1, 5, 4, 3) and out["image"].dtype == torch.float32
    assert out["label"].shape == (5, 4, 3) and out["label"].dtype == torch.int64
    np.testing.assert_array_equal(out["image"][0].numpy(), sample["image"].astype(np.float32))
    np.testing.assert_array_equal(out["label"].numpy(), sample["label"].astype(np.int64))
    assert out["case"] == "c"


def test_compose_threads_one_rng_through():
    patch = (16, 16, 8)
    sample = coded_sample((20, 18, 10))
    out = Compose([RandomRotFlip(), RandomCrop(patch), ToTensor()])(sample, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    expected = ToTensor()(RandomCrop(patch)(RandomRotFlip()(sample, rng), rng))
    assert torch.equal(out["image"], expected["image"])
    assert torch.equal(out["label"], expected["label"])
    assert out["image"].shape == (1, *patch) and out["label"].shape == patch
    np.testing.assert_array_equal(out["label"].numpy(), label_of(out["image"][0].numpy()))


def test_compose_same_seed_same_output_different_seed_differs():
    sample = coded_sample((30, 30, 12))
    t = Compose([RandomRotFlip(), RandomCrop((16, 16, 8))])
    a = t(sample, np.random.default_rng(4))["image"]
    b = t(sample, np.random.default_rng(4))["image"]
    outs = {t(sample, np.random.default_rng(s))["image"].tobytes() for s in range(10)}
    np.testing.assert_array_equal(a, b)
    assert len(outs) > 1
