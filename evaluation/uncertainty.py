"""How far to trust one predicted segmentation, from the network alone (no label).

The network predicts the scan once as it is and once per mirroring of it (test-time flips, as
nnU-Net mirrors at prediction); each pass is the softmax averaged over the overlapping windows.
From the passes:

* the voxel map: the entropy of the mean softmax over the passes, divided by log(classes) so
  that 0 is certain and 1 is a uniform guess (written by ``predict.py --uncertainty``);
* per foreground class, two Dice errors of the delivered segmentation (the unflipped pass's),
  both 0 for a segmentation beyond doubt and growing with the doubtful voxels *relative to the
  structure's size*, which is what Dice punishes (a thin uncertain rim costs a large structure
  little and a small one much):
  - ``expected_dice_error``: ``1 - (2 sum(p * s) + 1) / (sum(p) + sum(s) + 1)``, where ``p`` is
    the mean softmax of the class and ``s`` the segmentation's mask of it (were the softmax
    calibrated, about one minus the Dice the segmentation can expect; the one voxel added
    makes a class that is left out and expected nowhere certain, not failed);
  - ``flip_disagreement``: one minus the mean Dice of the mirrored passes' segmentations with
    it (what changes when the same scan is shown mirrored);
* the class's score: the mean of the two; the scan's **score**: the mean over the classes.
  Scans rank by it; its value is not a measured Dice;
* ``entropy``, the mean voxel entropy over the predicted foreground and its one-voxel border
  (any pass's): reported, not scored (it ranked the cases of one Hippocampus model poorly).

The evidence for the choice of the score is in experiments/2026-12-06-cpu-uncertainty.
"""
import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# The training augmentation rotates and flips in the x-y plane only
# (dataloaders.transforms.RandomRotFlip), so mirroring x and y asks the network questions it
# was taught to answer alike; a z-flipped scan is one it never saw.
FLIP_AXES = (0, 1)


def flip_sets(axes=FLIP_AXES) -> list[tuple[int, ...]]:
    """Every mirroring over ``axes``, the unflipped one first: (), (0,), (1,), (0, 1) for x and y."""
    axes = tuple(sorted(set(int(a) for a in axes)))
    if any(not 0 <= a <= 2 for a in axes):
        raise ValueError(f"flip axes must be 0, 1 or 2 (x, y, z), got {axes}")
    return [combo for size in range(len(axes) + 1) for combo in itertools.combinations(axes, size)]


def normalized_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of (C, X, Y, Z) class probabilities per voxel divided by log(C): float32 in 0..1."""
    p = np.clip(probabilities.astype(np.float32, copy=False), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0)
    return (entropy / np.log(probabilities.shape[0])).astype(np.float32)


def expected_dice_error(probabilities: np.ndarray, labels: np.ndarray, smooth: float = 1.0) -> list[float]:
    """Per foreground class, ``1 - (2 sum(p * s) + smooth) / (sum(p) + sum(s) + smooth)``: one
    minus the soft Dice of the class probabilities ``p`` against the label map's mask ``s`` of
    it. ``smooth`` (one voxel) matters only where the class is about absent: a class the
    segmentation leaves out while the network expects less than a voxel of it is certain (about
    0), not a failure (1), as a class missing from some scans (a tumour) should be."""
    errors = []
    for c in range(1, probabilities.shape[0]):
        p, s = probabilities[c].astype(np.float64), labels == c
        errors.append(float(1.0 - (2.0 * p[s].sum() + smooth) / (p.sum() + s.sum() + smooth)))
    return errors


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; 1 where both are empty (they agree)."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 1.0


@dataclass
class ScanUncertainty:
    """The uncertainty of one segmentation (see the module's text); per-class lists hold the
    foreground classes 1..C-1."""
    score: float                      # mean over the foreground classes of ``per_class``
    per_class: list[float]            # each class's score: the mean of its two Dice errors below
    expected_dice_error: list[float]  # 1 - soft Dice of the mean softmax against the segmentation
    flip_disagreement: list[float]    # 1 - mean Dice of the mirrored passes' segmentations with it
    entropy: float                    # mean voxel entropy over the predicted foreground and its border
    voxel_map: np.ndarray             # (X, Y, Z) float32 normalized entropy of the mean softmax


class UncertaintyAccumulator:
    """Gathers the passes one at a time (a big scan's passes need not all be in memory):
    ``add(probabilities)`` for each, the unflipped first, then ``result(labels)`` with the
    segmentation that is delivered."""

    def __init__(self):
        self.total, self.count, self.pass_labels = None, 0, []

    def add(self, probabilities: np.ndarray, labels: np.ndarray | None = None) -> None:
        """One pass's probabilities and its segmentation made as the delivered one is made
        (the same clean-up: else what the clean-up removes would count as disagreement);
        ``labels`` None: the argmax."""
        probabilities = np.asarray(probabilities, np.float32)
        self.total = probabilities.copy() if self.total is None else self.total + probabilities
        self.count += 1
        self.pass_labels.append(np.argmax(probabilities, axis=0).astype(np.uint8) if labels is None
                                else np.asarray(labels, np.uint8))

    @property
    def mean(self) -> np.ndarray:
        """The mean softmax over the passes so far, (C, X, Y, Z)."""
        return self.total / self.count

    def result(self, labels: np.ndarray) -> ScanUncertainty:
        if not self.count:
            raise ValueError("no prediction pass was added")
        mean = self.mean
        classes = range(1, mean.shape[0])
        voxel_map = normalized_entropy(mean)
        expected = expected_dice_error(mean, labels)
        mirrored = self.pass_labels[1:]  # the unflipped pass is the segmentation's own
        disagreement = [1.0 - float(np.mean([mask_dice(p == c, labels == c) for p in mirrored])) if mirrored else 0.0
                        for c in classes]
        foreground = labels > 0
        for pass_labels in self.pass_labels:
            foreground |= pass_labels > 0
        region = ndimage.binary_dilation(foreground, structure=np.ones((3, 3, 3), bool)) if foreground.any() else foreground
        per_class = [(e + d) / 2 for e, d in zip(expected, disagreement)]
        return ScanUncertainty(score=float(np.mean(per_class)), per_class=per_class, expected_dice_error=expected,
                               flip_disagreement=disagreement,
                               entropy=float(voxel_map[region].mean()) if region.any() else 0.0, voxel_map=voxel_map)


def components_per_class(labels: np.ndarray, num_classes: int) -> list[int]:
    """The connected components (26-neighbourhood) of each foreground class of a label map."""
    structure = np.ones((3, 3, 3), bool)
    return [int(ndimage.label(labels == c, structure=structure)[1]) for c in range(1, num_classes)]


def volumes_ml(labels: np.ndarray, num_classes: int, spacing) -> list[float]:
    """The volume of each foreground class in mL from the voxel size ``spacing`` (mm)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return [float(np.count_nonzero(labels == c)) * voxel_ml for c in range(1, num_classes)]
