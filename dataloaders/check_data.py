"""Checking a dataset before training: every listed case loads, image and label agree,
labels hold only the expected classes, images are finite. All problems are reported at
once, one line each, naming the case and file."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dataloaders.la_heart import case_path, read_case
from utils.errors import UserError


class DataProblems(UserError):
    """One or more cases failed the check; the message has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the data:\n  " + "\n  ".join(problems))


def check_cases(root, case_ids, num_classes: int, read=None, case_file=None, threads: int = 8) -> list:
    """Read and check every case; returns their (image, label) in order, or raises
    ``DataProblems``. The threads overlap waiting for the disk only: h5py decompresses one file
    at a time (16 cached LA cases took 0.68 s with two threads and one alike, 2-core CPU).
    ``read(root, case_id)`` and ``case_file(root, case_id)`` (named in messages) default to the
    LA h5 layout."""
    read, case_file = read or read_case, case_file or case_path
    def attempt(case_id):
        try:
            return read(root, case_id)
        except UserError as err:
            return err

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(attempt, case_ids))
    problems, volumes = [], []
    for case_id, result in zip(case_ids, results):
        if isinstance(result, UserError):
            problems.append(f"case {case_id}: {result}")
            continue
        image, label = result
        path = case_file(root, case_id)
        non_finite = int(image.size - np.count_nonzero(np.isfinite(image)))
        if non_finite:
            problems.append(f"case {case_id}: {non_finite} image voxel(s) are NaN or infinite in {path}")
        values = np.unique(label)
        outside = values[(values < 0) | (values >= num_classes)]
        if outside.size:
            problems.append(f"case {case_id}: label value(s) {', '.join(map(str, outside.tolist()))} outside the "
                            f"{num_classes} classes (0..{num_classes - 1}) in {path}")
        volumes.append((image, label))
    if problems:
        raise DataProblems(problems)
    return volumes


def data_report(volumes, num_classes: int) -> str:
    """A few lines: the number of cases, shape range, intensity range and class fractions."""
    shapes = np.array([image.shape for image, _ in volumes])
    means = np.array([image.mean() for image, _ in volumes])
    stds = np.array([image.std() for image, _ in volumes])
    fractions = np.array([[np.mean(label == c) for c in range(num_classes)] for _, label in volumes])
    lines = [f"{len(volumes)} cases, shapes from {tuple(shapes.min(0).tolist())} to {tuple(shapes.max(0).tolist())} voxels",
             f"image mean {means.min():.2f} to {means.max():.2f}, std {stds.min():.2f} to {stds.max():.2f}"]
    for c in range(num_classes):
        lines.append(f"class {c}: {100 * fractions[:, c].mean():.1f} % of voxels on average "
                     f"({100 * fractions[:, c].min():.1f} to {100 * fractions[:, c].max():.1f} %)")
    return "\n".join(lines)
