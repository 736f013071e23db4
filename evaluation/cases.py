"""Which cases the checkpoint's run trained on, and the refusal to score them as held-out cases
(every test case is checked, before any prediction, by ``dataloaders.check_data.check_cases``)."""
from pathlib import Path

from dataloaders.case_lists import read_case_list, split_labeled
from utils.errors import UserError


def training_cases(checkpoint: dict, *, with_unlabeled: bool) -> tuple[list[str] | None, str]:
    """The cases a checkpoint's run trained on: its labeled cases and, where the run used them
    (Mean Teacher: ``with_unlabeled``), its unlabeled ones. Checkpoints store both
    (``labeled_ids``, ``unlabeled_ids``); older ones are worked out from the run's flags
    (``args``): the first ``labelnum`` of its ``train_list``, the rest up to ``max_samples``.

    Returns (case IDs, where they come from), or (None, why they cannot be known: a checkpoint
    without either, or a training list that is not on this machine).
    """
    if checkpoint.get("labeled_ids") is not None:
        labeled, unlabeled = list(checkpoint["labeled_ids"]), list(checkpoint.get("unlabeled_ids") or [])
        where = "listed in the checkpoint"
    else:
        flags = checkpoint.get("args") or {}
        train_list = flags.get("train_list")
        if not train_list or "labelnum" not in flags:
            return None, "the checkpoint names neither its training cases nor its training list"
        if not Path(train_list).is_file():
            return None, f"the checkpoint's training list {train_list} is not on this machine"
        try:
            labeled, unlabeled = split_labeled(read_case_list(train_list), flags["labelnum"], flags.get("max_samples"))
        except UserError as err:  # the list changed since the run (fewer cases than --labelnum, ...)
            return None, f"the checkpoint's training list cannot be read as the run read it ({err})"
        where = f"of {train_list}"
    if not with_unlabeled:
        return labeled, f"the {len(labeled)} labeled cases {where}"
    return labeled + unlabeled, f"the {len(labeled)} labeled and {len(unlabeled)} unlabeled cases {where}"


def check_overlap(case_ids: list[str], trained: list[str] | None, source: str, *, test_list,
                  allowed: bool) -> list[str] | None:
    """The test cases among the ``trained`` ones (None where those are unknown); an overlap is
    a ``UserError`` unless ``allowed`` (``--allow_overlap``)."""
    if trained is None:
        return None
    trained = set(trained)
    overlap = [c for c in case_ids if c in trained]
    if overlap and not allowed:
        raise UserError(f"{len(overlap)} of the {len(case_ids)} cases of {test_list} were trained on "
                        f"(e.g. {overlap[0]}, one of {source}), so their scores are not held out; evaluate on "
                        "other cases with --test_list, or pass --allow_overlap to score them anyway (flagged "
                        "in summary.json)")
    return overlap
