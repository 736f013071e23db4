"""evaluation/uncertainty.py against hand-made probability maps (expected Dice error, flip
disagreement, their means, the entropy), the Predictor's mirrored passes undone (a toy network
that commutes with mirroring agrees with itself exactly; one that does not, does not), and the
table and report built from the scores (uncertainty_table.py, uncertainty_report.py)."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from evaluation.predictor import Predictor
from evaluation.uncertainty import (UncertaintyAccumulator, components_per_class, expected_dice_error, flip_sets,
                                    mask_dice, normalized_entropy, volumes_ml)
from evaluation.uncertainty_report import failure_detection, plot_score_against_dice
from evaluation.uncertainty_table import (flag_rows, flag_summary, read_rows, scan_row, upper_fence,
                                          write_rows)
from networks.vnet import VNet
from utils.checkpoint import VNET_CONFIG
from utils.errors import UserError

CPU = torch.device("cpu")
SHAPE = (8, 8, 8)
A = (slice(2, 6), slice(2, 6), slice(2, 6))   # a 4 x 4 x 4 block (64 voxels)
B = (slice(3, 7), slice(2, 6), slice(2, 6))   # A shifted by one voxel along x (48 voxels shared)
C = (slice(0, 2), slice(6, 8), slice(6, 8))   # a 2 x 2 x 2 block (8 voxels), away from A and B


def one_hot(labels: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """(C, X, Y, Z) float32 probabilities that are certain of ``labels``."""
    return (np.arange(num_classes)[:, None, None, None] == labels[None]).astype(np.float32)


def label_map(*blocks) -> np.ndarray:
    """A uint8 label map with each (region, class) of ``blocks`` set."""
    labels = np.zeros(SHAPE, np.uint8)
    for region, value in blocks:
        labels[region] = value
    return labels


def accumulate(passes) -> UncertaintyAccumulator:
    accumulator = UncertaintyAccumulator()
    for probabilities in passes:
        accumulator.add(probabilities)
    return accumulator


# --- hand-made maps --------------------------------------------------------------------------

def test_flip_sets_are_every_mirroring_the_unflipped_first():
    assert flip_sets() == [(), (0,), (1,), (0, 1)]  # x and y, as the training augmentation flips
    assert flip_sets((2, 0, 0)) == [(), (0,), (2,), (0, 2)]  # sorted, each axis once
    assert flip_sets(()) == [()]
    with pytest.raises(ValueError, match="0, 1 or 2"):
        flip_sets((3,))


def test_normalized_entropy_is_0_for_one_hot_and_1_for_uniform():
    labels = label_map((A, 1), (C, 2))
    certain = normalized_entropy(one_hot(labels))
    assert certain.dtype == np.float32 and certain.shape == SHAPE
    np.testing.assert_allclose(certain, 0, atol=1e-6)
    for classes in (2, 3, 5):
        uniform = np.full((classes, *SHAPE), 1 / classes, np.float32)
        np.testing.assert_allclose(normalized_entropy(uniform), 1, rtol=1e-6)
    # half and half between two of three classes: ln 2 / ln 3
    half = np.zeros((3, 1, 1, 1), np.float32)
    half[:2] = 0.5
    assert normalized_entropy(half)[0, 0, 0] == pytest.approx(np.log(2) / np.log(3), rel=1e-6)


def test_a_certain_map_scores_0():
    """Every pass one-hot and agreeing with the delivered labels: nothing to doubt."""
    labels = label_map((A, 1), (C, 2))
    result = accumulate([one_hot(labels)] * 4).result(labels)
    assert result.expected_dice_error == [0.0, 0.0]
    assert result.flip_disagreement == [0.0, 0.0]
    assert result.per_class == [0.0, 0.0] and result.score == 0.0
    assert result.entropy == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(result.voxel_map, 0, atol=1e-6)


def test_an_uncertain_block_gives_the_hand_computed_expected_dice_error():
    """Class 1: 0.6 on the 64 voxels the labels call class 1 and 0.2 on 64 background voxels
    around them: 1 - (2 * 38.4 + 1) / (38.4 + 12.8 + 64 + 1) (one voxel of smoothing). Class 2
    certain: 1 - (2 * 8 + 1) / (8 + 8 + 1) = 0."""
    labels = label_map((A, 1), (C, 2))
    probabilities = one_hot(labels)
    probabilities[:, A[0], A[1], A[2]] = np.array([0.4, 0.6, 0.0])[:, None, None, None]
    shell = (slice(6, 8), slice(0, 8), slice(0, 4))  # 2 x 8 x 4 = 64 background voxels
    probabilities[:, shell[0], shell[1], shell[2]] = np.array([0.8, 0.2, 0.0])[:, None, None, None]
    assert (labels[shell] == 0).all()
    class_1 = 1 - 77.8 / 116.2
    np.testing.assert_allclose(expected_dice_error(probabilities, labels), [class_1, 0.0], atol=1e-6)

    only_inside = one_hot(labels)
    only_inside[:, A[0], A[1], A[2]] = np.array([0.4, 0.6, 0.0])[:, None, None, None]
    # 1 - (2 * 0.6 * 64 + 1) / (0.6 * 64 + 64 + 1) = 1 - 77.8 / 103.4
    np.testing.assert_allclose(expected_dice_error(only_inside, labels), [1 - 77.8 / 103.4, 0.0], atol=1e-6)

    # one pass (nothing mirrored): no disagreement, the class's score is half its expected error
    result = accumulate([probabilities]).result(labels)
    assert result.flip_disagreement == [0.0, 0.0]
    np.testing.assert_allclose(result.per_class, [class_1 / 2, 0.0], atol=1e-6)
    assert result.score == pytest.approx(class_1 / 4, abs=1e-6)


def test_a_class_neither_predicted_nor_labeled_has_no_error_and_empty_masks_agree():
    labels = label_map((A, 1))
    assert expected_dice_error(one_hot(labels), labels) == [0.0, 0.0]  # class 2 absent everywhere
    # left out while the network expects a tenth of a voxel of it: about certain, not failed;
    # left out while it expects 50 voxels of it: about failed
    faint = one_hot(labels)
    faint[2, 0, 0, 0], faint[0, 0, 0, 0] = 0.1, 0.9
    assert expected_dice_error(faint, labels)[1] == pytest.approx(1 - 1 / 1.1)
    strong = one_hot(labels)
    strong[2, :5, :5, :2], strong[0, :5, :5, :2] = 1.0, 0.0
    assert expected_dice_error(strong, labels)[1] == pytest.approx(1 - 1 / 51)
    empty = np.zeros(SHAPE, bool)
    assert mask_dice(empty, empty) == 1.0
    assert mask_dice(labels == 1, empty) == 0.0
    assert mask_dice(labels == 1, label_map((B, 1)) == 1) == pytest.approx(2 * 48 / 128)


def test_mirrored_passes_that_disagree_give_the_hand_computed_scores():
    """Four one-hot passes, the unflipped first (the delivered segmentation: A class 1, C class 2):
    two mirrored passes repeat it; the third predicts class 1 on B (A shifted one voxel) and
    the second predicts no class 2.

    class 1: Dice with it 1, 1, 2 * 48 / 128 = 0.75 -> disagreement 1 - 2.75 / 3 = 1/12; the
    mean softmax is 1 on A and B's 48 shared voxels, 0.75 on A's other 16, 0.25 on B's other
    16 -> expected error 1 - (2 * 60 + 1) / (64 + 64 + 1) = 8/129; score (8/129 + 1/12) / 2.
    class 2: Dice 1, 0, 1 -> disagreement 1/3; mean 0.75 on C -> 1 - (2 * 6 + 1) / (6 + 8 + 1)
    = 2/15; score (2/15 + 1/3) / 2 = 7/30. Scan score: the mean of the two."""
    labels = label_map((A, 1), (C, 2))
    shifted = label_map((B, 1), (C, 2))
    no_class_2 = label_map((A, 1))
    passes = [one_hot(labels), one_hot(labels), one_hot(no_class_2), one_hot(shifted)]
    result = accumulate(passes).result(labels)
    np.testing.assert_allclose(result.flip_disagreement, [1 / 12, 1 / 3], atol=1e-9)
    np.testing.assert_allclose(result.expected_dice_error, [8 / 129, 2 / 15], atol=1e-6)
    np.testing.assert_allclose(result.per_class, [(8 / 129 + 1 / 12) / 2, 7 / 30], atol=1e-6)
    assert result.score == pytest.approx(((8 / 129 + 1 / 12) / 2 + 7 / 30) / 2, abs=1e-6)
    # the per-class score is the mean of its two errors, the scan's the mean of the classes
    for score, expected, disagreement in zip(result.per_class, result.expected_dice_error, result.flip_disagreement):
        assert score == pytest.approx((expected + disagreement) / 2)
    assert result.score == pytest.approx(np.mean(result.per_class))
    # the voxel map is the normalized entropy of the mean of the passes
    np.testing.assert_allclose(result.voxel_map, normalized_entropy(np.mean(passes, axis=0)), atol=1e-6)


def test_the_segmentation_scored_is_the_one_given_not_the_mean_softmax_argmax():
    """The disagreement is measured against the delivered labels: a mirrored pass equal to
    them costs nothing, whatever the first pass said."""
    labels = label_map((A, 1))
    other = label_map((B, 1))
    result = accumulate([one_hot(other, 2), one_hot(labels, 2)]).result(labels)
    assert result.flip_disagreement == [0.0]


def test_entropy_is_the_mean_over_the_foreground_and_its_border():
    """Two classes; class 1 at 0.5 on A (normalized entropy 1 there), certain elsewhere but for
    a uniform voxel far from A. The region is A dilated by one voxel (6 x 6 x 6 = 216 voxels),
    so the entropy is 64 / 216; the far voxel is in the voxel map but not in the mean."""
    labels = label_map((A, 1))
    probabilities = one_hot(labels, 2)
    probabilities[:, A[0], A[1], A[2]] = 0.5
    probabilities[:, 7, 7, 7] = 0.5
    result = accumulate([probabilities]).result(labels)
    assert result.entropy == pytest.approx(64 / 216, rel=1e-5)
    assert result.voxel_map[7, 7, 7] == pytest.approx(1, rel=1e-6)
    empty = np.zeros(SHAPE, np.uint8)
    assert accumulate([one_hot(empty, 2)]).result(empty).entropy == 0.0  # no foreground anywhere


def test_no_pass_is_an_error():
    with pytest.raises(ValueError, match="no prediction pass"):
        UncertaintyAccumulator().result(np.zeros(SHAPE, np.uint8))


def test_components_touch_diagonally_and_volumes_are_in_ml():
    labels = np.zeros(SHAPE, np.uint8)
    labels[0, 0, 0] = labels[1, 1, 1] = 1      # corner neighbours: one component (26-neighbourhood)
    labels[5, 5, 5] = 1                         # a second one
    labels[3:5, 0, 0] = 2                       # class 2: one component of 2 voxels
    assert components_per_class(labels, 3) == [2, 1]
    assert components_per_class(labels, 4) == [2, 1, 0]
    np.testing.assert_allclose(volumes_ml(labels, 3, (0.5, 2.0, 3.0)), [3 * 3.0 / 1000, 2 * 3.0 / 1000])


# --- the Predictor's mirrored passes ---------------------------------------------------------

def checkpoint(num_classes=2):
    """A checkpoint as the training scripts write it (the parts a Predictor reads), with a
    randomly initialised narrow VNet (the toy window functions below never run it)."""
    torch.manual_seed(0)
    config = {**VNET_CONFIG, "n_filters": 4, "n_classes": num_classes}
    weights = VNet(**config).state_dict()
    return {"network": config, "student": weights, "teacher": weights,
            "args": {"dataset_name": "Synthetic", "patch_size": [32, 32, 16]}}


class ToyWindows:
    """A window function for Predictor computing two-class probabilities from the image it is
    given by ``rule(image) -> p1`` (numpy), and remembering the images it was given."""

    def __init__(self, rule):
        self.rule, self.seen = rule, []

    def __call__(self, model, image, **settings):
        image = np.asarray(image)
        self.seen.append(image.copy())
        p1 = self.rule(image).astype(np.float32)
        probabilities = torch.from_numpy(np.stack([1 - p1, p1]))
        return probabilities, probabilities.argmax(0)


def pointwise(image):
    """A function of each voxel's value alone (arithmetic only, so exactly the same wherever the
    voxel sits): it commutes with any mirroring."""
    return image * image / (1 + image * image)


def ramp_along_x(image):
    """0 at the first x and 1 at the last, whatever the image: a network that does not commute
    with mirroring along x."""
    x = np.arange(image.shape[0], dtype=np.float32) / (image.shape[0] - 1)
    return np.broadcast_to(x[:, None, None], image.shape)


def asymmetric_image(shape=(20, 14, 10)):
    return np.random.default_rng(3).normal(size=shape).astype(np.float32)


def test_a_network_that_commutes_with_mirroring_agrees_with_itself_exactly():
    toy = ToyWindows(pointwise)
    predictor = Predictor(checkpoint(), "toy.pth", device=CPU, sliding_window=toy)
    image = asymmetric_image()
    plain = predictor.probabilities_on_grid(image)
    for flip in ((0,), (1,), (2,), (0, 1)):
        np.testing.assert_array_equal(predictor.probabilities_on_grid(image, flip=flip), plain)
    toy.seen.clear()
    labels, probabilities, uncertainty = predictor.predict_with_uncertainty(image)
    assert uncertainty.flip_disagreement == [0.0]
    np.testing.assert_array_equal(probabilities, plain)
    np.testing.assert_array_equal(labels, (pointwise(image) > 0.5).astype(np.uint8))
    assert labels.any() and not labels.all()  # something to disagree about
    # the toy saw the image as it is, then mirrored along x, y and both: the flips were applied
    assert len(toy.seen) == 4
    for seen, axes in zip(toy.seen, [(), (0,), (1,), (0, 1)]):
        np.testing.assert_array_equal(seen, np.flip(image, axis=axes) if axes else image)


def test_a_network_that_does_not_commute_with_mirroring_disagrees():
    """The ramp along x says class 1 on the upper half of x; shown the scan mirrored along x it
    says the same of the mirrored scan, which mirrored back is the lower half: Dice 0 for the x
    and x-y flips, 1 for the y flip, so the disagreement is 1 - 1/3 = 2/3."""
    toy = ToyWindows(ramp_along_x)
    predictor = Predictor(checkpoint(), "toy.pth", device=CPU, sliding_window=toy)
    image = asymmetric_image()
    mirrored = predictor.probabilities_on_grid(image, flip=(0,))
    # by hand: the toy's output on the mirrored image, mirrored back along x (axis 1 of (C, X, Y, Z))
    expected = np.flip(np.stack([1 - ramp_along_x(image[::-1]), ramp_along_x(image[::-1])]), axis=1)
    np.testing.assert_allclose(mirrored, expected, atol=1e-7)
    assert mirrored[1, 0, 0, 0] == pytest.approx(1) and mirrored[1, -1, 0, 0] == pytest.approx(0)
    np.testing.assert_allclose(predictor.probabilities_on_grid(image, flip=(1,)),
                               predictor.probabilities_on_grid(image), atol=1e-7)

    labels, probabilities, uncertainty = predictor.predict_with_uncertainty(image)
    assert uncertainty.flip_disagreement == [pytest.approx(2 / 3)]
    upper_half = np.zeros(image.shape, np.uint8)
    upper_half[10:] = 1
    np.testing.assert_array_equal(labels, upper_half)  # the unflipped pass's segmentation
    np.testing.assert_allclose(probabilities[1], ramp_along_x(image), atol=1e-7)
    # mean over the passes: 0.5 everywhere, so the expected Dice error is
    # 1 - (2 * 0.5 * n + 1) / (0.5 * 2n + n + 1) = 1 - (n + 1) / (2n + 1), n the class-1 voxels
    n = int(upper_half.sum())
    assert uncertainty.expected_dice_error == [pytest.approx(1 - (n + 1) / (2 * n + 1), abs=1e-6)]
    assert uncertainty.score == pytest.approx((1 - (n + 1) / (2 * n + 1) + 2 / 3) / 2, abs=1e-6)
    np.testing.assert_allclose(uncertainty.voxel_map, 1, rtol=1e-5)  # a uniform guess everywhere


def test_flip_axes_choose_the_passes_and_the_labels_never_change():
    """Asking for the uncertainty never changes the segmentation: the labels are predict()'s."""
    toy = ToyWindows(pointwise)
    predictor = Predictor(checkpoint(), "toy.pth", device=CPU, sliding_window=toy, lcc=True)
    image = asymmetric_image()
    labels, probabilities, _ = predictor.predict_with_uncertainty(image, flip_axes=(2,))
    assert [seen.shape for seen in toy.seen] == [image.shape] * 2  # unflipped, then z
    np.testing.assert_array_equal(toy.seen[1], image[:, :, ::-1])
    expected_labels, expected_probabilities = predictor.predict(image, with_probabilities=True)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(probabilities, expected_probabilities)



def test_with_lcc_a_network_that_commutes_with_mirroring_still_agrees_with_itself():
    """With the largest-component clean-up the delivered segmentation is cut to one component;
    the mirrored passes are segmentations of the same scan and must be cut alike before they
    are compared with it, or the "disagreement" measures the clean-up, not the mirroring.
    Two bright blocks (27 and 180 voxels) that the pointwise toy calls class 1 in every pass:
    all passes agree exactly, so the disagreement is 0. (Comparing the uncut mirrored passes
    with the cut segmentation gives 1 - 2 * 180 / (180 + 207) = 0.0698 instead.)"""
    image = np.zeros((20, 14, 10), np.float32)
    image[2:5, 2:5, 2:5] = 3
    image[12:18, 6:12, 3:8] = 3
    plain = Predictor(checkpoint(), "toy.pth", device=CPU, sliding_window=ToyWindows(pointwise))
    assert plain.predict_with_uncertainty(image)[2].flip_disagreement == [0.0]
    predictor = Predictor(checkpoint(), "toy.pth", device=CPU, sliding_window=ToyWindows(pointwise), lcc=True)
    labels, _, uncertainty = predictor.predict_with_uncertainty(image)
    assert labels.sum() == 180 and labels[12:18, 6:12, 3:8].all()  # the clean-up kept the larger block
    assert uncertainty.flip_disagreement == [0.0]

# --- the table and the report ----------------------------------------------------------------

def row(case, score, volume=1.0):
    uncertainty = accumulate([one_hot(label_map((A, 1)), 2)]).result(label_map((A, 1)))
    uncertainty.score = score
    return scan_row(case, f"out/{case}.nii.gz", uncertainty, [volume], [1])


def test_rows_are_sorted_most_uncertain_first_and_flagged_with_a_reason():
    rows = [row("a", 0.1), row("b", 0.3), row("c", 0.2, volume=0.0)]
    assert list(rows[0]) == ["scan", "score", "volume_ml_1", "components_1", "expected_dice_error",
                             "flip_disagreement", "entropy", "segmentation"]
    flagged, fence = flag_rows(rows, flag_score=0.25)
    assert fence is None  # under 5 scans: no fence
    assert [r["scan"] for r in flagged] == ["b", "c", "a"]
    assert [r["flagged"] for r in flagged] == ["yes", "yes", "no"]
    assert flagged[0]["reason"] == "score 0.3000 >= --flag_score 0.25"
    assert flagged[1]["reason"] == "no voxel of class 1"
    assert flag_summary(flagged, fence, 0.25) == ("2 of 3 scan(s) flagged (1 an empty class, 1 --flag_score); "
                                                  "no fence under 5 scans, --flag_score 0.25")


def test_the_upper_fence_is_tukeys():
    assert upper_fence([0.1, 0.2, 0.3, 0.4]) is None
    # quartiles of 0.1, 0.2, 0.3, 0.4, 0.5 are 0.2 and 0.4: 0.4 + 1.5 * 0.2
    assert upper_fence([0.5, 0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.7)
    rows = [row(str(i), s) for i, s in enumerate([0.1, 0.1, 0.1, 0.1, 0.9])]
    flagged, fence = flag_rows(rows)
    assert fence == pytest.approx(0.1)  # no spread among the others
    assert [r["flagged"] for r in flagged] == ["yes", "no", "no", "no", "no"]
    assert flagged[0]["reason"] == "score 0.9000 above these scans' upper fence 0.1000"


def test_the_table_is_read_back_as_written(tmp_path):
    assert read_rows(tmp_path / "none.csv") == []
    rows, _ = flag_rows([row("a", 0.1), row("b", 0.3)])
    path = write_rows(tmp_path / "uncertainty.csv", rows)
    back = read_rows(path)
    assert [r["scan"] for r in back] == ["b", "a"] and back[0]["score"] == "0.3"
    assert [p.name for p in tmp_path.iterdir()] == ["uncertainty.csv"]  # no temporary file left
    (tmp_path / "other.csv").write_text("case,dice\nx,0.5\n")
    with pytest.raises(UserError, match="no score column"):
        read_rows(tmp_path / "other.csv")


def test_failure_detection_by_hand():
    """Ten cases, the score the reverse of Dice but for one pair swapped: Spearman's rho is
    -(1 - 6 * 2 / (10 * 99)); the worst case by Dice (10 %) is in the top 2 by score (20 %)."""
    cases = [f"c{i}" for i in range(10)]
    dice = np.linspace(0.9, 0.45, 10)       # c9 is the worst
    scores = np.arange(10, dtype=float)     # c9 scores highest
    scores[[0, 1]] = scores[[1, 0]]
    found = failure_detection(cases, scores, dice)
    assert found["spearman"] == pytest.approx(-(1 - 6 * 2 / (10 * 99)))
    assert found["spearman"] == pytest.approx(spearmanr(scores, dice).statistic)
    assert found["worst_by_dice"] == ["c9"] and found["top_by_score"] == ["c9", "c8"]
    assert found["worst_in_top"] == 1 and found["cases"] == 10
    assert failure_detection(["a", "b"], [0.1, 0.2], [0.5, 0.6])["spearman"] is None  # too few to rank
    assert failure_detection(["a", "b", "c"], [0.1, 0.1, 0.1], [0.5, 0.6, 0.7])["spearman"] is None  # constant


def test_the_picture_is_a_png(tmp_path):
    path = plot_score_against_dice(tmp_path / "u.png", ["a", "b", "c"], [0.1, 0.3, 0.2], [0.9, 0.5, 0.7], title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
