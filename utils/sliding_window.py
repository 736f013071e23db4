"""Whole-volume prediction from a patch-based network by overlapping sliding windows."""
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
    return list(itertools.product(*(window_starts(s, p, st) for s, p, st in zip(shape, patch_size, strides))))


@torch.no_grad()
def sliding_window_predict(model, image, patch_size, stride_xy: int, stride_z: int, num_classes: int,
                           device: torch.device, sw_batch: int = 4, amp_dtype: torch.dtype | None = None):
    """Softmax probabilities averaged over overlapping windows.

    image: (X, Y, Z) array or tensor. Returns (probs (C, X, Y, Z) float32 tensor on
    ``device``, labels (X, Y, Z) int64 tensor on ``device``). Volumes smaller than the
    patch are zero-padded and the result cropped back. ``sw_batch`` windows go
    through the network at a time; the model is used as it is (call ``eval()`` first).
    """
    image = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image,
                            dtype=torch.float32).to(device)
    shape = tuple(image.shape)
    pads = [max(p - s, 0) for s, p in zip(shape, patch_size)]
    before = [p // 2 for p in pads]
    if any(pads):
        image = F.pad(image, [n for b, p in reversed(list(zip(before, pads))) for n in (b, p - b)])
    padded = tuple(image.shape)
    probs = torch.zeros((num_classes, *padded), device=device)
    counts = torch.zeros(padded, device=device)
    grid = window_grid(padded, patch_size, (stride_xy, stride_xy, stride_z))
    for first in range(0, len(grid), sw_batch):
        corners = grid[first:first + sw_batch]
        regions = [tuple(slice(c, c + p) for c, p in zip(corner, patch_size)) for corner in corners]
        windows = torch.stack([image[r] for r in regions])[:, None]
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(windows)
        window_probs = torch.softmax(logits.float(), dim=1)
        for region, p in zip(regions, window_probs):
            probs[(slice(None), *region)] += p
            counts[region] += 1
    probs /= counts
    crop = tuple(slice(b, b + s) for b, s in zip(before, shape))
    probs = probs[(slice(None), *crop)]
    return probs, probs.argmax(0)
