"""Diagnostic (not part of the toolkit): does a checkpoint segment a scan as well in another
orientation? Scores the first cases of a list with the scans as stored, turned in the x-y plane
and mirrored along each axis (the prediction turned back before scoring), Dice % and
predicted / true volume of each foreground class. Until 2026-12-07 the training augmentation
(UA-MT's RandomRotFlip) mirrored x or y after every quarter turn, so training only ever saw the
x-y reflections ("mirrored x", "mirrored y" here), never the scans as stored, and never a z
mirroring.

    python orientations.py <checkpoint> <data root> <eval list> [weights] [cases]

``weights``: ``student`` (default), ``teacher`` or ``teacher_b``; ``cases``: how many of the
list (default 20).
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dataloaders.msd import read_msd_case  # noqa: E402
from evaluation.predictor import Predictor  # noqa: E402
from utils.metrics import dice as mask_dice  # noqa: E402

ORIENTATIONS = {  # name: (to the orientation, back)
    "as stored": (lambda a: a, lambda a: a),
    "turned 90 degrees in x-y": (lambda a: np.rot90(a, 1, (0, 1)), lambda a: np.rot90(a, -1, (0, 1))),
    "turned 180 degrees in x-y": (lambda a: np.rot90(a, 2, (0, 1)), lambda a: np.rot90(a, -2, (0, 1))),
    "mirrored x": (lambda a: a[::-1], lambda a: a[::-1]),
    "mirrored y": (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    "mirrored z": (lambda a: a[:, :, ::-1], lambda a: a[:, :, ::-1]),
}


def main():
    checkpoint_path, root, eval_list = sys.argv[1:4]
    weights = sys.argv[4] if len(sys.argv) > 4 else "student"
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    torch.set_num_threads(1)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    predictor = Predictor({**checkpoint, "student": checkpoint[weights]}, checkpoint_path, device=torch.device("cpu"))
    classes = range(1, predictor.num_classes)
    cases = [read_msd_case(root, case, predictor.num_classes) for case in Path(eval_list).read_text().split()[:count]]
    print(f"{checkpoint_path} ({weights}), first {len(cases)} cases of {eval_list}; per foreground class:")
    for name, (turn, back) in ORIENTATIONS.items():
        dice, volume = [], []
        for image, label in cases:
            labels = back(predictor.predict(np.ascontiguousarray(turn(image)))[0])
            dice.append([mask_dice(labels == c, label == c) for c in classes])
            volume.append([(labels == c).sum() / max((label == c).sum(), 1) for c in classes])
        print(f"  {name:26s} Dice % {np.round(100 * np.mean(dice, axis=0), 1)}, predicted / true volume "
              f"{np.round(np.mean(volume, axis=0), 2)}", flush=True)


if __name__ == "__main__":
    main()
