"""Case lists: text files with one case ID per line."""
from pathlib import Path

from utils.errors import UserError


def find_list(path, lists_dir) -> Path:
    """The list file ``path`` names, made absolute: as given, or, for a relative name that is
    not there, the file of that name beside the data (``lists_dir``), where the default lists
    live, so ``--train_list dev_train.list`` finds the development split."""
    given = Path(path)
    beside_data = Path(lists_dir) / given
    if not given.is_absolute() and not given.exists() and beside_data.is_file():
        return beside_data.resolve()
    return given.resolve()


def read_case_list(path) -> list[str]:
    """IDs in file order; blank lines, surrounding spaces and Windows line ends are ignored.

    A missing file or a case named twice is a ``UserError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"case list not found: {path} (pass the right file with --train_list/--val_list/--test_list)")
    ids, first_line = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        case_id = line.strip()
        if not case_id:
            continue
        if case_id in first_line:
            raise UserError(f"{path}: case {case_id!r} is listed twice (lines {first_line[case_id]} and {number}); "
                            "remove one of them")
        first_line[case_id] = number
        ids.append(case_id)
    if not ids:
        raise UserError(f"case list {path} names no case")
    return ids


def split_labeled(case_ids: list[str], labelnum: int, max_samples: int | None = None) -> tuple[list[str], list[str]]:
    """The first ``labelnum`` cases are labeled, the rest (up to ``max_samples`` in all) unlabeled."""
    pool = case_ids[:max_samples] if max_samples else case_ids
    if labelnum < 1:
        raise UserError(f"--labelnum must be at least 1, got {labelnum}")
    if labelnum > len(pool):
        raise UserError(f"--labelnum {labelnum} is larger than the {len(pool)} cases in the training list"
                        f"{' (capped by --max_samples)' if max_samples else ''}; use at most {len(pool)}")
    return pool[:labelnum], pool[labelnum:]


def check_validation_cases(case_ids: list[str], val_list, *, training_ids: list[str], test_list) -> None:
    """The cases of ``val_list`` choose best_model.pth, so none may be a training case (of
    ``training_ids``) or a test case (of ``test_list``, the dataset's test.list, where it exists
    and reads): a one-line ``UserError`` naming the first."""
    training = set(training_ids)
    shared = [case for case in case_ids if case in training]
    if shared:
        raise UserError(f"--val_list {val_list}: {len(shared)} of its cases are training cases of this run "
                        f"(e.g. {shared[0]}); validate on cases held out of training (e.g. --train_list "
                        "dev_train.list --val_list dev_val.list)")
    try:
        tests = set(read_case_list(test_list)) if Path(test_list).is_file() else set()
    except UserError:  # a broken test list is inference's to report, not training's
        tests = set()
    tested = [case for case in case_ids if case in tests]
    if tested:
        what = "is" if Path(val_list).resolve() == Path(test_list).resolve() else \
            f"shares {len(tested)} case(s) (e.g. {tested[0]}) with"
        raise UserError(f"--val_list {val_list} {what} the dataset's test list {test_list}: best_model.pth would be "
                        "chosen on test cases; validate on cases split off the training list (e.g. dev_val.list)")
