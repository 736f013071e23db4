"""Checking a dataset before training: every listed case loads, image and label agree,
labels hold only the expected classes, images are finite. All problems are reported at
once, one line each, naming the case and file."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dataloaders.case_lists import read_case_list
from dataloaders.la_heart import check_patch_fits
from utils.errors import UserError


class DataProblems(UserError):
    """One or more cases failed the check; the message has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the data:\n  " + "\n  ".join(problems))


def check_cases(data, case_ids, *, num_classes: int | None = None, threads: int = 8) -> list:
    """Read and check every case of ``data`` (a ``DataFolder``); returns their (image, label)
    in order, or raises ``DataProblems``. Labels must lie in ``num_classes`` (default the
    folder's). The threads overlap waiting for the disk only: h5py decompresses one file at a
    time (16 cached LA cases took 0.68 s with two threads and one alike, 2-core CPU)."""
    num_classes = num_classes or data.num_classes

    def attempt(case_id):
        try:
            return data.read(case_id)
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
        path = data.case_file(case_id)
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


def print_data_report(data, list_files, patch_size=None) -> None:
    """``--check_data``: check the cases of each list file (None entries skipped) and print a
    short report of each; the training patch (``patch_size``, voxels) must fit the first list's
    volumes as training needs (``check_patch_fits``)."""
    for number, list_file in enumerate(list_files):
        if not list_file:
            continue
        case_ids = read_case_list(list_file)
        volumes = check_cases(data, case_ids)
        if number == 0 and patch_size is not None:
            check_patch_fits({c: image.shape for c, (image, _) in zip(case_ids, volumes)}, patch_size)
        print(f"{list_file}: all cases load and agree\n" + data_report(volumes, data.num_classes))
