"""Which training cases are labeled.

- ``--labelnum N`` (the benchmark protocol): the first N listed cases are labeled, the rest
  unlabeled, even where their labels exist (those labels are never read). A case among the
  first N without a label is an error naming it.
- Without ``--labelnum`` (your own data): the cases that have labels are the labeled set, all
  the others the unlabeled set, each in list order.
"""
from dataclasses import dataclass

from dataloaders.case_lists import read_case_list, split_labeled
from utils.errors import UserError


@dataclass(frozen=True)
class CaseSplit:
    labeled: list
    unlabeled: list
    unused_labels: int   # unlabeled cases whose labels exist but are not used (--labelnum)
    tests_left_out: int = 0  # cases of the folder's test.list left out (no training list given)

    def describe(self) -> str:
        """For the run header, e.g. "21 labeled cases, 187 unlabeled (180 without labels, 7 with
        labels not used: --labelnum 21)"."""
        text = f"{len(self.labeled)} labeled case{'s' * (len(self.labeled) != 1)}, {len(self.unlabeled)} unlabeled"
        without = len(self.unlabeled) - self.unused_labels
        parts = ([f"{without} without labels"] if without else []) + (
            [f"{self.unused_labels} with labels not used: --labelnum {len(self.labeled)}"] if self.unused_labels else [])
        text += f" ({', '.join(parts)})" if parts else ""
        return text + (f"; the {self.tests_left_out} cases of test.list left out" if self.tests_left_out else "")


def training_case_ids(data, train_list: str | None) -> tuple[list[str], int]:
    """(the training cases, how many test cases were left out): those of ``train_list`` in file
    order, or, without a list, every case of the data folder (``DataFolder.case_ids``) but the
    cases of the test.list beside it, which training never sees."""
    if train_list:
        return read_case_list(train_list), 0
    tests_file = data.lists_dir / "test.list"
    tests = set(read_case_list(tests_file)) if tests_file.is_file() else set()
    case_ids = data.case_ids()
    return [case for case in case_ids if case not in tests], sum(case in tests for case in case_ids)


def training_split(data, train_list: str | None, labelnum: int | None, max_samples: int | None = None) -> CaseSplit:
    """``split_cases`` of the training cases (``training_case_ids``)."""
    case_ids, tests_left_out = training_case_ids(data, train_list)
    return split_cases(data, case_ids, labelnum, max_samples, tests_left_out=tests_left_out)


def split_cases(data, case_ids: list[str], labelnum: int | None, max_samples: int | None = None, *,
                tests_left_out: int = 0) -> CaseSplit:
    """The labeled and unlabeled cases of ``case_ids`` (the first ``max_samples`` of them where
    given) in ``data`` (a ``DataFolder``): the first ``labelnum``, or the cases with labels where
    ``labelnum`` is None. ``tests_left_out`` is only reported (``CaseSplit.describe``)."""
    pool = case_ids[:max_samples] if max_samples else list(case_ids)
    labels = {case: data.has_label(case) for case in pool}
    if labelnum is None:
        labeled = [case for case in pool if labels[case]]
        if not labeled:
            raise UserError(f"none of the {len(pool)} training cases has a label (e.g. {pool[0]}: "
                            f"{_no_label(data, pool[0])}); add label files for a few cases")
        return CaseSplit(labeled, [case for case in pool if not labels[case]], 0, tests_left_out)
    labeled, unlabeled = split_labeled(case_ids, labelnum, max_samples)
    missing = [case for case in labeled if not labels[case]]
    if missing:
        raise UserError(f"--labelnum {labelnum}: {len(missing)} of the first {labelnum} training cases have no label "
                        f"(e.g. {missing[0]}: {_no_label(data, missing[0])}); list the labeled cases first, lower "
                        "--labelnum, or leave it out to train on the cases that have labels")
    return CaseSplit(labeled, unlabeled, sum(labels[case] for case in unlabeled), tests_left_out)


def _no_label(data, case_id: str) -> str:
    """Why ``case_id`` counts as unlabeled, for messages."""
    image = data.case_file(case_id)
    if not image.is_file():
        return f"{image} does not exist"
    if data.kind == "msd":
        return f"no label file for {image.name} in {data.root / 'labelsTr'}"
    return f"{image} has no 'label' dataset"
