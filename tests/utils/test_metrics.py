"""Tests for utils/metrics.py: values equal medpy.metric.binary (1e-6) wherever both masks are
non-empty, and every metric follows the module's one empty-mask rule."""
import glob
import math
import os

import numpy as np
import pytest
from scipy import ndimage

from utils.metrics import (
    EMPTY_MASK_RULE,
    METRICS,
    asd,
    binary_metrics,
    dice,
    hd95,
    jaccard,
    keep_largest_component_per_class,
    largest_connected_component,
    multiclass_metrics,
    surface_distances,
)

mb = pytest.importorskip("medpy.metric.binary")

TOL = 1e-6
ANISO = (0.625, 0.625, 1.25)


def blob(shape, seed, sigma=2.0, frac=0.15):
    """Random blobby mask: smoothed noise thresholded at the (1-frac) quantile."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise > np.quantile(noise, 1.0 - frac)


def medpy_values(pred, gt, spacing=None):
    return {
        "dice": mb.dc(pred, gt),
        "jaccard": mb.jc(pred, gt),
        "hd95": mb.hd95(pred, gt, voxelspacing=spacing),
        "asd": mb.asd(pred, gt, voxelspacing=spacing),
    }


def assert_same_as_medpy(pred, gt, spacing=None):
    ref = medpy_values(pred, gt, spacing)
    got = binary_metrics(pred, gt, spacing=spacing)
    for k, v in ref.items():
        assert abs(got[k] - v) <= TOL, (k, got[k], v)
        assert isinstance(got[k], float)
    assert got["empty_pred"] is False and got["empty_gt"] is False
    # stand-alone functions give the same numbers
    assert abs(dice(pred, gt) - ref["dice"]) <= TOL
    assert abs(jaccard(pred, gt) - ref["jaccard"]) <= TOL
    assert abs(hd95(pred, gt, spacing) - ref["hd95"]) <= TOL
    assert abs(asd(pred, gt, spacing) - ref["asd"]) <= TOL
    return got


SHAPES = [(24, 20, 16), (32, 32, 32), (17, 9, 23), (40, 28, 12), (5, 40, 6)]


@pytest.mark.parametrize("spacing", [None, ANISO])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_random_blobs_match_medpy(shape, seed, spacing):
    pred = blob(shape, seed, sigma=1.5 + seed * 0.5, frac=0.1 + 0.05 * seed)
    gt = blob(shape, seed + 100, sigma=2.0, frac=0.2)
    assert_same_as_medpy(pred, gt, spacing)


@pytest.mark.parametrize("spacing", [None, ANISO, 0.7])
@pytest.mark.parametrize("seed", [3, 4])
def test_perturbed_prediction_matches_medpy(seed, spacing):
    gt = blob((36, 30, 20), seed, sigma=3.0, frac=0.2)
    pred = ndimage.binary_dilation(np.roll(gt, 2, axis=1), iterations=1)
    pred[::7] = False  # holes / slices removed
    assert_same_as_medpy(pred, gt, spacing)
    # asd is directed: swapping arguments gives medpy's swapped value
    assert abs(asd(gt, pred, spacing) - mb.asd(gt, pred, voxelspacing=spacing)) <= TOL


@pytest.mark.parametrize("spacing", [None, ANISO])
def test_masks_touching_volume_border(spacing):
    shape = (20, 18, 14)
    gt = np.zeros(shape, bool)
    gt[:8, :, 3:] = True  # touches 5 faces of the volume
    pred = np.zeros(shape, bool)
    pred[2:, 5:, :10] = True
    assert_same_as_medpy(pred, gt, spacing)
    full = np.ones(shape, bool)  # surface = volume border only
    assert_same_as_medpy(full, gt, spacing)
    assert_same_as_medpy(gt, full, spacing)
    assert_same_as_medpy(full, full, spacing)
    # random blobs with large foreground fraction touch the border everywhere
    assert_same_as_medpy(blob(shape, 7, frac=0.6), blob(shape, 8, frac=0.5), spacing)


@pytest.mark.parametrize("spacing", [None, ANISO])
def test_single_voxel_masks(spacing):
    shape = (15, 12, 10)
    a = np.zeros(shape, bool)
    a[3, 4, 5] = True
    b = np.zeros(shape, bool)
    b[11, 0, 9] = True  # on the border, far away
    assert_same_as_medpy(a, b, spacing)
    assert_same_as_medpy(a, a, spacing)
    assert_same_as_medpy(a, blob(shape, 9), spacing)
    assert_same_as_medpy(blob(shape, 9), b, spacing)


def test_far_apart_nested_and_non_bool_inputs():
    shape = (30, 30, 30)
    a = np.zeros(shape, np.uint8)
    a[1:5, 1:5, 1:5] = 1
    b = np.zeros(shape, np.float32)
    b[20:29, 22:30, 18:27] = 2.5  # non-zero = foreground, like medpy
    assert_same_as_medpy(a, b)
    inner = np.zeros(shape, np.int64)
    inner[10:20, 10:20, 10:20] = 1
    outer = ndimage.binary_dilation(inner, iterations=3)
    assert_same_as_medpy(inner, outer, ANISO)
    assert_same_as_medpy(outer, inner, ANISO)


def test_2d_and_scalar_spacing():
    a = blob((64, 48), 11, sigma=3.0, frac=0.3)
    b = blob((64, 48), 12, sigma=3.0, frac=0.25)
    assert_same_as_medpy(a, b)
    assert_same_as_medpy(a, b, spacing=(0.5, 2.0))
    assert_same_as_medpy(a, b, spacing=1.7)


def test_surface_distances_shapes_and_values():
    gt = blob((20, 22, 18), 21, frac=0.2)
    pred = blob((20, 22, 18), 22, frac=0.2)
    d1, d2 = surface_distances(pred, gt, ANISO)
    assert d1.ndim == 1 and d2.ndim == 1
    surf = lambda m: m ^ ndimage.binary_erosion(m, ndimage.generate_binary_structure(3, 1))
    assert d1.size == np.count_nonzero(surf(pred))
    assert d2.size == np.count_nonzero(surf(gt))
    assert abs(d1.mean() - mb.asd(pred, gt, voxelspacing=ANISO)) <= TOL
    assert abs(d2.mean() - mb.asd(gt, pred, voxelspacing=ANISO)) <= TOL
    assert abs(np.percentile(np.concatenate([d1, d2]), 95)
               - mb.hd95(pred, gt, voxelspacing=ANISO)) <= TOL


@pytest.fixture(params=["kd_tree", "distance_transform"])
def strategy(request, monkeypatch):
    """Force one way of measuring surface distances (they must agree)."""
    import utils.metrics
    cost = 0 if request.param == "kd_tree" else 10**12
    monkeypatch.setattr(utils.metrics, "KD_QUERY_COST", cost)
    monkeypatch.setattr(utils.metrics, "KD_BUILD_COST", cost)
    return request.param


@pytest.mark.parametrize("seed", range(6))
def test_surface_distances_equal_distance_transform(seed, strategy):
    """The KD-tree distances are medpy's distance-transform distances: bit for bit with unit or
    binary-fraction spacing, within a few ulp (ties between equally near voxels) otherwise."""
    shape = (30 + seed, 25 + 2 * seed, 20 + seed % 3)
    a = blob(shape, seed, frac=0.05 + 0.03 * seed)
    b = blob(shape, seed + 1000, frac=0.12)
    cross = ndimage.generate_binary_structure(3, 1)
    surf = lambda m: m ^ ndimage.binary_erosion(m, cross)
    for spacing, tol in ((None, 0.0), (ANISO, 0.0), ((0.7, 0.9, 1.3), 1e-12), ((1 / 3, 0.1, 2.7), 1e-12)):
        d1, d2 = surface_distances(a, b, spacing)
        ref1 = ndimage.distance_transform_edt(~surf(b), sampling=spacing)[surf(a)]
        ref2 = ndimage.distance_transform_edt(~surf(a), sampling=spacing)[surf(b)]
        assert d1.shape == ref1.shape and d2.shape == ref2.shape
        assert np.abs(d1 - ref1).max() <= tol and np.abs(d2 - ref2).max() <= tol, spacing


@pytest.mark.parametrize("spacing", [None, ANISO])
def test_scattered_prediction_matches_medpy(spacing, strategy):
    """A noisy prediction all over the volume (a large surface, where the automatic choice
    takes the distance transform) against a compact ground truth, both ways forced."""
    shape = (40, 36, 24)
    gt = blob(shape, 41, sigma=4.0, frac=0.1)
    noisy = blob(shape, 42, sigma=0.7, frac=0.4)
    assert_same_as_medpy(noisy, gt, spacing)
    assert_same_as_medpy(gt, noisy, spacing)


def test_automatic_choice_of_distance_method(monkeypatch):
    """Surfaces small against their bounding box go to the KD-tree, a scattered one to the
    distance transform."""
    import utils.metrics
    calls = []
    real_edt = ndimage.distance_transform_edt
    monkeypatch.setattr(utils.metrics.ndimage, "distance_transform_edt",
                        lambda *a, **k: calls.append("edt") or real_edt(*a, **k))
    shape = (64, 64, 48)
    gt = np.zeros(shape, bool)
    gt[2:12, 3:13, 2:12] = True  # two small cubes far apart: small surfaces in a large box
    gt[50:60, 48:58, 34:44] = True
    binary_metrics(np.roll(gt, 2, axis=0), gt)
    assert calls == []
    binary_metrics(blob(shape, 43, sigma=0.7, frac=0.4), gt)
    assert calls == ["edt"]  # scattered -> compact by the transform, compact -> scattered by the tree


def _la_labels(n=2):
    root = os.environ.get("LA_ROOT")
    if not root or not os.path.isdir(root):
        pytest.skip("LA_ROOT unset or missing")
    files = sorted(glob.glob(os.path.join(root, "*", "mri_norm2.h5")))
    if len(files) < n:
        pytest.skip(f"fewer than {n} LA cases under {root}")
    h5py = pytest.importorskip("h5py")
    labels = []
    for f in files[:n]:
        with h5py.File(f, "r") as h:
            labels.append(h["label"][:])
    return labels


def _fit_to(x, shape):
    """Center-crop / zero-pad x to shape."""
    out = np.zeros(shape, x.dtype)
    src, dst = [], []
    for s, t in zip(x.shape, shape):
        if s >= t:
            o = (s - t) // 2
            src.append(slice(o, o + t))
            dst.append(slice(0, t))
        else:
            o = (t - s) // 2
            src.append(slice(0, s))
            dst.append(slice(o, o + s))
    out[tuple(dst)] = x[tuple(src)]
    return out


def test_la_labels_match_medpy():
    a, b = _la_labels(2)
    assert a.dtype == np.uint8
    # perturbed self: shifted by 3 voxels and eroded twice
    pred = ndimage.binary_erosion(np.roll(a, 3, axis=0), iterations=2)
    got = assert_same_as_medpy(pred.astype(np.uint8), a)
    assert 0.5 < got["dice"] < 1.0
    # another case brought to the same shape
    b2 = _fit_to(b, a.shape)
    assert_same_as_medpy(b2, a)


def test_empty_masks():
    shape = (10, 11, 12)
    e = np.zeros(shape, np.uint8)
    m = np.zeros(shape, np.uint8)
    m[2:5, 3:7, 4:9] = 1

    r = binary_metrics(e, m)
    assert r["dice"] == 0.0 and r["jaccard"] == 0.0
    assert math.isnan(r["hd95"]) and math.isnan(r["asd"])
    assert r["empty_pred"] is True and r["empty_gt"] is False

    r = binary_metrics(m, e, spacing=ANISO)
    assert r["dice"] == 0.0 and r["jaccard"] == 0.0
    assert math.isnan(r["hd95"]) and math.isnan(r["asd"])
    assert r["empty_pred"] is False and r["empty_gt"] is True

    r = binary_metrics(e, e)  # never silently perfect
    assert r["dice"] == 0.0 and r["jaccard"] == 0.0
    assert math.isnan(r["hd95"]) and math.isnan(r["asd"])
    assert r["empty_pred"] is True and r["empty_gt"] is True

    # Two empty masks: these asserted medpy 0.5.2's inconsistent values (dice NaN, jaccard 1.0);
    # now stand-alone dice/jaccard follow the one empty-mask rule like binary_metrics (0), and
    # medpy's own values stay asserted to show where we differ from it.
    with np.errstate(invalid="ignore", divide="ignore"):
        medpy_dc = mb.dc(e, e)
    assert dice(e, e) == 0.0 and math.isnan(medpy_dc)
    assert jaccard(e, e) == 0.0 and mb.jc(e, e) == 1.0
    assert dice(e, m) == mb.dc(e, m) == 0.0
    assert jaccard(m, e) == mb.jc(m, e) == 0.0
    # surface metrics: nan (medpy raises RuntimeError)
    for f in (hd95, asd):
        assert math.isnan(f(e, m)) and math.isnan(f(m, e)) and math.isnan(f(e, e))
    with pytest.raises(RuntimeError):
        mb.hd95(e, m)
    with pytest.raises(ValueError):
        surface_distances(e, m)
    with pytest.raises(ValueError):
        surface_distances(m, e)


def _empty_cases():
    """(empty pred, gt), (pred, empty gt), (both empty), as (pred, gt) pairs of (10, 11, 12) masks."""
    empty = np.zeros((10, 11, 12), np.uint8)
    full = empty.copy()
    full[2:5, 3:7, 4:9] = 1
    return {"empty_pred": (empty, full), "empty_gt": (full, empty), "both_empty": (empty, empty)}


@pytest.mark.parametrize("spacing", [None, ANISO])
@pytest.mark.parametrize("case", ["empty_pred", "empty_gt", "both_empty"])
def test_every_metric_follows_the_empty_mask_rule(case, spacing):
    """Dice 0 and Jaccard 0, 95HD and ASD NaN, from each function, for each kind of empty case."""
    pred, gt = _empty_cases()[case]
    assert dice(pred, gt) == 0.0 and jaccard(pred, gt) == 0.0
    assert math.isnan(hd95(pred, gt, spacing)) and math.isnan(asd(pred, gt, spacing))
    r = binary_metrics(pred, gt, spacing=spacing)
    assert r["dice"] == 0.0 and r["jaccard"] == 0.0
    assert math.isnan(r["hd95"]) and math.isnan(r["asd"])
    assert r["empty_pred"] is (case != "empty_gt") and r["empty_gt"] is (case != "empty_pred")
    assert all(isinstance(r[m], float) for m in METRICS)


def test_metric_names_and_rule_constants():
    a = blob((12, 10, 8), 51)
    assert tuple(binary_metrics(a, a))[:4] == METRICS == ("dice", "jaccard", "hd95", "asd")
    assert "Dice 0" in EMPTY_MASK_RULE and "NaN" in EMPTY_MASK_RULE


@pytest.mark.parametrize(
    "fn", [dice, jaccard, hd95, asd, binary_metrics, surface_distances]
)
def test_shape_mismatch_raises(fn):
    a = np.ones((4, 5, 6), bool)
    b = np.ones((4, 5, 7), bool)
    with pytest.raises(ValueError) as ei:
        fn(a, b)
    msg = str(ei.value)
    assert "(4, 5, 6)" in msg and "(4, 5, 7)" in msg and "\n" not in msg


def test_multiclass_shape_mismatch_and_bad_spacing():
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(3, 4\)"):
        multiclass_metrics(np.zeros((3, 3), int), np.zeros((3, 4), int), 2)
    a = np.ones((4, 5, 6), bool)
    with pytest.raises(ValueError):
        binary_metrics(a, a, spacing=(1.0, 1.0))
    with pytest.raises(ValueError):
        hd95(a, a, spacing=(1.0, 0.0, 1.0))


def test_multiclass_metrics():
    shape = (24, 20, 16)
    gt = np.zeros(shape, np.int64)
    gt[blob(shape, 31, frac=0.2)] = 1
    gt[blob(shape, 32, frac=0.1)] = 2
    pred = np.roll(gt, 1, axis=2)
    pred[pred == 2] = np.where(blob(shape, 33, frac=0.5)[pred == 2], 2, 0)
    res = multiclass_metrics(pred, gt, num_classes=4, spacing=ANISO)
    assert [r["class"] for r in res] == [1, 2, 3]
    for r in res[:2]:
        c = r["class"]
        ref = binary_metrics(pred == c, gt == c, spacing=ANISO)
        assert {k: r[k] for k in ref} == ref
        assert abs(r["hd95"] - mb.hd95(pred == c, gt == c, voxelspacing=ANISO)) <= TOL
    # class 3 absent from both
    assert res[2]["empty_pred"] and res[2]["empty_gt"] and res[2]["dice"] == 0.0
    assert math.isnan(res[2]["hd95"])


def test_largest_connected_component():
    m = np.zeros((10, 10, 10), np.uint8)
    m[0:3, 0:3, 0:3] = 1  # 27 voxels
    m[6:9, 6:9, 6:8] = 1  # 18 voxels
    m[3, 3, 3] = 1  # touches big block only diagonally (26-connectivity joins)
    m[8, 0, 8] = 1
    out = largest_connected_component(m)
    assert out.dtype == np.uint8 and out.shape == m.shape
    expected = np.zeros_like(m)
    expected[0:3, 0:3, 0:3] = 1
    expected[3, 3, 3] = 1
    np.testing.assert_array_equal(out, expected)

    b = largest_connected_component(m.astype(bool))
    assert b.dtype == bool and b.sum() == 28

    e = largest_connected_component(np.zeros((5, 6, 7), np.uint8))
    assert e.shape == (5, 6, 7) and not e.any()

    single = np.zeros((4, 4, 4), bool)
    single[1, 2, 3] = True
    np.testing.assert_array_equal(largest_connected_component(single), single)


def test_keep_largest_component_per_class():
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[0:4, 0:4, 0:4] = 1
    lab[8:10, 8:10, 8:10] = 1  # small class-1 island -> removed
    lab[0:2, 8:12, 0:2] = 2
    lab[6, 0, 11] = 2  # small class-2 island -> removed
    out = keep_largest_component_per_class(lab, num_classes=3)
    assert out.dtype == lab.dtype
    exp = lab.copy()
    exp[8:10, 8:10, 8:10] = 0
    exp[6, 0, 11] = 0
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(
        keep_largest_component_per_class(np.zeros((3, 3, 3), np.uint8), 3),
        np.zeros((3, 3, 3), np.uint8),
    )
