"""Segmentation metrics for 3-D volumes: Dice, Jaccard, 95HD, ASD, and largest-component cleanup.

Masks are array-likes (numpy or torch) of any dtype and dimension, typically (X, Y, Z); every
non-zero voxel is foreground, as in medpy. Distances are in voxels, or in the unit of `spacing`
(a scalar or one value per axis, e.g. (0.625, 0.625, 0.625) mm; medpy's `voxelspacing`).
The surface of a mask is `mask XOR erosion(mask)` with the 6-neighbour cross, voxels outside the
array counting as background.

Empty masks, one rule for every function here: an empty prediction or an empty ground truth gets
Dice 0 and Jaccard 0 (an empty result is never counted as perfect), and 95HD and ASD NaN (there is
no surface to measure; callers leave them out of means and count the cases). medpy differs only
there: its `dc` gives NaN and `jc` 1.0 for two empty masks, and `hd95`/`asd` raise.

Otherwise the values are medpy 0.5.2's, with bit-identical distances, and over ten times faster:
both masks are cropped to the bounding box of their union (erosion is unchanged, since outside it
is only background), each surface is extracted once for 95HD and ASD, and the nearest surface
voxel comes from an exact KD-tree query instead of a whole-volume distance transform. The distance
is then recomputed from the integer offset with scipy's operations, so it is the one medpy reads
from `distance_transform_edt`; scattered surfaces, where the tree is slow, use the transform.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

METRICS = ("dice", "jaccard", "hd95", "asd")
EMPTY_MASK_RULE = ("an empty prediction or ground truth gets Dice 0 and Jaccard 0 (kept in their "
                   "means) and 95HD/ASD NaN (left out of their means)")

# Cost, in distance-transform voxels, of one KD-tree query point and of one tree point: a query far
# from the other surface visits many leaves (measured up to ~30 voxels' worth), while the transform
# costs the same per voxel wherever the surfaces are.
KD_QUERY_COST = 32
KD_BUILD_COST = 2

Spacing = float | Sequence[float] | None  # None: distances in voxels


def _to_numpy(x) -> np.ndarray:
    """A numpy array from an array-like or a torch tensor (on any device)."""
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {names[0]} has shape {a.shape} "
                         f"but {names[1]} has shape {b.shape}")


def _bool_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """`pred` and `gt` as boolean arrays of the same shape (non-zero = foreground)."""
    p, g = (np.atleast_1d(_to_numpy(x)).astype(bool) for x in (pred, gt))
    _check_same_shape(p, g, ("pred", "gt"))
    return p, g


def _spacing_array(spacing: Spacing, ndim: int) -> np.ndarray | None:
    """Spacing as (ndim,) float64, or None for voxel units."""
    if spacing is None:
        return None
    s = np.asarray(spacing, dtype=np.float64).ravel()
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim:
        raise ValueError(f"spacing has {s.size} values but the masks have {ndim} dimensions")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing must be positive and finite, got {tuple(s)}")
    return s


def _crop_to_union(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to the bounding box of their union plus a 1-voxel margin (clipped)."""
    union = p | g
    box = []
    for axis in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(max(hit[0] - 1, 0), min(hit[-1] + 2, union.shape[axis])))
    return p[tuple(box)], g[tuple(box)]


def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a bool mask: those removed by one erosion with the connectivity-1 cross."""
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=cross)


def _kd_distances(points: np.ndarray, targets: np.ndarray, spacing: np.ndarray | None) -> np.ndarray:
    """Distance from each of `points` (N, ndim) to the nearest of `targets` (M, ndim), voxel indices.

    The tree only finds the nearest target; the distance is recomputed from the integer offset as
    scipy's distance transform computes it (scaled, squared, summed axis by axis), so it is bit-identical.
    """
    scale = spacing if spacing is not None else 1
    _, nearest = cKDTree(targets * scale).query(points * scale, k=1)
    offset = (targets[nearest] - points) * np.asarray(scale, dtype=np.float64)
    offset *= offset
    squared = offset[:, 0].copy()
    for axis in range(1, offset.shape[1]):
        squared += offset[:, axis]
    return np.sqrt(squared)


def _directed_distances(surface_a: np.ndarray, points_a: np.ndarray, surface_b: np.ndarray,
                        points_b: np.ndarray, spacing: np.ndarray | None) -> np.ndarray:
    """Distance from each surface voxel of A (C order) to the nearest surface voxel of B.

    `points_*` are the surfaces' voxel indices, (N, ndim) in C order. A KD-tree when the surfaces
    are small against the volume (good predictions), else medpy's distance transform (scattered
    predictions, whose many far-away voxels make the tree slow).
    """
    if len(points_a) * KD_QUERY_COST + len(points_b) * KD_BUILD_COST < surface_a.size:
        return _kd_distances(points_a, points_b, spacing)
    return ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]


def _distances(p: np.ndarray, g: np.ndarray, spacing: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(pred surface -> gt surface, gt surface -> pred surface) distances of two non-empty masks."""
    surface_p, surface_g = map(_surface, _crop_to_union(p, g))
    points_p, points_g = np.argwhere(surface_p), np.argwhere(surface_g)
    return (_directed_distances(surface_p, points_p, surface_g, points_g, spacing),
            _directed_distances(surface_g, points_g, surface_p, points_p, spacing))


def _overlap(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """(Dice, Jaccard) of two bool masks; (0, 0) if either is empty."""
    n_p, n_g, inter = (int(np.count_nonzero(m)) for m in (p, g, p & g))  # int: plain float results
    if n_p == 0 or n_g == 0:
        return 0.0, 0.0
    return 2.0 * inter / (n_p + n_g), inter / (n_p + n_g - inter)


def _surface_metrics(p: np.ndarray, g: np.ndarray, spacing: np.ndarray | None) -> tuple[float, float]:
    """(95HD, ASD pred -> gt) of two bool masks; (NaN, NaN) if either is empty."""
    if not p.any() or not g.any():
        return float("nan"), float("nan")
    d_pred_to_gt, d_gt_to_pred = _distances(p, g, spacing)
    hd = np.percentile(np.concatenate((d_pred_to_gt, d_gt_to_pred)), 95)  # numpy's linear, as medpy
    return float(hd), float(d_pred_to_gt.mean())


def dice(pred, gt) -> float:
    """Dice `2|P&G| / (|P|+|G|)` in [0, 1] of two same-shape masks (medpy `dc`); 0 if either is empty."""
    return _overlap(*_bool_pair(pred, gt))[0]


def jaccard(pred, gt) -> float:
    """Jaccard `|P&G| / |P|G|` in [0, 1] of two same-shape masks (medpy `jc`); 0 if either is empty."""
    return _overlap(*_bool_pair(pred, gt))[1]


def surface_distances(pred, gt, spacing: Spacing = None) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty same-shape masks, in voxels or spacing units.

    Returns (d_pred_to_gt, d_gt_to_pred), float64 1-D arrays with one entry per surface voxel of
    pred (resp. gt) in C order: medpy's `__surface_distances(pred, gt)` and `(gt, pred)`.
    Raises ValueError if either mask is empty, as there is no surface to measure from.
    """
    p, g = _bool_pair(pred, gt)
    spacing = _spacing_array(spacing, p.ndim)
    for name, mask in (("pred", p), ("gt", g)):
        if not mask.any():
            raise ValueError(f"surface_distances: {name} contains no foreground voxel")
    return _distances(p, g, spacing)


def hd95(pred, gt, spacing: Spacing = None) -> float:
    """95th percentile of both directed surface distances (medpy `hd95`), in voxels or spacing units.

    NaN if either mask is empty.
    """
    p, g = _bool_pair(pred, gt)
    return _surface_metrics(p, g, _spacing_array(spacing, p.ndim))[0]


def asd(pred, gt, spacing: Spacing = None) -> float:
    """Mean distance from pred's surface to gt's (medpy `asd`, not symmetric), in voxels or spacing units.

    NaN if either mask is empty.
    """
    p, g = _bool_pair(pred, gt)
    return _surface_metrics(p, g, _spacing_array(spacing, p.ndim))[1]


def binary_metrics(pred, gt, spacing: Spacing = None) -> dict[str, float | bool]:
    """All of METRICS for one binary prediction, surfaces extracted once.

    Args:
        pred, gt: same-shape masks, e.g. (X, Y, Z); non-zero = foreground.
        spacing: None (distances in voxels), or a scalar or per-axis spacing (distances in its unit).

    Returns:
        {"dice", "jaccard", "hd95", "asd"} floats under the module's empty-mask rule (`asd` is
        pred -> gt), and "empty_pred", "empty_gt" bools so callers can count the NaN cases.
    """
    p, g = _bool_pair(pred, gt)
    values = (*_overlap(p, g), *_surface_metrics(p, g, _spacing_array(spacing, p.ndim)))
    return {**dict(zip(METRICS, values)), "empty_pred": not p.any(), "empty_gt": not g.any()}


def multiclass_metrics(pred_labels, gt_labels, num_classes: int,
                       spacing: Spacing = None) -> list[dict[str, int | float | bool]]:
    """Per-class binary_metrics of two integer label maps, e.g. (X, Y, Z), values 0..num_classes-1.

    Returns one dict per foreground class c = 1..num_classes-1:
    {"class": c, **binary_metrics(pred_labels == c, gt_labels == c)}.
    """
    pred_labels, gt_labels = _to_numpy(pred_labels), _to_numpy(gt_labels)
    _check_same_shape(pred_labels, gt_labels, ("pred_labels", "gt_labels"))
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return [{"class": c, **binary_metrics(pred_labels == c, gt_labels == c, spacing=spacing)}
            for c in range(1, int(num_classes))]


def largest_connected_component(mask) -> np.ndarray:
    """Keep only the largest connected component of a mask (26-neighbour in 3-D, 8 in 2-D).

    Returns an array of the mask's shape and dtype, all zeros if the mask is empty; a tie goes to
    the component met first in C order.
    """
    mask = _to_numpy(mask)
    foreground = mask.astype(bool)
    if foreground.ndim == 0 or not foreground.any():
        return np.zeros_like(mask)
    full = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, _ = ndimage.label(foreground, structure=full)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0  # background
    return (components == np.argmax(sizes)).astype(mask.dtype)


def keep_largest_component_per_class(labels, num_classes: int) -> np.ndarray:
    """A label map, e.g. (X, Y, Z), with each class c = 1..num_classes-1 cut to its largest component."""
    labels = _to_numpy(labels)
    out = np.zeros_like(labels)
    for c in range(1, int(num_classes)):
        out[largest_connected_component(labels == c)] = c
    return out
