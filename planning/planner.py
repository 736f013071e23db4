"""The plan of a dataset: voxel size, the VNet's strides per stage, patch, sliding-window steps
and intensity normalisation, computed from its fingerprint (``planning.fingerprint``) alone,
so that a dataset unlike LA or Hippocampus needs no hand-picked flag.

The rules follow nnU-Net v2's planner (``ExperimentPlanner``, ``get_pool_and_conv_props``, the
CT normalisation scheme), adapted to a VNet of four fixed stages:

- **voxel size**: the median of the cases'. Where one axis is much coarser (more than 3 times
  the finest spacing) and the median case has few voxels along it (3 times fewer than along the
  others), that axis takes the 10th percentile of its spacings instead, so thick slices are not
  stretched into many interpolated ones.
- **strides**: in each stage an axis is halved only while its current voxel size is less than
  twice the finest current one and it keeps at least ``MIN_BOTTLENECK`` voxels; a volume of a
  few thick slices is pooled in-plane first, until the in-plane voxels are as coarse as the
  slices. A stage where no axis qualifies keeps the size (stride 1, 1, 1).
- **patch**: the median case at the target voxel size, each side rounded to the nearest
  multiple of that axis's total stride (halfway: the smaller), then cut one stride unit at a time, on the axis whose
  side stays the longest in mm after the cut, until it holds at most ``budget`` voxels (nnU-Net
  starts from a cube in mm and cuts by the share of the median case; with the small budgets of
  a CPU that would halve a volume of 12 thick slices before its in-plane extent).
- **sliding window**: half the patch (nnU-Net's overlap of 0.5).
- **intensities**: CT is clipped to the 0.5th and 99.5th percentiles of the labeled cases'
  foreground and z-scored with its mean and std (one transform for every case, since Hounsfield
  units are absolute); any other modality is z-scored case by case.

Every function takes and returns plain values (tuples, dicts): the planner reads no file.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from networks.vnet import STAGES, total_strides
from utils.errors import UserError

ANISOTROPY = 3.0          # nnU-Net's threshold for "one axis is much coarser"
COARSE_PERCENTILE = 10    # the coarse axis's spacing: this percentile of the cases' (nnU-Net)
MIN_BOTTLENECK = 2        # an axis is halved only while it keeps at least this many voxels
# The LA patch at batch 2 + 2 (112 x 112 x 80): the default most voxels a planned patch may hold.
DEFAULT_BUDGET = 112 * 112 * 80
# A case more than this factor finer or coarser than the target on an axis is refused: resampling
# it would invent or discard most of its voxels.
MAX_RESAMPLE_FACTOR = 4.0
CT_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Fingerprint:
    """What the planner needs to know of a dataset, per case in the same order:

    - ``spacings``: voxel sizes in mm (X, Y, Z), from the headers;
    - ``shapes``: image sizes in voxels (X, Y, Z) at those voxel sizes;
    - ``files``: the image files, to name a case in messages;
    - ``modality``: the first channel's modality of dataset.json ("CT", "MRI", ...), None if it
      names none;
    - ``foreground``: of a CT dataset, the statistics of its labeled cases' foreground voxels
      (``mean``, ``std``, ``lower``, ``upper``: the ``CT_PERCENTILES``, ``voxels``: how many
      were sampled), else None."""
    spacings: tuple
    shapes: tuple
    files: tuple
    modality: str | None = None
    foreground: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Fingerprint":
        return cls(spacings=tuple(tuple(s) for s in values["spacings"]),
                   shapes=tuple(tuple(s) for s in values["shapes"]), files=tuple(values["files"]),
                   modality=values.get("modality"), foreground=values.get("foreground"))


@dataclass(frozen=True)
class Plan:
    """The settings planned for a dataset (see the module's docstring for the rules):
    ``spacing`` (mm, X, Y, Z), ``strides`` (``STAGES`` stages of X, Y, Z factors), ``patch_size``
    (voxels), ``stride_xy`` / ``stride_z`` (sliding-window steps, voxels), ``intensity`` (see
    ``intensity_scheme``), ``median_shape`` (voxels at ``spacing``) and ``notes`` (why, in words)."""
    spacing: tuple
    strides: tuple
    patch_size: tuple
    stride_xy: int
    stride_z: int
    intensity: dict
    median_shape: tuple
    notes: tuple = ()

    def to_dict(self) -> dict:
        values = asdict(self)
        values["strides"] = [list(stage) for stage in self.strides]
        return values


def is_ct(modality: str | None) -> bool:
    return bool(modality) and modality.strip().upper() == "CT"


def target_spacing(spacings, shapes) -> tuple[tuple, str]:
    """(the voxel size to train at (mm), why): the median per axis; where the coarsest axis is
    more than ``ANISOTROPY`` times the finest other spacing and the median case has
    ``ANISOTROPY`` times fewer voxels along it than along the others, that axis's
    ``COARSE_PERCENTILE``-th percentile instead (but never finer than the other axes)."""
    spacings, shapes = np.asarray(spacings, float), np.asarray(shapes, float)
    target = np.median(spacings, axis=0)
    median_shape = np.median(shapes, axis=0)
    coarse = int(np.argmax(target))
    others = [a for a in range(3) if a != coarse]
    anisotropic_spacing = target[coarse] > ANISOTROPY * max(target[others])
    few_voxels = median_shape[coarse] * ANISOTROPY < min(median_shape[others])
    if not (anisotropic_spacing and few_voxels):
        return tuple(float(t) for t in target), "the median voxel size"
    target[coarse] = max(np.percentile(spacings[:, coarse], COARSE_PERCENTILE), max(target[others]))
    return (tuple(float(t) for t in target),
            f"the median voxel size, {'XYZ'[coarse]} (the coarse axis, {target[coarse] / max(target[others]):.1f}x "
            f"the others) at the {COARSE_PERCENTILE}th percentile of its spacings")


def shape_at(shape, spacing, target) -> tuple:
    """Voxels along X, Y, Z of a volume of ``shape`` voxels at ``spacing`` resampled to ``target``
    (as ``dataloaders.resampling.resample`` makes it)."""
    return tuple(max(int(round(n * s / t)), 1) for n, s, t in zip(shape, spacing, target))


def vnet_strides(spacing, patch_size) -> tuple:
    """The factor (2 or 1) of each axis in each of the VNet's ``STAGES`` stages for a patch of
    ``patch_size`` voxels at ``spacing`` mm: an axis is halved while its voxels are less than
    twice as coarse as the finest axis's and it keeps at least ``MIN_BOTTLENECK`` voxels."""
    current_spacing, current_size = list(map(float, spacing)), list(map(float, patch_size))
    strides = []
    for _ in range(STAGES):
        finest = min(current_spacing)
        stage = tuple(2 if current_spacing[a] / finest < 2 and current_size[a] / 2 >= MIN_BOTTLENECK else 1
                      for a in range(3))
        for a in range(3):
            current_spacing[a] *= stage[a]
            current_size[a] /= stage[a]
        strides.append(stage)
    return tuple(strides)


def round_to_multiple(size: float, multiple: int) -> int:
    """``size`` to the nearest positive multiple of ``multiple``; halfway, the smaller (no larger
    than the data needs)."""
    return max(int(math.ceil(size / multiple - 0.5)), 1) * multiple


def plan_patch(spacing, median_shape, budget: int = DEFAULT_BUDGET) -> tuple[tuple, tuple]:
    """(patch (X, Y, Z) voxels, the VNet strides for it): the median case rounded to each axis's
    total stride, cut one stride unit at a time (on the axis whose side stays the longest in mm)
    until it holds at most ``budget`` voxels."""
    if budget < 1:
        raise UserError(f"the patch budget must be at least 1 voxel, got {budget}")
    strides = vnet_strides(spacing, median_shape)
    totals = total_strides(strides)
    patch = [round_to_multiple(n, t) for n, t in zip(median_shape, totals)]
    while math.prod(patch) > budget:
        strides = vnet_strides(spacing, patch)
        totals = total_strides(strides)
        cuttable = [a for a in range(3) if patch[a] > totals[a]]
        if not cuttable:
            break  # one stride unit per axis is the smallest patch the VNet takes
        # the side that stays longest in mm after the cut: the patch tends towards a cube in mm,
        # so a short, coarse axis (a few thick slices) keeps its whole depth
        axis = max(cuttable, key=lambda a: ((patch[a] - totals[a]) * spacing[a], -a))
        patch[axis] -= totals[axis]
    strides = vnet_strides(spacing, patch)
    totals = total_strides(strides)
    # a cut can make an axis too short for a stage, whose stride then drops to 1: still a multiple
    patch = [max(p - p % t, t) for p, t in zip(patch, totals)]
    return tuple(patch), vnet_strides(spacing, patch)


def window_strides(patch_size) -> tuple[int, int]:
    """(stride_xy, stride_z): half the patch, as nnU-Net's overlap of 0.5 (X and Y share one)."""
    return max(min(patch_size[:2]) // 2, 1), max(patch_size[2] // 2, 1)


def intensity_scheme(modality: str | None, foreground: dict | None) -> dict:
    """How images are normalised: ``{"scheme": "ct", "lower", "upper", "mean", "std"}`` for CT
    (clip to the foreground's ``CT_PERCENTILES``, then subtract its mean and divide by its std),
    else ``{"scheme": "zscore"}`` (each case by its own mean and std)."""
    if not is_ct(modality):
        return {"scheme": "zscore"}
    if not foreground:
        raise UserError("a CT dataset needs foreground intensities from its labeled cases to plan its "
                        "normalisation; none were found")
    return {"scheme": "ct", **{k: float(foreground[k]) for k in ("lower", "upper", "mean", "std")}}


def check_spacings(spacings, files, target) -> None:
    """A one-line ``UserError`` naming the cases whose voxel size is more than
    ``MAX_RESAMPLE_FACTOR`` finer or coarser than ``target`` on an axis."""
    far = [(f, s) for f, s in zip(files, spacings)
           if any(not 1 / MAX_RESAMPLE_FACTOR <= v / t <= MAX_RESAMPLE_FACTOR for v, t in zip(s, target))]
    if far:
        shown = "; ".join(f"{f}: {' x '.join(f'{v:g}' for v in s)} mm" for f, s in far[:3])
        raise UserError(f"{len(far)} case(s) have voxel sizes more than {MAX_RESAMPLE_FACTOR:g}x away from the "
                        f"planned {' x '.join(f'{t:.4g}' for t in target)} mm on an axis ({shown}"
                        f"{'; ...' if len(far) > 3 else ''}); resampling would invent or discard most of their "
                        "voxels: resample them to the others' voxel size first, or train them apart")


def make_plan(fingerprint: Fingerprint, budget: int = DEFAULT_BUDGET) -> Plan:
    """The plan of a dataset from its ``fingerprint``, its patch within ``budget`` voxels."""
    if not fingerprint.spacings:
        raise UserError("no case to plan from: the fingerprint is empty")
    spacing, spacing_why = target_spacing(fingerprint.spacings, fingerprint.shapes)
    check_spacings(fingerprint.spacings, fingerprint.files, spacing)
    shapes = [shape_at(n, s, spacing) for n, s in zip(fingerprint.shapes, fingerprint.spacings)]
    median_shape = tuple(float(m) for m in np.median(np.asarray(shapes, float), axis=0))
    patch, strides = plan_patch(spacing, median_shape, budget)
    stride_xy, stride_z = window_strides(patch)
    intensity = intensity_scheme(fingerprint.modality, fingerprint.foreground)
    notes = (f"voxel size: {spacing_why}",
             f"patch: the median case ({' x '.join(f'{m:g}' for m in median_shape)} voxels) within "
             f"{budget:,} voxels",
             "intensities: " + ("CT, clipped to the foreground's 0.5-99.5th percentiles and z-scored with its "
                                "mean and std" if intensity["scheme"] == "ct" else "z-scored per case"))
    return Plan(spacing=spacing, strides=strides, patch_size=patch, stride_xy=stride_xy, stride_z=stride_z,
                intensity=intensity, median_shape=median_shape, notes=notes)
