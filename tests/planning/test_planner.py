"""The planner on fingerprints with known answers: LA-like, Hippocampus-like, thin anisotropic
MRI and CT. Each answer follows from the rules of planning/planner.py worked by hand."""
import math

import numpy as np
import pytest
import torch

from networks.vnet import DEFAULT_STRIDES, VNet, patch_size_problem, total_strides
from planning.planner import (DEFAULT_BUDGET, Fingerprint, check_spacings, intensity_scheme, make_plan, plan_patch,
                              round_to_multiple, shape_at, target_spacing, vnet_strides, window_strides)
from utils.errors import UserError


def fingerprint(spacing, shapes, modality="MRI", foreground=None, spacings=None) -> Fingerprint:
    spacings = spacings or [spacing] * len(shapes)
    return Fingerprint(spacings=tuple(map(tuple, spacings)), shapes=tuple(map(tuple, shapes)),
                       files=tuple(f"case_{i}.nii.gz" for i in range(len(shapes))), modality=modality,
                       foreground=foreground)


LA_LIKE = fingerprint((0.625,) * 3, [(190, 142, 88), (200, 146, 88), (176, 138, 88)])
HIPPO_LIKE = fingerprint((1.0,) * 3, [(36, 50, 35), (34, 52, 37), (38, 48, 33)])
THIN_MRI = fingerprint((1.5, 1.5, 10.0), [(256, 256, 8), (256, 256, 12), (256, 256, 18)])
CT_FOREGROUND = {"mean": 80.0, "std": 120.0, "lower": -150.0, "upper": 1800.0, "voxels": 40000}
CT = fingerprint((0.8, 0.8, 5.0), [(512, 512, 96), (512, 512, 100), (512, 512, 104)], modality="CT",
                 foreground=CT_FOREGROUND)


def test_la_like_gets_the_published_settings():
    plan = make_plan(LA_LIKE)
    assert plan.spacing == (0.625, 0.625, 0.625)
    assert plan.strides == DEFAULT_STRIDES  # isotropic: every axis halved in every stage
    # the median case (190 x 142 x 88) cut towards a cube in mm within 112 * 112 * 80 voxels
    assert plan.patch_size == (112, 112, 80)
    assert (plan.stride_xy, plan.stride_z) == (56, 40)
    assert plan.intensity == {"scheme": "zscore"}


def test_hippocampus_like_gets_its_hand_tuned_patch():
    plan = make_plan(HIPPO_LIKE)
    assert plan.spacing == (1.0, 1.0, 1.0)
    assert plan.patch_size == (32, 48, 32)  # 36 x 50 x 35 to the nearest multiples of 16
    assert plan.strides == DEFAULT_STRIDES  # 32 -> 16 -> 8 -> 4 -> 2 keeps MIN_BOTTLENECK voxels
    assert (plan.stride_xy, plan.stride_z) == (16, 16)


def test_thin_anisotropic_mri_pools_in_plane_first():
    plan = make_plan(THIN_MRI)
    assert plan.spacing == (1.5, 1.5, 10.0)  # 10th percentile of the (equal) slice spacings
    # 1.5 -> 3 -> 6 mm in-plane before Z (10 mm) is less than twice the finest; then all halve
    assert plan.strides == ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2))
    assert total_strides(plan.strides) == (16, 16, 4)
    assert plan.patch_size[2] == 12  # the median 12 slices, a multiple of 4: all of them
    assert math.prod(plan.patch_size) <= DEFAULT_BUDGET
    assert plan.patch_size[0] * 1.5 <= 256 * 1.5
    assert patch_size_problem(plan.patch_size, plan.strides) is None


def test_small_budget_keeps_the_few_thick_slices_and_cuts_in_plane():
    patch, strides = plan_patch((1.5, 1.5, 10.0), (256, 256, 12), budget=64 * 64 * 16)
    assert patch == (64, 80, 12)  # 120 mm of slices kept; 96 x 120 mm in-plane
    assert strides == ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2))
    assert math.prod(patch) <= 64 * 64 * 16


def test_ct_plan():
    plan = make_plan(CT)
    assert plan.spacing == (0.8, 0.8, 5.0)
    assert plan.strides == ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2))
    assert plan.patch_size == (176, 176, 32)  # 141 x 141 x 160 mm within the LA patch's voxels
    assert plan.intensity == {"scheme": "ct", "lower": -150.0, "upper": 1800.0, "mean": 80.0, "std": 120.0}


def test_coarse_axis_takes_its_10th_percentile_where_spacings_vary():
    spacings = [(0.7, 0.7, z) for z in (3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 8.0, 8.0, 10.0, 10.0)]
    shapes = [(512, 512, 40)] * 10
    target, why = target_spacing(spacings, shapes)
    assert target[:2] == (0.7, 0.7)
    assert target[2] == pytest.approx(np.percentile([s[2] for s in spacings], 10))  # 3.9, not the median 5.5
    assert "10th percentile" in why
    # not anisotropic in voxels (the coarse axis has many): the median
    target, why = target_spacing(spacings, [(64, 64, 60)] * 10)
    assert target[2] == 5.5 and why == "the median voxel size"


def test_strides_and_rounding_rules():
    assert vnet_strides((1, 1, 1), (16, 16, 16)) == ((2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1))  # 16 -> 2, stop
    assert vnet_strides((1, 1, 3), (64, 64, 64)) == ((2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    assert round_to_multiple(11, 4) == 12 and round_to_multiple(9, 4) == 8 and round_to_multiple(1, 16) == 16
    assert round_to_multiple(88, 16) == 80  # halfway: the smaller
    assert shape_at((100, 100, 10), (1, 1, 5), (2, 2, 2.5)) == (50, 50, 20)
    assert window_strides((64, 80, 12)) == (32, 6)


def test_planned_network_takes_its_patch():
    plan = make_plan(THIN_MRI, budget=64 * 64 * 16)
    net = VNet(n_classes=3, strides=plan.strides).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, *plan.patch_size))
    assert out.shape == (1, 3, *plan.patch_size)


def test_intensity_needs_ct_foreground():
    assert intensity_scheme("MRI", None) == {"scheme": "zscore"}
    assert intensity_scheme(None, None) == {"scheme": "zscore"}
    assert intensity_scheme("ct", CT_FOREGROUND)["scheme"] == "ct"
    with pytest.raises(UserError, match="foreground"):
        intensity_scheme("CT", None)


def test_spacings_too_far_apart_name_the_files():
    with pytest.raises(UserError, match="case_1.nii.gz") as err:
        check_spacings([(1, 1, 1), (1, 1, 5.0)], ["case_0.nii.gz", "case_1.nii.gz"], (1, 1, 1))
    assert "\n" not in str(err.value)
    check_spacings([(1, 1, 1), (1, 1, 3.9)], ["a", "b"], (1, 1, 1))  # within 4x: resampled


def test_fingerprint_round_trip():
    assert Fingerprint.from_dict(CT.to_dict()) == CT
