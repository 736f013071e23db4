"""dataloaders/check_data.py and --check_data: every problem in the data is one clear line
naming the case and its file, all at once, before any training; a clean dataset gives a short
report."""
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_script, write_case
from dataloaders.check_data import DataProblems, check_cases, data_report
from dataloaders.datasets import data_folder
from dataloaders.la_heart import case_path
from utils.errors import UserError

MT, SUP = "train_mean_teacher.py", "train_sup.py"
SHAPES = {"clean_a": (32, 32, 16), "clean_b": (40, 36, 20)}


def clean_case(root, case_id, shape, label_rows):
    """image: smooth and finite; label 1 for x < label_rows, else 0."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    label = (x < label_rows).astype(np.uint8)
    write_case(root, case_id, np.sin(x / 5.0) + np.cos(y / 7.0) + z / 10.0, label)


def write_list(path: Path, ids, messy: bool = True) -> Path:
    """The IDs with blank lines, trailing spaces and Windows line ends (all to be tolerated)."""
    if messy:
        text = "\r\n".join(["", *[f"{case_id}  \t" for case_id in ids[:1]], "   ", *ids[1:], "", ""])
    else:
        text = "\n".join(ids) + "\n"
    path.write_bytes(text.encode())
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Two clean cases: 50 % and 25 % foreground."""
    base = tmp_path_factory.mktemp("clean")
    root = base / "volumes"
    clean_case(root, "clean_a", SHAPES["clean_a"], 16)  # 16 of 32 rows: 50 %
    clean_case(root, "clean_b", SHAPES["clean_b"], 10)  # 10 of 40 rows: 25 %
    write_list(base / "train.list", list(SHAPES))
    write_list(base / "val.list", ["clean_b"])
    return base


BROKEN = ["truncated", "no_label", "mismatched", "label_3", "nan_voxel"]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Two clean cases and one case for each problem, in the order of BROKEN."""
    base = tmp_path_factory.mktemp("broken")
    root = base / "volumes"
    clean_case(root, "clean_a", SHAPES["clean_a"], 16)
    clean_case(root, "clean_b", SHAPES["clean_b"], 10)
    shape = (32, 32, 16)
    image, label = np.zeros(shape, np.float32), np.zeros(shape, np.uint8)

    write_case(root, "truncated", image, label)
    data = case_path(root, "truncated").read_bytes()
    case_path(root, "truncated").write_bytes(data[:len(data) // 2])

    (root / "no_label").mkdir()
    with h5py.File(case_path(root, "no_label"), "w") as f:
        f.create_dataset("image", data=image)

    write_case(root, "mismatched", image, np.zeros((32, 32, 17)))

    bad_label = label.copy()
    bad_label[3, 4, 5] = 3
    write_case(root, "label_3", image, bad_label)

    nan_image = image.copy()
    nan_image[1, 2, 3] = np.nan
    write_case(root, "nan_voxel", nan_image, label)

    ids = ["clean_a", "truncated", "no_label", "clean_b", "mismatched", "label_3", "nan_voxel"]
    write_list(base / "train.list", ids)
    # for the scripts: the first 6 labeled (--labelnum 6), then no_label, a valid unlabeled case
    write_list(base / "scripts.list", ["clean_a", "truncated", "clean_b", "mismatched", "label_3", "nan_voxel",
                                       "no_label"])
    return base


EXPECTED = {  # case -> fragments of its one line
    "truncated": ["cannot read", "truncated"],
    "no_label": ["no 'label' dataset"],
    "mismatched": ["(32, 32, 16)", "(32, 32, 17)"],
    "label_3": ["label value(s) 3", "2 classes"],
    "nan_voxel": ["1 image voxel(s)", "NaN"],
}


def assert_problem_lines(lines, root, broken=BROKEN):
    """One line per broken case, in list order, naming the case and its file."""
    assert len(lines) == len(broken), lines
    for case_id, line in zip(broken, lines):
        assert line.startswith(f"case {case_id}: "), line
        assert str(case_path(root, case_id)) in line, line
        for fragment in EXPECTED[case_id]:
            assert fragment in line, (fragment, line)
        assert "\n" not in line and "Traceback" not in line


def test_check_cases_reports_every_problem_once(broken):
    root = broken / "volumes"
    ids = ["clean_a", "truncated", "no_label", "clean_b", "mismatched", "label_3", "nan_voxel"]
    with pytest.raises(DataProblems) as info:
        check_cases(data_folder(root), ids, num_classes=2)
    assert_problem_lines(info.value.problems, root)
    message = str(info.value).splitlines()
    assert message[0] == f"{len(BROKEN)} problem(s) in the data:"
    assert message[1:] == [f"  {problem}" for problem in info.value.problems]


def test_check_cases_several_problems_in_one_case(tmp_path):
    image = np.zeros((16, 16, 16), np.float32)
    image[0, 0, 0] = np.inf
    image[1, 1, 1] = np.nan
    label = np.zeros((16, 16, 16), np.uint8)
    label[2, 2, 2], label[3, 3, 3] = 5, 7
    write_case(tmp_path, "both", image, label)
    with pytest.raises(DataProblems) as info:
        check_cases(data_folder(tmp_path), ["both"], num_classes=2)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert "2 image voxel(s)" in problems[0] and "label value(s) 5, 7" in problems[1]


def test_check_cases_more_classes_and_clean_volumes(clean):
    root = clean / "volumes"
    volumes = check_cases(data_folder(root), list(SHAPES), num_classes=2)
    assert [v[0].shape for v in volumes] == list(SHAPES.values())
    assert all(v[0].dtype == np.float32 and v[1].dtype == np.uint8 for v in volumes)
    # a label 2 is fine with 3 classes, a problem with 2
    write_case(root / ".." / "three", "c", np.zeros((16, 16, 16)), np.full((16, 16, 16), 2))
    assert len(check_cases(data_folder(root / ".." / "three"), ["c"], num_classes=3)) == 1
    with pytest.raises(DataProblems, match=r"label value\(s\) 2 outside the 2 classes"):
        check_cases(data_folder(root / ".." / "three"), ["c"], num_classes=2)


def test_check_cases_missing_case_named(clean):
    with pytest.raises(DataProblems) as info:
        check_cases(data_folder(clean / "volumes"), ["clean_a", "ghost", "phantom"], num_classes=2)
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("case ghost: ") and "does not exist" in info.value.problems[0]
    assert info.value.problems[1].startswith("case phantom: ")


def test_data_report_numbers(clean):
    report = data_report(check_cases(data_folder(clean / "volumes"), list(SHAPES), num_classes=2), num_classes=2)
    lines = report.splitlines()
    assert lines[0].startswith("2 cases, shapes from ")
    assert "class 0: 62.5 % of voxels on average (50.0 to 75.0 %)" in lines
    assert "class 1: 37.5 % of voxels on average (25.0 to 50.0 %)" in lines
    assert re.fullmatch(r"image mean -?\d+\.\d\d to -?\d+\.\d\d, std \d+\.\d\d to \d+\.\d\d", lines[1]), lines[1]


def test_data_report_shapes_are_plain_numbers(clean):
    report = data_report(check_cases(data_folder(clean / "volumes"), list(SHAPES), num_classes=2), num_classes=2)
    assert report.splitlines()[0] == "2 cases, shapes from (32, 32, 16) to (40, 36, 20) voxels"


def test_label_values_beyond_uint8_are_reported(tmp_path):
    label = np.zeros((16, 16, 16), np.int16)
    label[0, 0, 0] = 257
    case_dir = tmp_path / "wide"
    case_dir.mkdir()
    with h5py.File(case_dir / "mri_norm2.h5", "w") as f:
        f.create_dataset("image", data=np.zeros((16, 16, 16), np.float32))
        f.create_dataset("label", data=label)
    with pytest.raises(DataProblems, match="257"):
        check_cases(data_folder(tmp_path), ["wide"], num_classes=2)


# ------------------------------------------------------------------ the scripts
def check_data_args(base, train_list="train.list", *extra, labelnum="1"):
    return ["--dataset_name", "LA", "--root_path", base / "volumes", "--train_list", base / train_list,
            "--labelnum", labelnum, "--patch_size", "32", "32", "16", "--check_data", *extra]  # a patch the cases fit


BROKEN_FOR_SCRIPTS = [case for case in BROKEN if case != "no_label"]  # unlabeled there: a valid case


@pytest.mark.parametrize("script", [MT, SUP])
def test_check_data_reports_all_problems_and_exits_2(script, broken, tmp_path):
    proc = run_script(script, check_data_args(broken, "scripts.list", labelnum="6"), tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0] == f"error: {len(BROKEN_FOR_SCRIPTS)} problem(s) in the data:", proc.stderr
    assert all(line.startswith("  case ") for line in lines[1:])
    assert_problem_lines([line.strip() for line in lines[1:]], broken / "volumes", BROKEN_FOR_SCRIPTS)
    assert not (tmp_path / "model").exists(), "--check_data writes no run folder"


def test_training_on_broken_data_stops_before_starting(broken, tmp_path):
    args = ["--dataset_name", "LA", "--root_path", broken / "volumes", "--train_list", broken / "scripts.list",
            "--labelnum", "6", "--patch_size", "32", "32", "16", "--max_iterations", "1"]
    proc = run_script(MT, args, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0] == f"error: {len(BROKEN_FOR_SCRIPTS)} problem(s) in the data:"
    assert_problem_lines([line.strip() for line in lines[1:]], broken / "volumes", BROKEN_FOR_SCRIPTS)
    assert not list(tmp_path.rglob("*.pth"))


@pytest.mark.parametrize("script", [MT, SUP])
def test_check_data_on_clean_data_prints_report(script, clean, tmp_path):
    proc = run_script(script, check_data_args(clean, "train.list", "--val_list", clean / "val.list"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "1 labeled case, 1 unlabeled (1 with labels not used: --labelnum 1)" in out
    assert "train.list, labeled: all cases load and agree" in out and "val.list: all cases load and agree" in out
    assert "train.list, unlabeled: all cases load (images only: their labels are not read)" in out
    assert "1 cases, shapes from (32, 32, 16)" in out and "1 cases, shapes from (40, 36, 20)" in out
    assert "class 1: 50.0 % of voxels on average (50.0 to 50.0 %)" in out  # the labeled training case
    assert "class 1: 25.0 % of voxels on average (25.0 to 25.0 %)" in out  # validation list
    assert out.count("class 1:") == 2  # none for the unlabeled case
    assert not (tmp_path / "model").exists(), "--check_data trains nothing"


def test_list_with_blank_lines_spaces_and_crlf(clean):
    raw = (clean / "train.list").read_bytes()
    assert b"\r\n" in raw and b"  \t" in raw and b"\r\n\r\n" in raw  # the fixture is really messy
    from dataloaders.case_lists import read_case_list
    assert read_case_list(clean / "train.list") == list(SHAPES)


# ------------------------------------------------------------------ the data folder itself (issue 20)
def test_a_2d_case_is_one_problem_line_not_a_traceback(tmp_path):
    """Before: a 2D image passed the check and broke the patch check and the data report."""
    clean_case(tmp_path, "clean_a", SHAPES["clean_a"], 8)
    write_case(tmp_path, "flat", np.ones((32, 32), np.float32), np.zeros((32, 32), np.uint8))
    with pytest.raises(DataProblems) as info:
        check_cases(data_folder(tmp_path), ["clean_a", "flat"])
    assert info.value.problems == [f"case flat: {case_path(tmp_path, 'flat')}: expected a 3D volume (X, Y, Z), "
                                   "got shape (32, 32)"]


def test_an_msd_folder_without_dataset_json_says_so(tmp_path):
    """Before: read as the h5 layout, it ended in "case list not found: .../train.list"."""
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(UserError, match=r"has an imagesTr/ folder \(the MSD / nnU-Net layout\) but no dataset.json"):
        data_folder(tmp_path)


def test_a_fingerprint_follows_the_files_not_their_place(tmp_path):
    """--resume compares these: a copied folder matches, another scan under the same ID does not."""
    clean_case(tmp_path / "a", "clean_a", SHAPES["clean_a"], 8)
    clean_case(tmp_path / "a", "clean_b", SHAPES["clean_b"], 8)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first, copy = data_folder(tmp_path / "a"), data_folder(tmp_path / "b")
    assert first.fingerprint("clean_a") == copy.fingerprint("clean_a") != first.fingerprint("clean_b")
    shutil.copy(case_path(tmp_path / "a", "clean_b"), case_path(tmp_path / "b", "clean_a"))
    assert copy.fingerprint("clean_a") != first.fingerprint("clean_a")
    assert first.fingerprint("missing") == ""
