"""evaluation/cases.py: the checkpoint's training cases (stored, or worked out from its flags
and a list file the test writes), and the refusal of test cases among them."""
import pytest

from evaluation.cases import check_overlap, training_cases
from utils.errors import UserError


def flags(train_list, labelnum=2, max_samples=None):
    """A checkpoint from before the case IDs were stored: only the run's flags."""
    return {"args": {"train_list": str(train_list), "labelnum": labelnum, "max_samples": max_samples,
                     "root_path": "/elsewhere"}}


def test_training_cases_are_those_the_run_used(tmp_path):
    train_list = tmp_path / "train.list"
    train_list.write_text("a\nb\nc\nd\ne\n")
    cases, source = training_cases(flags(train_list), with_unlabeled=True)
    assert cases == ["a", "b", "c", "d", "e"] and source == f"the 2 labeled and 3 unlabeled cases of {train_list}"
    assert training_cases(flags(train_list, max_samples=3), with_unlabeled=True)[0] == ["a", "b", "c"]
    # labeled-only training (no teacher) never saw the unlabeled rest
    assert training_cases(flags(train_list), with_unlabeled=False) == (["a", "b"],
                                                                       f"the 2 labeled cases of {train_list}")
    # the IDs stored in the checkpoint come first: they need no list file
    stored = {**flags(tmp_path / "gone.list"), "labeled_ids": ["p"], "unlabeled_ids": ["q", "r"]}
    assert training_cases(stored, with_unlabeled=True) == (["p", "q", "r"], "the 1 labeled and 2 unlabeled cases "
                                                                            "listed in the checkpoint")
    assert training_cases(stored, with_unlabeled=False)[0] == ["p"]


@pytest.mark.parametrize("checkpoint, why", [
    ({}, "names neither its training cases nor its training list"),
    ({"args": {"labelnum": 2}}, "names neither its training cases nor its training list"),
    ("missing", "is not on this machine"),
    ("too short", "cannot be read as the run read it"),
])
def test_unknown_training_cases_say_why(checkpoint, why, tmp_path):
    if checkpoint == "missing":
        checkpoint = flags(tmp_path / "moved" / "train.list")
    elif checkpoint == "too short":
        (tmp_path / "train.list").write_text("a\n")
        checkpoint = flags(tmp_path / "train.list", labelnum=4)
    cases, reason = training_cases(checkpoint, with_unlabeled=True)
    assert cases is None and why in reason
    assert check_overlap(["a"], cases, reason, test_list="t.list", allowed=False) is None


def test_overlap_is_refused_unless_allowed():
    trained, source = ["a", "b", "c"], "the 1 labeled and 2 unlabeled cases of train.list"
    assert check_overlap(["x", "y"], trained, source, test_list="test.list", allowed=False) == []
    with pytest.raises(UserError) as caught:
        check_overlap(["x", "c", "b"], trained, source, test_list="test.list", allowed=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("2 of the 3 cases of test.list were trained on (e.g. c, one of the 1 labeled")
    assert "--test_list" in message and "--allow_overlap" in message
    assert check_overlap(["x", "c", "b"], trained, source, test_list="test.list", allowed=True) == ["c", "b"]
