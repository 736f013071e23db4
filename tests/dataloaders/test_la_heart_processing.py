"""dataloaders/la_heart_processing.py on small synthetic NRRD cases written here by a tiny
NRRD writer (raw and gzip encodings)."""
import bz2
import gzip
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataloaders.la_heart import read_case
from dataloaders.la_heart_processing import (CASES_DIR, convert_case, crop_box, main, process_dataset, read_nrrd,
                                             split_cases)
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
NRRD_NAMES = {"u1": "unsigned char", "i1": "signed char", "i2": "short", "u2": "ushort", "i4": "int",
              "u4": "uint", "f4": "float", "f8": "double", "i8": "int64"}


def write_nrrd(path: Path, array: np.ndarray, encoding: str = "gzip", endian: str = "little",
               spacing=(0.625, 0.625, 0.625), extra: str = "", byte_skip_tail: bool = False) -> Path:
    """A minimal NRRD0004 writer (attached data), as 3D Slicer and the LA challenge files look."""
    dtype = array.dtype.newbyteorder("<" if endian == "little" else ">")
    directions = " ".join("(" + ",".join(str(s if i == a else 0) for i in range(3)) + ")"
                          for a, s in enumerate(spacing))
    header = (f"NRRD0004\n# Complete NRRD file format specification at:\n"
              f"# http://teem.sourceforge.net/nrrd/format.html\n"
              f"type: {NRRD_NAMES[array.dtype.str[1:]]}\ndimension: {array.ndim}\n"
              f"space: left-posterior-superior\nsizes: {' '.join(map(str, array.shape))}\n"
              f"space directions: {directions}\nkinds: domain domain domain\n"
              f"endian: {endian}\nencoding: {encoding}\nspace origin: (-12.5,3.25,100)\n"
              f"{extra}"
              f"Segment0_Name:=atrium\n\n")
    if encoding == "ascii":
        data = (" ".join(map(str, array.ravel(order="F").tolist())) + "\n").encode()
    else:
        data = array.astype(dtype).tobytes(order="F")
        if byte_skip_tail:
            data = b"junk before the data" + data
        data = {"raw": data, "gzip": gzip.compress(data), "bzip2": bz2.compress(data)}[encoding]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + data)
    return path


def make_raw_case(raw: Path, case_id: str, shape, centre, radii, seed: int, encoding: str) -> tuple:
    """An 8-bit scan with an ellipsoidal atrium (255 in laendo.nrrd), both (X, Y, Z)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    image = rng.integers(0, 120, shape).astype(np.uint8)
    image[inside] += 100
    label = np.where(inside, 255, 0).astype(np.uint8)
    write_nrrd(raw / case_id / "lgemri.nrrd", image, encoding)
    write_nrrd(raw / case_id / "laendo.nrrd", label, encoding)
    return image, label


# Shapes, atrium centres and radii (voxels); case D's atrium touches the low x border, so its
# crop is clipped there.
CASES = {
    "CASEA": ((60, 50, 12), (30, 25, 6), (10, 8, 4)),
    "CASEB": ((56, 64, 10), (25, 34, 5), (12, 9, 3)),
    "CASEC": ((48, 48, 14), (22, 20, 7), (6, 10, 5)),
    "CASED": ((50, 44, 9), (4, 22, 4), (6, 7, 3)),
    "CASEE": ((64, 40, 11), (36, 19, 5), (9, 6, 4)),
}
MARGIN = (3, 7)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("raw") / "Training Set"
    volumes = {}
    for number, (case_id, (shape, centre, radii)) in enumerate(CASES.items()):
        volumes[case_id] = make_raw_case(folder, case_id, shape, centre, radii, seed=number,
                                         encoding="raw" if number % 2 else "gzip")
    return folder, volumes


@pytest.fixture(scope="module")
def processed(raw, tmp_path_factory):
    folder, _ = raw
    out = tmp_path_factory.mktemp("out")
    result = process_dataset(folder, out, seed=3, test_fraction=0.4, margin=MARGIN, min_size=(0, 0),
                             progress=False)
    return out, result


# ------------------------------------------------------------------ NRRD reader
@pytest.mark.parametrize("dtype, encoding, endian", [
    ("u1", "raw", "little"), ("u1", "gzip", "little"), ("i2", "gzip", "big"), ("u2", "raw", "big"),
    ("f4", "raw", "little"), ("f8", "bzip2", "big"), ("i4", "ascii", "little"), ("f4", "ascii", "big"),
])
def test_read_nrrd_round_trip(tmp_path, dtype, encoding, endian):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(7, 5, 3)) * 100).astype(dtype)
    path = write_nrrd(tmp_path / "x.nrrd", array, encoding, endian, spacing=(0.625, 0.7, 2.5))
    back, header = read_nrrd(path)
    assert back.shape == (7, 5, 3) and back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)
    assert header["spacing"] == pytest.approx((0.625, 0.7, 2.5))
    assert header["encoding"] == encoding and header["space"] == "left-posterior-superior"
    back[0, 0, 0] = 1  # writable


def test_read_nrrd_byte_skip_and_spacings(tmp_path):
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = write_nrrd(tmp_path / "x.nrrd", array, "raw", extra="byte skip: -1\n", byte_skip_tail=True)
    np.testing.assert_array_equal(read_nrrd(path)[0], array)
    text = path.read_bytes().replace(b"space directions: (0.625,0,0) (0,0.625,0) (0,0,0.625)\n",
                                     b"spacings: 1 2 3\n")
    path.write_bytes(text)
    assert read_nrrd(path)[1]["spacing"] == (1.0, 2.0, 3.0)


def test_read_nrrd_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_nrrd(tmp_path / "none.nrrd")
    (tmp_path / "a.nrrd").write_bytes(b"P5 not nrrd")
    with pytest.raises(UserError, match="is not an NRRD file"):
        read_nrrd(tmp_path / "a.nrrd")
    path = write_nrrd(tmp_path / "b.nrrd", np.zeros((4, 4, 4), np.uint8), "raw")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated"):
        read_nrrd(path)
    path = write_nrrd(tmp_path / "c.nrrd", np.zeros((4, 4, 4), np.uint8), "gzip")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="cannot decode the gzip"):
        read_nrrd(path)
    path = write_nrrd(tmp_path / "d.nrrd", np.zeros((4, 4, 4), np.uint8), "raw", extra="data file: d.raw\n")
    with pytest.raises(UserError, match="detached"):
        read_nrrd(path)
    path.write_bytes(path.read_bytes().replace(b"type: unsigned char", b"type: block"))
    with pytest.raises(UserError, match="type 'block' not supported"):
        read_nrrd(path)
    (tmp_path / "e.nrrd").write_bytes(b"NRRD0004")
    with pytest.raises(UserError, match="header has no end"):
        read_nrrd(tmp_path / "e.nrrd")
    path = write_nrrd(tmp_path / "f.nrrd", np.zeros((4, 4, 4), np.uint8), "raw")
    path.write_bytes(path.read_bytes().replace(b"sizes: 4 4 4", b"sizes: 4 4 x"))
    with pytest.raises(UserError, match="sizes '4 4 x' are not whole numbers"):
        read_nrrd(path)


# ------------------------------------------------------------------ cropping
def test_crop_box_margins_and_clipping():
    label = np.zeros((40, 30, 6), bool)
    label[10:20, 2:9, 1:3] = True  # x 10..19, y 2..8
    for seed in range(20):
        sx, sy, sz = crop_box(label, np.random.default_rng(seed), margin=(3, 5), min_size=(0, 0))
        assert 3 <= 10 - sx.start <= 5 and 3 <= sx.stop - 20 <= 5
        assert sy.start == 0 and 3 <= sy.stop - 9 <= 5  # clipped at the low y border
        assert sz == slice(0, 6)


def test_crop_box_min_size():
    label = np.zeros((80, 80, 4), bool)
    label[38:42, 30:50, :] = True  # 4 voxels in x, 20 in y
    sx, sy, _ = crop_box(label, np.random.default_rng(0), margin=(0, 0), min_size=(30, 30))
    assert (sx.start, sx.stop) == (38 - 13, 42 + 13) and (sy.start, sy.stop) == (25, 55)
    with pytest.raises(UserError, match="no foreground"):
        crop_box(np.zeros((5, 5, 5), bool), np.random.default_rng(0))


def find_offset(expected: np.ndarray, crop: np.ndarray) -> tuple[int, int]:
    """The (x, y) corner where ``crop`` sits in ``expected`` (all of z), by exhaustive search."""
    w, h = crop.shape[:2]
    hits = [(x, y) for x in range(expected.shape[0] - w + 1) for y in range(expected.shape[1] - h + 1)
            if np.allclose(expected[x:x + w, y:y + h], crop, atol=1e-5)]
    assert len(hits) == 1, hits
    return hits[0]


# ------------------------------------------------------------------ whole dataset
def test_outputs(raw, processed):
    _, volumes = raw
    out, result = processed
    assert result["volumes"] == out / CASES_DIR
    for case_id, (raw_image, raw_label) in volumes.items():
        path = out / CASES_DIR / case_id / "mri_norm2.h5"
        with h5py.File(path, "r") as f:
            assert f["image"].dtype == np.float32 and f["label"].dtype == np.uint8
            assert f["image"].compression == "gzip" and f["label"].compression == "gzip"
        image, label = read_case(out / CASES_DIR, case_id)  # the reader of the training scripts
        assert image.shape == label.shape == result["shapes"][case_id]
        assert image.shape[2] == raw_image.shape[2]  # all of z kept
        assert set(np.unique(label)) == {0, 1}
        assert label.sum() == (raw_label == 255).sum()  # the whole atrium is inside the crop

        # z-score with the statistics of the whole raw volume, computed by hand
        values = raw_image.astype(np.float64)
        expected = (values - values.sum() / values.size) / np.sqrt(((values - values.mean()) ** 2).mean())
        x0, y0 = find_offset(expected, image)
        if case_id == "CASED":
            assert x0 == 0  # its atrium touches the low x border: the crop is clipped there
        np.testing.assert_array_equal(label, raw_label[x0:x0 + image.shape[0], y0:y0 + image.shape[1]] == 255)

        # margins between the atrium's box and the crop: drawn in MARGIN unless clipped at the border
        xs, ys = np.nonzero(raw_label.any(axis=2))
        for first, last, start, size, extent in ((xs.min(), xs.max(), x0, image.shape[0], raw_image.shape[0]),
                                                 (ys.min(), ys.max(), y0, image.shape[1], raw_image.shape[1])):
            before, after = first - start, start + size - 1 - last
            assert before == first if start == 0 else MARGIN[0] <= before <= MARGIN[1]
            assert after == extent - 1 - last if start + size == extent else MARGIN[0] <= after <= MARGIN[1]


def test_list_files(processed):
    out, result = processed
    train = (out / "train.list").read_text().split()
    test = (out / "test.list").read_text().split()
    assert len(test) == 2 and len(train) == 3
    assert train == sorted(train) and test == sorted(test)
    assert sorted(train + test) == sorted(CASES)
    assert (train, test) == (result["train"], result["test"]) == split_cases(list(CASES)[::-1], 0.4, seed=3)


def test_reproducible_with_seed(raw, processed, tmp_path):
    folder, _ = raw
    out, first = processed
    again = process_dataset(folder, tmp_path / "again", seed=3, test_fraction=0.4, margin=MARGIN, min_size=(0, 0),
                            progress=False)
    assert (again["train"], again["test"]) == (first["train"], first["test"])
    for case_id in CASES:
        a, b = read_case(out / CASES_DIR, case_id), read_case(again["volumes"], case_id)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other = process_dataset(folder, tmp_path / "other", seed=4, test_fraction=0.4, margin=MARGIN, min_size=(0, 0),
                            progress=False)
    assert other["shapes"] != first["shapes"]
    # A case's crop depends on the seed and its ID only, not on the other cases processed.
    convert_case(folder, "CASEC", tmp_path / "alone", seed=3, margin=MARGIN, min_size=(0, 0))
    np.testing.assert_array_equal(read_case(tmp_path / "alone", "CASEC")[0], read_case(out / CASES_DIR, "CASEC")[0])


def test_given_lists_keep_their_order(raw, tmp_path):
    folder, _ = raw
    (tmp_path / "train.list").write_text("CASEE\nCASEA\nCASEC\n")
    (tmp_path / "test.list").write_text("CASED\n")
    result = process_dataset(folder, tmp_path / "out", train_list=tmp_path / "train.list",
                             test_list=tmp_path / "test.list", min_size=(0, 0), progress=False)
    assert (tmp_path / "out" / "train.list").read_text().split() == ["CASEE", "CASEA", "CASEC"]
    assert (tmp_path / "out" / "test.list").read_text().split() == ["CASED"]
    assert sorted(result["shapes"]) == ["CASEA", "CASEC", "CASED", "CASEE"]  # CASEB is in neither list
    only_test = process_dataset(folder, tmp_path / "out2", test_list=tmp_path / "test.list", min_size=(0, 0),
                                progress=False)
    assert only_test["train"] == ["CASEA", "CASEB", "CASEC", "CASEE"]
    (tmp_path / "bad.list").write_text("CASEZ\n")
    with pytest.raises(UserError, match="no folder in"):
        process_dataset(folder, tmp_path / "out3", test_list=tmp_path / "bad.list", progress=False)


def test_cli_and_errors(raw, tmp_path, capsys):
    folder, _ = raw
    main(["--raw", str(folder), "--out", str(tmp_path / "cli"), "--seed", "1", "--min_size", "0", "0",
          "--margin", "2", "4", "--cases_dir", ""])
    assert "wrote 5 cases" in capsys.readouterr().out
    assert (tmp_path / "cli" / "CASEA" / "mri_norm2.h5").is_file() and (tmp_path / "cli" / "train.list").is_file()

    broken = tmp_path / "broken"
    make_raw_case(broken, "CASEX", (20, 20, 5), (10, 10, 2), (4, 4, 2), seed=0, encoding="raw")
    (broken / "CASEX" / "laendo.nrrd").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["--raw", str(broken), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: case CASEX:") and "laendo.nrrd not found" in err and err.count("\n") == 1

    with pytest.raises(SystemExit):
        main(["--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert "raw data folder not found" in capsys.readouterr().err

    (tmp_path / "a_file").write_text("")
    for flags, message in ((["--out", str(tmp_path / "a_file")], "a_file is a file"),
                           (["--out", str(tmp_path / "y"), "--seed", "-1"], "--seed must be 0 or more")):
        with pytest.raises(SystemExit):
            main(["--raw", str(folder), *flags])
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_bad_label_values(tmp_path):
    make_raw_case(tmp_path / "raw", "CASEY", (20, 20, 5), (10, 10, 2), (4, 4, 2), seed=0, encoding="gzip")
    label = np.zeros((20, 20, 5), np.uint8)
    label[5:9, 5:9, 1:3] = 1  # atrium marked 1 instead of 255
    write_nrrd(tmp_path / "raw" / "CASEY" / "laendo.nrrd", label)
    with pytest.raises(UserError, match=r"case CASEY .*label values \[0, 1\] are not background 0 / foreground 255"):
        process_dataset(tmp_path / "raw", tmp_path / "out", progress=False)
    result = process_dataset(tmp_path / "raw", tmp_path / "out", foreground=1, test_fraction=0, progress=False)
    assert result["test"] == [] and not (tmp_path / "out" / "test.list").exists()


def test_module_entry_point(raw, tmp_path):
    folder, _ = raw
    proc = subprocess.run([sys.executable, "-m", "dataloaders.la_heart_processing", "--raw", str(folder),
                           "--out", str(tmp_path / "m"), "--seed", "0"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LA cases" in proc.stderr  # the tqdm bar
    assert len((tmp_path / "m" / "train.list").read_text().split()) == 4


def test_a_test_fraction_that_leaves_no_training_case_is_refused():
    assert split_cases(["a", "b", "c"], 0.5, seed=0)[0]  # round(1.5) = 2 test cases, one left to train on
    with pytest.raises(UserError, match="puts all 5 cases in test.list"):
        split_cases(["a", "b", "c", "d", "e"], 0.95)
