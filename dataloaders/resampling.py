"""Bringing volumes to one voxel size, with SimpleITK (imported here only): images with linear
interpolation, label maps with nearest neighbour. Arrays are (X, Y, Z), as everywhere here;
spacings are in mm along X, Y, Z.

MSD datasets whose cases were scanned at different voxel sizes are trained at one spacing
(their median, or ``--target_spacing``), as nnU-Net does; uniform data (LA, Hippocampus) is
left as it is.
"""
import numpy as np

# A dataset is resampled only where some case's voxel size differs from the median by more
# than this fraction along an axis; a case within RESAMPLE_TOLERANCE of the target is left as it is.
HETEROGENEOUS = 0.10
RESAMPLE_TOLERANCE = 0.01


def median_spacing(spacings: list) -> tuple:
    """The median voxel size per axis."""
    return tuple(float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0))


def prediction_tolerance(resampled: bool) -> float:
    """How far (a fraction per axis) a scan's voxel size may be from the training one and still
    be predicted as it is: as far as training left its own cases as they were (1 % where it
    resampled them, else 10 %, the spread it accepted)."""
    return RESAMPLE_TOLERANCE if resampled else HETEROGENEOUS


def differs(spacing, target, tolerance: float) -> bool:
    """Whether ``spacing`` differs from ``target`` by more than ``tolerance`` (a fraction) on an axis."""
    return any(abs(s - t) > tolerance * t for s, t in zip(spacing, target))


def training_target(spacings: list, requested=None) -> tuple | None:
    """The spacing to train at: ``requested`` (``--target_spacing``), else the median of
    ``spacings`` where some case differs from it by more than ``HETEROGENEOUS``, else None
    (the cases are alike: nothing is resampled)."""
    if requested:
        return tuple(float(s) for s in requested)
    median = median_spacing(spacings)
    return median if any(differs(s, median, HETEROGENEOUS) for s in spacings) else None


def resample(volume: np.ndarray, spacing, target, *, is_label: bool, shape=None) -> np.ndarray:
    """``volume`` (X, Y, Z) at voxel size ``spacing`` on the grid of voxel size ``target`` that
    covers the same extent (each axis ``round(size * spacing / target)`` voxels, at least 1), or
    of ``shape`` voxels (to bring a resampled volume back onto its original grid exactly)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(volume)))  # SimpleITK's arrays are (Z, Y, X)
    image.SetSpacing([float(s) for s in spacing])
    size = [int(n) for n in shape] if shape is not None else \
        [max(int(round(n * s / t)), 1) for n, s, t in zip(volume.shape, spacing, target)]
    # Both grids start at the first voxel's centre, so the index mapping is the same whatever
    # the scan's origin and direction: its geometry is not needed here.
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(size)
    resampler.SetOutputSpacing([float(t) for t in target])
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear)
    resampler.SetUseNearestNeighborExtrapolator(True)  # past the last centre: the border value, not zero
    return np.transpose(sitk.GetArrayFromImage(resampler.Execute(image))).astype(volume.dtype, copy=False)
