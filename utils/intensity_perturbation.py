"""The strong intensity view of AD-MT's unlabeled patches: a random brightness and contrast
change, then sometimes Gaussian noise, each patch its own draw (from torch's generators, so
seeds and --resume cover them).

Shapes: images ``(B, C, X, Y, Z)``; intensities in the data's units (z-scored for LA/MSD).
"""
import torch


@torch.no_grad()
def brightness_contrast(images: torch.Tensor, *, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Each patch scaled to [0, 1] by its own minimum and maximum, then ``y = alpha * x`` and
    ``y + beta * mean(y)`` clipped to [0, 1], then scaled back: ``alpha`` (contrast) and ``beta``
    (brightness) are per-patch tensors of shape (B,). The brightness step is a share of the
    patch's mean, not of its range, as in AD-MT's code (albumentations' float rule): a dark
    patch brightens little. A constant patch is returned as it is."""
    dims = tuple(range(1, images.dim()))
    low = images.amin(dim=dims, keepdim=True)
    span = images.amax(dim=dims, keepdim=True) - low
    shape = (-1,) + (1,) * (images.dim() - 1)
    scaled = (images - low) / span.clamp_min(torch.finfo(images.dtype).tiny)
    contrasted = alpha.reshape(shape) * scaled
    changed = (contrasted + beta.reshape(shape) * contrasted.mean(dim=dims, keepdim=True)).clamp(0.0, 1.0)
    return torch.where(span > 0, changed * span + low, images)


@torch.no_grad()
def strong_intensity_view(images: torch.Tensor, *, contrast: float = 0.5, brightness: float = 0.5,
                          p_brightness_contrast: float = 0.8, noise_sigma=(0.1, 1.0),
                          p_noise: float = 0.2) -> torch.Tensor:
    """AD-MT's defaults: with probability 0.8 a patch gets contrast ``1 + U(-0.5, 0.5)`` and
    brightness ``U(-0.5, 0.5)`` times its mean (``brightness_contrast``); then with probability 0.2 Gaussian
    noise of a standard deviation ``U(0.1, 1.0)``, clipped at 2 standard deviations."""
    batch = images.shape[0]
    shape = (-1,) + (1,) * (images.dim() - 1)

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(batch)).to(images.device, images.dtype)

    alpha, beta = uniform(1 - contrast, 1 + contrast), uniform(-brightness, brightness)
    changed = brightness_contrast(images, alpha=alpha, beta=beta)
    out = torch.where((torch.rand(batch) < p_brightness_contrast).to(images.device).reshape(shape), changed, images)
    sigma = uniform(*noise_sigma).reshape(shape)
    noise = torch.maximum(torch.minimum(torch.randn_like(images) * sigma, 2 * sigma), -2 * sigma)
    noisy = (torch.rand(batch) < p_noise).to(images.device).reshape(shape)
    return torch.where(noisy, out + noise, out)
