"""Diagnostic (not part of the toolkit): does a checkpoint over- or under-segment a class?
For each checkpoint, the voxels predicted as each foreground class over the cases of a list,
divided by the true ones (1.0: the right total volume; below: the class shrinks), beside the
mean Dice per class. Predicts as inference.py does (eval mode, sliding window).

    python class_volumes.py <data root> <eval list> <weights> <checkpoint> [<checkpoint> ...]

``weights``: the checkpoint's ``student``, ``teacher`` or ``teacher_b`` (AD-MT's second teacher).
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dataloaders.msd import read_msd_case  # noqa: E402
from evaluation.predictor import Predictor  # noqa: E402
from utils.metrics import dice as mask_dice  # noqa: E402


def predictors_and_cases(root, ids, weights: str, checkpoint_paths):
    """(path, a Predictor on the checkpoint's ``weights``, the cases as (image, label)) per
    checkpoint, the cases read once, on one CPU thread."""
    torch.set_num_threads(1)
    cases = None
    for path in checkpoint_paths:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        predictor = Predictor({**checkpoint, "student": checkpoint[weights]}, path, device=torch.device("cpu"))
        cases = cases or [read_msd_case(root, case, predictor.num_classes) for case in ids]
        yield path, predictor, cases


def main():
    root, eval_list, weights, *checkpoint_paths = sys.argv[1:]
    ids = Path(eval_list).read_text().split()
    for path, predictor, cases in predictors_and_cases(root, ids, weights, checkpoint_paths):
        classes = predictor.num_classes
        predicted, true, dice = np.zeros(classes), np.zeros(classes), []
        with torch.no_grad():
            for image, label in cases:
                labels, _ = predictor.predict(image)
                predicted += np.bincount(labels.ravel(), minlength=classes)[:classes]
                true += np.bincount(label.ravel(), minlength=classes)[:classes]
                dice.append([mask_dice(labels == c, label == c) for c in range(1, classes)])
        print(f"{Path(path).name} ({weights}): predicted / true volume per class {np.round(predicted[1:] / true[1:], 3)}, "
              f"Dice % {np.round(100 * np.mean(dice, axis=0), 2)}", flush=True)


if __name__ == "__main__":
    main()
