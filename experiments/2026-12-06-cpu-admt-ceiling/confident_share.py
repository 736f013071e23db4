"""Diagnostic (not part of the toolkit): what AD-MT's unlabeled loss keeps, per class. For each
checkpoint, on unlabeled training cases, the teacher's sliding-window prediction (eval mode, so
an approximation of the training-time pseudo-labels): per true class, the share of its voxels
that are confidently (max probability >= threshold) labeled as that class, and the share
confidently labeled as background. A class whose voxels are confidently called background is
taught to shrink.

    python confident_share.py <data root> <case list> <first case> <count> <weights> <threshold> <checkpoint> [...]
"""
import sys
from pathlib import Path

import numpy as np
import torch

from class_volumes import predictors_and_cases  # beside this file


def main():
    root, case_list, first, count, weights, threshold, *checkpoint_paths = sys.argv[1:]
    ids = Path(case_list).read_text().split()[int(first):int(first) + int(count)]
    for path, predictor, cases in predictors_and_cases(root, ids, weights, checkpoint_paths):
        classes = predictor.num_classes
        as_itself, as_background, true = np.zeros(classes), np.zeros(classes), np.zeros(classes)
        own = [[] for _ in range(classes)]  # each class's probability where it is predicted
        with torch.no_grad():
            for image, label in cases:
                labels, probabilities = predictor.predict(image, with_probabilities=True)
                confident = probabilities.max(axis=0) >= float(threshold)
                for c in range(classes):
                    mask = label == c
                    true[c] += mask.sum()
                    as_itself[c] += (mask & confident & (labels == c)).sum()
                    as_background[c] += (mask & confident & (labels == 0)).sum()
                    own[c].append(probabilities[c][labels == c])
        print(f"{Path(path).name} ({weights}): per true class (background first), confidently itself "
              f"{np.round(as_itself / true, 3)}, confidently background (foreground classes) {np.round(as_background[1:] / true[1:], 3)}; "
              f"its own probability where predicted, median / 99th percentile per foreground class "
              f"{[np.round(np.percentile(np.concatenate(v), [50, 99]), 3).tolist() for v in own[1:]]}", flush=True)


if __name__ == "__main__":
    main()
