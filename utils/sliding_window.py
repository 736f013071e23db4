"""Whole-volume prediction from a patch-based network by overlapping sliding windows.

The window grid is the one of the original UA-MT ``test_util.test_single_case``: along each
axis a window starts every ``stride`` voxels and the last one is flush with the border; a
volume smaller than the patch is zero-padded (centred) and the result cropped back.
"""
import itertools

import numpy as np
import torch
import torch.nn.functional as F


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Window corners along one axis: every ``stride`` voxels, the last flush with the border.

    ``size`` must be at least ``patch`` (pad first); one window when they are equal.
    ``stride`` must be 1..patch, or some voxels would be left out.
    """
    if not 1 <= stride <= patch:
        raise ValueError(f"a window stride must be between 1 and the patch size {patch}, got {stride}")
    if size <= patch:
        return [0]
    count = int(np.ceil((size - patch) / stride)) + 1
    return [min(stride * i, size - patch) for i in range(count)]


def window_grid(shape, patch_size, strides) -> list[tuple[int, int, int]]:
    """All window corners (x, y, z), x slowest: the product of the per-axis ``window_starts``."""
    return list(itertools.product(*(window_starts(s, p, st) for s, p, st in zip(shape, patch_size, strides))))


def window_counts(shape, patch_size, strides) -> np.ndarray:
    """How many windows cover each voxel of a (padded) volume, float32 array of ``shape``.

    The grid is a product of per-axis grids, so the count is the product of per-axis counts.
    """
    per_axis = []
    for size, patch, stride in zip(shape, patch_size, strides):
        counts = np.zeros(size, np.float32)
        for start in window_starts(size, patch, stride):
            counts[start:start + patch] += 1
        per_axis.append(counts)
    return per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]


def pad_to_patch(image: torch.Tensor, patch_size) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad each axis shorter than the patch (half before, the rest after, as UA-MT);
    returns the padded volume and the slices that crop it back."""
    shape = tuple(image.shape)
    pads = [max(p - s, 0) for s, p in zip(shape, patch_size)]
    before = [p // 2 for p in pads]
    if any(pads):
        image = F.pad(image, [n for b, p in reversed(list(zip(before, pads))) for n in (b, p - b)])
    return image, tuple(slice(b, b + s) for b, s in zip(before, shape))


@torch.no_grad()
def sliding_window_predict(model, image, *, patch_size, stride_xy: int, stride_z: int, num_classes: int,
                           device: torch.device, sw_batch: int = 4, amp_dtype: torch.dtype | None = None):
    """Softmax probabilities averaged over overlapping windows.

    Args:
        model: ``(B, 1, *patch_size) -> (B, num_classes, *patch_size)`` logits, used as it is
            (call ``eval()`` first).
        image: (X, Y, Z) array or tensor (one channel).
        patch_size: (X, Y, Z) window size in voxels.
        stride_xy, stride_z: window step in voxels along X and Y, and along Z (1..patch).
        sw_batch: windows per forward pass.
        amp_dtype: ``torch.bfloat16``/``torch.float16`` to run the model under autocast
            (CUDA), ``None`` for fp32. The softmax and the accumulation are fp32.

    Returns:
        (probs (C, X, Y, Z) float32 tensor on ``device``, labels (X, Y, Z) int64 tensor on
        ``device``, the argmax of probs, ties to the lower class).
    """
    if len(patch_size) != 3 or np.ndim(image) != 3:
        raise ValueError(f"expected an (X, Y, Z) image and a 3-value patch, got {tuple(np.shape(image))} "
                         f"and {tuple(patch_size)}")
    if sw_batch < 1:
        raise ValueError(f"sw_batch must be at least 1, got {sw_batch}")
    patch_size = tuple(int(p) for p in patch_size)
    strides = (stride_xy, stride_xy, stride_z)
    image = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image,
                            dtype=torch.float32).to(device)
    image, crop = pad_to_patch(image, patch_size)
    padded = tuple(image.shape)
    grid = window_grid(padded, patch_size, strides)
    counts = torch.from_numpy(window_counts(padded, patch_size, strides)).to(device)
    probs = torch.zeros((num_classes, *padded), device=device)
    for first in range(0, len(grid), sw_batch):
        regions = [tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
                   for corner in grid[first:first + sw_batch]]
        windows = torch.stack([image[r] for r in regions]).unsqueeze(1)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(windows)
        window_probs = torch.softmax(logits.float(), dim=1)
        for region, p in zip(regions, window_probs):
            probs[(slice(None), *region)].add_(p)  # in place into the view of this window
    probs /= counts
    probs = probs[(slice(None), *crop)]
    return probs, probs.argmax(0)
