"""dataloaders/case_lists.py: reading case lists and the labeled/unlabeled split."""
import pytest

from dataloaders.case_lists import find_list, read_case_list, split_labeled
from utils.errors import UserError


def write(tmp_path, text, name="cases.list", newline=None):
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return path


def test_plain_list(tmp_path):
    assert read_case_list(write(tmp_path, "a\nb\nc\n")) == ["a", "b", "c"]


def test_no_trailing_newline(tmp_path):
    assert read_case_list(write(tmp_path, "a\nb")) == ["a", "b"]


def test_blank_lines_and_spaces_tolerated(tmp_path):
    path = write(tmp_path, "\n  a  \n\nb\t\n   \n c\n\n")
    assert read_case_list(path) == ["a", "b", "c"]


def test_crlf_tolerated(tmp_path):
    path = tmp_path / "win.list"
    path.write_bytes(b"case_1\r\ncase_2 \r\n\r\ncase_3\r\n")
    assert read_case_list(path) == ["case_1", "case_2", "case_3"]


def test_utf8_bom_tolerated(tmp_path):
    path = tmp_path / "bom.list"
    path.write_bytes("\ufeffcase_1\ncase_2\n".encode("utf-8"))
    assert read_case_list(path) == ["case_1", "case_2"]


def test_accepts_str_path(tmp_path):
    assert read_case_list(str(write(tmp_path, "x\n"))) == ["x"]


def test_duplicate_names_both_line_numbers(tmp_path):
    path = write(tmp_path, "a\n\nb\nc\n a \n")
    with pytest.raises(UserError) as info:
        read_case_list(path)
    message = str(info.value)
    assert "'a'" in message
    assert "lines 1 and 5" in message
    assert str(path) in message


def test_duplicate_crlf_line_numbers(tmp_path):
    path = tmp_path / "dup.list"
    path.write_bytes(b"a\r\nb\r\nc\r\nb\r\n")
    with pytest.raises(UserError, match="lines 2 and 4"):
        read_case_list(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.list"
    with pytest.raises(UserError, match="not found") as info:
        read_case_list(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_list(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_case_list(tmp_path)


def test_empty_list(tmp_path):
    with pytest.raises(UserError, match="names no case"):
        read_case_list(write(tmp_path, "\n  \n\n"))


IDS = [f"c{i}" for i in range(10)]


def test_split_labeled():
    labeled, unlabeled = split_labeled(IDS, 3)
    assert labeled == IDS[:3]
    assert unlabeled == IDS[3:]


def test_split_all_labeled():
    assert split_labeled(IDS, 10) == (IDS, [])


def test_split_max_samples_cap():
    labeled, unlabeled = split_labeled(IDS, 2, max_samples=5)
    assert labeled == IDS[:2]
    assert unlabeled == IDS[2:5]
    assert split_labeled(IDS, 2, max_samples=50) == (IDS[:2], IDS[2:])


def test_split_does_not_mutate_input():
    ids = list(IDS)
    split_labeled(ids, 4, max_samples=6)
    assert ids == IDS


@pytest.mark.parametrize("labelnum", [0, -1])
def test_split_labelnum_too_small(labelnum):
    with pytest.raises(UserError, match="at least 1"):
        split_labeled(IDS, labelnum)


def test_split_labelnum_larger_than_list():
    with pytest.raises(UserError, match="larger than the 10 cases"):
        split_labeled(IDS, 11)


def test_split_labelnum_larger_than_max_samples():
    with pytest.raises(UserError, match="max_samples"):
        split_labeled(IDS, 6, max_samples=5)


def test_a_bare_list_name_is_found_beside_the_data(tmp_path, monkeypatch):
    data, elsewhere = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    elsewhere.mkdir()
    (data / "dev_train.list").write_text("a\n")
    monkeypatch.chdir(elsewhere)
    assert find_list("dev_train.list", data) == (data / "dev_train.list").resolve()
    (elsewhere / "dev_train.list").write_text("b\n")  # a file of that name here comes first
    assert find_list("dev_train.list", data) == (elsewhere / "dev_train.list").resolve()
    assert find_list("nowhere.list", data) == (elsewhere / "nowhere.list").resolve()  # read_case_list then names it
