"""Diagnostic (not part of the toolkit): does a checkpoint (Hippocampus, the LA proxy) lose Dice
to its BatchNorm running statistics? Scores the cases of a list three ways: as inference.py does (eval
mode, the running statistics gathered under training's augmentation); with each window batch's
own statistics; and with running statistics recomputed from unaugmented random crops of the
labeled training cases (its ``labeled_ids``; 200 batches of 2, a cumulative average), then
eval mode. Dropout is off throughout (until a change of 2026-12-06 it was on in the second and
third ways, which made the second vary from call to call).

    python bn_statistics.py <checkpoint> <data root> <eval list> [weights]

``weights``: the checkpoint's ``student`` (default), ``teacher`` or ``teacher_b`` (AD-MT's second
teacher); with a teacher, only the first two ways (the resting teacher predicts in eval mode, the
following one with its batch's statistics), no recalibration.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dataloaders.datasets import data_folder  # noqa: E402
from evaluation.predictor import Predictor  # noqa: E402


def dice(predicted, truth) -> float:
    return 2 * (predicted & truth).sum() / max(predicted.sum() + truth.sum(), 1)


def score(predictor, cases, classes, batch_statistics: bool) -> np.ndarray:
    """Mean Dice per foreground class (%), running statistics left as they are."""
    norms = [m for m in predictor.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    predictor.model.eval()  # dropout off in every way of scoring: only BatchNorm changes
    for norm in norms:
        norm.momentum = 0.0  # in train mode: the batch's statistics, the running ones untouched
        norm.train(batch_statistics)
    per_case = []
    with torch.no_grad():
        for image, label in cases:
            labels, _ = predictor.predict(image)
            per_case.append([dice(labels == c, label == c) for c in range(1, classes)])
    predictor.model.eval()
    return np.round(100 * np.mean(per_case, axis=0), 2)


def recalibrate(predictor, cases, batches: int = 200, seed: int = 0) -> None:
    norms = [m for m in predictor.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    rng, patch = np.random.default_rng(seed), predictor.patch_size
    predictor.model.eval()
    for norm in norms:
        norm.train()  # BatchNorm gathers, dropout stays off as at inference
    with torch.no_grad():
        for _ in range(batches):
            crops = []
            for _ in range(2):
                image, _ = cases[rng.integers(len(cases))]
                image = np.pad(image, [(0, max(p - s, 0)) for p, s in zip(patch, image.shape)])
                start = [rng.integers(0, s - p + 1) for s, p in zip(image.shape, patch)]
                crops.append(image[tuple(slice(b, b + p) for b, p in zip(start, patch))])
            predictor.model(torch.from_numpy(np.stack(crops)[:, None].copy()).contiguous(
                memory_format=predictor.memory_format))
    predictor.model.eval()


def main():
    checkpoint_path, root, eval_list = sys.argv[1:4]
    weights = sys.argv[4] if len(sys.argv) > 4 else "student"
    torch.set_num_threads(1)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    predictor = Predictor({**checkpoint, "student": checkpoint[weights]}, checkpoint_path, device=torch.device("cpu"))
    classes = predictor.num_classes
    labeled = list(checkpoint["labeled_ids"])
    # the cases as the run read them (LA: z-scored per case where it trained so; MSD: its intensities)
    data = data_folder(root, normalize=checkpoint["args"].get("normalize") or "none",
                       intensity=checkpoint.get("intensity"))
    read = lambda ids: [data.read(c) for c in ids]  # noqa: E731
    evaluation = read(Path(eval_list).read_text().split())
    print(f"{checkpoint_path} ({weights}) on {eval_list}, Dice % per foreground class")
    print("  eval mode, running statistics (as inference.py):", score(predictor, evaluation, classes, False))
    print("  each window batch's own statistics:             ", score(predictor, evaluation, classes, True))
    if weights != "student":
        return
    recalibrate(predictor, read(labeled))
    print("  running statistics from unaugmented crops:      ", score(predictor, evaluation, classes, False),
          flush=True)


if __name__ == "__main__":
    main()
