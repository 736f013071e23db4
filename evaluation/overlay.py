"""PNG overlays of a prediction: the image in grey, ground-truth and predicted outlines in colour.

A small PNG encoder (``zlib`` + ``struct``, 8-bit grey or RGB, no interlace) keeps this free of
PIL and matplotlib. Volumes are (X, Y, Z); the views are

* axial: a slice at fixed Z, shown with X across and Y down;
* coronal: a slice at fixed Y, shown with X across and Z up;
* sagittal: a slice at fixed X, shown with Y across and Z up;

each at the slice with the most ground-truth foreground (the most predicted foreground when
the ground truth is empty), side by side in one picture per case.
"""
import struct
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

GT_COLOUR = (0, 230, 0)      # green: ground-truth outline
PRED_COLOUR = (255, 40, 40)  # red: predicted outline
BOTH_COLOUR = (255, 230, 0)  # yellow: where the two outlines coincide
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG file contents of an (H, W) grey or (H, W, 3) RGB uint8 array."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) uint8 array, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot encode an empty picture of shape {pixels.shape}")
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + _chunk(b"IEND", b""))


def write_png(path, pixels: np.ndarray) -> Path:
    path = Path(path)
    path.write_bytes(encode_png(pixels))
    return path


def grey_levels(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map an image to uint8 grey, the ``low``..``high`` percentiles to black..white."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, (low, high)) if image.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a 2-D mask (pixels with a 4-neighbour outside it)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1))


def overlay_slice(grey: np.ndarray, gt: np.ndarray, pred: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """(H, W, 3) uint8: ``grey`` (H, W) uint8 with the outline of each foreground class of the
    label maps ``gt`` and ``pred`` (H, W) drawn in ``GT_COLOUR`` / ``PRED_COLOUR``."""
    rgb = np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=2)
    gt_line = np.zeros(rgb.shape[:2], bool)
    pred_line = np.zeros(rgb.shape[:2], bool)
    for c in range(1, num_classes):
        gt_line |= outline(gt == c)
        pred_line |= outline(pred == c)
    rgb[gt_line & ~pred_line] = GT_COLOUR
    rgb[pred_line & ~gt_line] = PRED_COLOUR
    rgb[gt_line & pred_line] = BOTH_COLOUR
    return rgb


def fullest_slices(label: np.ndarray, pred: np.ndarray) -> dict:
    """{axis: index} of the slice with the most foreground along each axis (X=0, Y=1, Z=2):
    ground-truth foreground, or predicted foreground when the ground truth is empty; the middle
    one of several equally full slices."""
    mask = label > 0 if np.any(label) else pred > 0
    indices = {}
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        counts = mask.sum(axis=other)
        fullest = np.flatnonzero(counts == counts.max())
        indices[axis] = int(fullest[len(fullest) // 2])  # the middle one of equally full slices
    return indices


def slice_view(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """One slice as a picture: axial (axis 2) X across, Y down; the others with Z up."""
    plane = np.take(volume, index, axis=axis)
    return plane.T if axis == 2 else plane.T[::-1]


def case_overlay(image: np.ndarray, label: np.ndarray, pred: np.ndarray, num_classes: int = 2,
                 scale: int = 2, gap: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 picture of one case: the axial, coronal and sagittal slices with the most
    foreground side by side (black between them), each enlarged ``scale`` times (nearest)."""
    if not image.shape == label.shape == pred.shape or image.ndim != 3:
        raise ValueError(f"expected three (X, Y, Z) volumes of one shape, got {image.shape}, {label.shape}, "
                         f"{pred.shape}")
    grey = grey_levels(image)
    slices = fullest_slices(label, pred)
    panels = []
    for axis in (2, 1, 0):  # axial, coronal, sagittal
        index = slices[axis]
        panel = overlay_slice(slice_view(grey, axis, index), slice_view(label, axis, index), slice_view(pred, axis, index),
                              num_classes)
        panels.append(panel.repeat(scale, axis=0).repeat(scale, axis=1))
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.zeros((height, width, 3), np.uint8)
    x = 0
    for panel in panels:
        canvas[:panel.shape[0], x:x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    return canvas
