"""utils/intensity_perturbation.py: the brightness/contrast change by hand, and the strong
intensity view's probabilities, noise bounds, shapes and seeding."""
import pytest
import torch

from utils.intensity_perturbation import brightness_contrast, strong_intensity_view


def column(values, dtype=torch.float32):
    """(1, 1, N, 1, 1): one patch, one channel, N voxels along x."""
    return torch.tensor(values, dtype=dtype).reshape(1, 1, -1, 1, 1)


def test_brightness_contrast_by_hand():
    # patch 0: 10..14, min 10, span 4 -> x = 0, .25, .5, .75, 1 -> y = 2x = 0, .5, 1, 1.5, 2 (mean 1)
    #          -> y - .5 * 1 = -.5, 0, .5, 1, 1.5 -> clipped 0, 0, .5, 1, 1 -> back: 10, 10, 12, 14, 14
    # patch 1: -2..2, min -2, span 4 -> y = .5x = 0, .125, .25, .375, .5 (mean .25)
    #          -> y + .25 * .25 = .0625, .1875, .3125, .4375, .5625 -> back: -1.75, -1.25, -.75, -.25, .25
    images = torch.cat([column([10.0, 11.0, 12.0, 13.0, 14.0]), column([-2.0, -1.0, 0.0, 1.0, 2.0])])
    out = brightness_contrast(images, alpha=torch.tensor([2.0, 0.5]), beta=torch.tensor([-0.5, 0.25]))
    assert out.shape == images.shape and out.dtype == images.dtype
    torch.testing.assert_close(out.flatten(1), torch.tensor([[10.0, 10.0, 12.0, 14.0, 14.0],
                                                             [-1.75, -1.25, -0.75, -0.25, 0.25]]), rtol=0, atol=1e-6)


def test_brightness_contrast_identity_and_values_0_to_4():
    images = column([0.0, 1.0, 2.0, 3.0, 4.0])
    same = brightness_contrast(images, alpha=torch.tensor([1.0]), beta=torch.tensor([0.0]))
    torch.testing.assert_close(same, images, rtol=0, atol=1e-6)
    out = brightness_contrast(images, alpha=torch.tensor([2.0]), beta=torch.tensor([-0.5]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.0, 2.0, 4.0, 4.0]), rtol=0, atol=1e-6)
    # a pure brightness shift: + .5 x the mean (.5) of x = 0, .25, .5, .75, 1, saturating at the maximum
    up = brightness_contrast(images, alpha=torch.tensor([1.0]), beta=torch.tensor([0.5]))
    torch.testing.assert_close(up.flatten(), torch.tensor([1.0, 2.0, 3.0, 4.0, 4.0]), rtol=0, atol=1e-6)
    # a darker patch (x = 0, 0, 0, 0, 1, mean .2) moves less: + .5 x .2 = .1 of its span
    dark = column([0.0, 0.0, 0.0, 0.0, 10.0])
    shifted = brightness_contrast(dark, alpha=torch.tensor([1.0]), beta=torch.tensor([0.5]))
    torch.testing.assert_close(shifted.flatten(), torch.tensor([1.0, 1.0, 1.0, 1.0, 10.0]), rtol=0, atol=1e-6)


def test_brightness_contrast_min_max_over_all_channels_of_a_patch():
    # channel 0: 0, 2; channel 1: 4, 8 -> patch min 0, span 8; alpha .5, beta 0 halves the values
    images = torch.tensor([[0.0, 2.0], [4.0, 8.0]]).reshape(1, 2, 2, 1, 1)
    out = brightness_contrast(images, alpha=torch.tensor([0.5]), beta=torch.tensor([0.0]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 1.0, 2.0, 4.0]), rtol=0, atol=1e-6)


def test_constant_patch_is_unchanged():
    images = torch.cat([torch.full((1, 1, 3, 2, 2), 5.0), torch.arange(12.0).reshape(1, 1, 3, 2, 2)])
    out = brightness_contrast(images, alpha=torch.tensor([2.0, 2.0]), beta=torch.tensor([0.3, 0.3]))
    assert torch.equal(out[0], images[0])
    assert torch.isfinite(out).all()
    assert not torch.equal(out[1], images[1])
    zeros = torch.zeros(2, 1, 2, 2, 2)
    assert torch.equal(brightness_contrast(zeros, alpha=torch.tensor([1.5, 0.5]), beta=torch.tensor([.1, -.1])), zeros)


def test_output_stays_within_each_patch_original_range():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 5, 4, 3, generator=g) * torch.tensor([1.0, 3.0, 0.1, 10.0, 2.0, 0.5]).reshape(-1, 1, 1, 1, 1)
    alpha = torch.tensor([0.5, 1.5, 2.0, 0.8, 1.2, 1.0])
    beta = torch.tensor([-0.5, 0.5, 0.0, 0.3, -0.3, 0.49])
    out = brightness_contrast(images, alpha=alpha, beta=beta)
    low, high = images.amin(dim=(1, 2, 3, 4)), images.amax(dim=(1, 2, 3, 4))
    span = high - low
    tol = 1e-6 * span
    assert (out.amin(dim=(1, 2, 3, 4)) >= low - tol).all()
    assert (out.amax(dim=(1, 2, 3, 4)) <= high + tol).all()


def test_brightness_contrast_leaves_its_input_alone():
    images = column([0.0, 1.0, 2.0, 3.0, 4.0])
    before = images.clone()
    brightness_contrast(images, alpha=torch.tensor([2.0]), beta=torch.tensor([-0.5]))
    assert torch.equal(images, before)


def images_batch(batch=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 8, 6, 4, generator=g).to(dtype)


def test_no_brightness_and_no_noise_returns_the_input():
    images = images_batch()
    torch.manual_seed(0)
    out = strong_intensity_view(images, p_brightness_contrast=0.0, p_noise=0.0)
    assert torch.equal(out, images)


def test_noise_always_is_within_two_sigma_and_nonzero():
    images = images_batch(batch=6)
    torch.manual_seed(1)
    out = strong_intensity_view(images, p_brightness_contrast=0.0, p_noise=1.0)
    noise = out - images
    assert (noise.abs() <= 2 * 1.0 + 1e-6).all()
    for patch in noise:  # every patch noisy, each with its own sigma in [0.1, 1]
        assert (patch != 0).float().mean() > 0.9
        assert 0.05 < patch.std() < 1.1


def test_noise_is_clipped_at_two_of_its_own_sigmas():
    """A fixed sigma (0.3): the noise reaches, and never passes, 0.6 on a large patch."""
    images = torch.zeros(2, 1, 20, 20, 20)
    torch.manual_seed(2)
    noise = strong_intensity_view(images, p_brightness_contrast=0.0, p_noise=1.0, noise_sigma=(0.3, 0.3))
    assert noise.abs().max().item() == pytest.approx(0.6, rel=1e-6)
    assert noise.std().item() == pytest.approx(0.3, rel=0.08)  # clipped Gaussian: a bit under 0.3


def test_brightness_contrast_always_keeps_the_patch_range():
    images = images_batch(batch=10, seed=3)
    torch.manual_seed(3)
    out = strong_intensity_view(images, p_brightness_contrast=1.0, p_noise=0.0)
    low, high = images.amin(dim=(1, 2, 3, 4)), images.amax(dim=(1, 2, 3, 4))
    assert (out.amin(dim=(1, 2, 3, 4)) >= low - 1e-5).all() and (out.amax(dim=(1, 2, 3, 4)) <= high + 1e-5).all()
    assert all(not torch.equal(o, i) for o, i in zip(out, images))


def test_shape_and_dtype_are_kept():
    for dtype in (torch.float32, torch.float64):
        images = images_batch(batch=3, dtype=dtype)
        torch.manual_seed(4)
        out = strong_intensity_view(images, p_brightness_contrast=1.0, p_noise=1.0)
        assert out.shape == images.shape and out.dtype == dtype
    four_d = torch.randn(3, 2, 5, 5, 5)
    assert strong_intensity_view(four_d).shape == four_d.shape


def test_reproducible_under_the_seed_and_input_untouched():
    images = images_batch(batch=16)
    before = images.clone()
    torch.manual_seed(5)
    first = strong_intensity_view(images)
    torch.manual_seed(5)
    again = strong_intensity_view(images)
    assert torch.equal(first, again)
    assert torch.equal(images, before)
    torch.manual_seed(6)
    assert not torch.equal(strong_intensity_view(images), first)


def test_default_probabilities_per_patch():
    """About 80% of the patches get a brightness/contrast change and about 20% noise, each
    patch its own draw."""
    images = images_batch(batch=1000, seed=7)[:, :, :3, :2, :2]
    torch.manual_seed(7)
    changed = strong_intensity_view(images, p_noise=0.0)
    share_bc = sum(not torch.equal(c, i) for c, i in zip(changed, images)) / 1000
    assert 0.74 < share_bc < 0.86
    torch.manual_seed(8)
    noisy = strong_intensity_view(images, p_brightness_contrast=0.0)
    share_noise = sum(not torch.equal(c, i) for c, i in zip(noisy, images)) / 1000
    assert 0.15 < share_noise < 0.25


def test_default_contrast_and_brightness_ranges():
    """contrast alpha in [0.5, 1.5], brightness beta in [-0.5, 0.5]: recovered from the patches
    (values 0..1 exactly, so scaled = value, mean 0.5; the middle three never clip for these ranges)."""
    ramp = torch.tensor([0.0, 0.4, 0.5, 0.6, 1.0])
    images = ramp.reshape(1, 1, 5, 1, 1).repeat(400, 1, 1, 1, 1)
    torch.manual_seed(9)
    out = strong_intensity_view(images, p_brightness_contrast=1.0, p_noise=0.0).flatten(1)
    # y = alpha x + beta alpha mean(x): where 0.4 and 0.6 are unclipped, alpha = (y(0.6) - y(0.4)) / 0.2
    # and beta = (y(0.5) - 0.5 alpha) / (0.5 alpha)
    inner = ((out[:, 1:4] > 1e-6) & (out[:, 1:4] < 1 - 1e-6)).all(dim=1)
    assert inner.sum() > 100
    alpha = (out[inner, 3] - out[inner, 1]) / 0.2
    beta = (out[inner, 2] - 0.5 * alpha) / (0.5 * alpha)
    assert alpha.min() >= 0.5 - 1e-4 and alpha.max() <= 1.5 + 1e-4
    assert beta.min() >= -0.5 - 1e-4 and beta.max() <= 0.5 + 1e-4
    assert alpha.max() - alpha.min() > 0.7 and beta.max() - beta.min() > 0.7  # really spread over the ranges
