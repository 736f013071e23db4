"""Checking a dataset before training: every listed case loads, image and label agree,
labels hold only the expected classes, images are finite and 3D with the dataset's number of
channels; an unlabeled case's image is checked alike (its label is never read). All problems
are reported at once, one line each, naming the case and file."""
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


def check_cases(data, case_ids, *, num_classes: int | None = None, labeled: bool = True, threads: int = 8) -> list:
    """Read and check every case of ``data`` (a ``DataFolder``); returns their (image, label)
    in order, or raises ``DataProblems``. Labels must lie in ``num_classes`` (default the
    folder's); unlabeled cases (``labeled`` False) get the all-zero placeholder label of
    ``DataFolder.read``. The threads overlap waiting for the disk only: h5py decompresses one
    file at a time (16 cached LA cases took 0.68 s with two threads and one alike, 2-core CPU)."""
    num_classes = num_classes or data.num_classes

    def attempt(case_id):
        try:
            problem = data.channel_problem(case_id)
            return UserError(problem) if problem else data.read(case_id, labeled=labeled)
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
        if 0 in image.shape:
            problems.append(f"case {case_id}: the image has no voxels (shape {image.shape}) in {path}")
            continue
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


def check_training_cases(data, labeled_ids, unlabeled_ids) -> list:
    """``check_cases`` of the labeled cases, then of the unlabeled ones (images only), every
    problem of both at once; returns their (image, label) in that order."""
    problems, volumes = [], []
    for case_ids, labeled in ((labeled_ids, True), (unlabeled_ids, False)):
        try:
            volumes += check_cases(data, case_ids, labeled=labeled) if case_ids else []
        except DataProblems as err:
            problems += err.problems
    if problems:
        raise DataProblems(problems)
    return volumes


def data_report(volumes, num_classes: int, labeled: bool = True) -> str:
    """A few lines: the number of cases, shape range, intensity range and (of labeled cases)
    class fractions."""
    shapes = np.array([image.shape for image, _ in volumes])
    means = np.array([image.mean() for image, _ in volumes])
    stds = np.array([image.std() for image, _ in volumes])
    lines = [f"{len(volumes)} cases, shapes from {tuple(shapes.min(0).tolist())} to {tuple(shapes.max(0).tolist())} voxels",
             f"image mean {means.min():.2f} to {means.max():.2f}, std {stds.min():.2f} to {stds.max():.2f}"]
    if not labeled:
        return "\n".join(lines)
    fractions = np.array([[np.mean(label == c) for c in range(num_classes)] for _, label in volumes])
    for c in range(num_classes):
        lines.append(f"class {c}: {100 * fractions[:, c].mean():.1f} % of voxels on average "
                     f"({100 * fractions[:, c].min():.1f} to {100 * fractions[:, c].max():.1f} %)")
    return "\n".join(lines)


def print_data_report(data, *, training: tuple[str, list, list], val_list=None, patch_size=None,
                      patch_multiple=(1, 1, 1)) -> None:
    """``--check_data``: check the training cases (``training``: where they come from, the
    labeled and the unlabeled IDs) and the cases of ``val_list`` (if any), all problems at once,
    and print a short report of each set, labeled and unlabeled apart; the training patch
    (``patch_size``, voxels) must fit the training volumes as training needs (``check_patch_fits``)."""
    source, labeled_ids, unlabeled_ids = training
    sets = [(f"{source}, labeled", labeled_ids, True), (f"{source}, unlabeled", unlabeled_ids, False)]
    if val_list:
        sets.append((f"{val_list}", read_case_list(val_list), True))
    problems, checked, training_shapes = [], [], {}
    for number, (title, case_ids, labeled) in enumerate(sets):
        if not case_ids:
            continue
        try:
            volumes = check_cases(data, case_ids, labeled=labeled)
        except DataProblems as err:
            problems += err.problems
            continue
        checked.append((title, labeled, volumes))
        if number < 2:  # a training set
            training_shapes.update({c: image.shape for c, (image, _) in zip(case_ids, volumes)})
    if problems:
        raise DataProblems(problems)
    if patch_size is not None:
        check_patch_fits(training_shapes, patch_size, patch_multiple)
    for title, labeled, volumes in checked:
        print(f"{title}: all cases load{' and agree' if labeled else ' (images only: their labels are not read)'}\n"
              + data_report(volumes, data.num_classes, labeled))
