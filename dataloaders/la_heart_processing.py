"""The 2018 LA challenge's raw scans to the UA-MT h5 layout that ``dataloaders/la_heart.py`` reads.

Input, as the challenge distributed it (one folder per case)::

    <raw>/<ID>/lgemri.nrrd     the LGE-MRI scan (X, Y, Z), 8-bit
    <raw>/<ID>/laendo.nrrd     the atrium cavity, foreground = 255

Output::

    <out>/2018LA_Seg_Training Set/<ID>/mri_norm2.h5   image float32, label uint8 0/1, gzip
    <out>/train.list, <out>/test.list                  one ID per line

Per case, as UA-MT's ``la_heart_processing.py``: the image is z-scored over the whole raw
volume, ``(image - mean) / std``, then image and label are cropped in x and y around the
label's bounding box (all of z is kept): the box is first widened to at least ``min_size``
(UA-MT's 112 x 112), then a random margin drawn from ``margin`` (voxels, both ends included)
is added on each side, and the crop is clipped to the volume. Margins come from a generator
seeded by ``(seed, case ID)``, so a case gets the same crop whichever other cases are
processed.

    python -m dataloaders.la_heart_processing --raw "data/LA_raw/Training Set" --out data/LA --seed 0
    python -m dataloaders.la_heart_processing --raw ... --out ... --train_list train.list --test_list test.list

The NRRD files are read by ``read_nrrd`` here (attached data, raw/gzip/bzip2/ascii
encodings), so no extra package is needed.
"""
import argparse
import bz2
import gzip
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from dataloaders.case_lists import read_case_list
from dataloaders.la_heart import VOLUME_FILE
from utils.errors import UserError, report_user_errors, require_folder_or_nothing

IMAGE_FILE, LABEL_FILE = "lgemri.nrrd", "laendo.nrrd"
CASES_DIR = "2018LA_Seg_Training Set"
MARGIN = (10, 19)          # UA-MT: np.random.randint(10, 20)
MIN_SIZE = (112, 112)      # UA-MT: output_size[:2]

# NRRD type names (all spellings of the format specification) to numpy dtypes.
NRRD_TYPES = {}
for _dtype, _names in {
    "i1": "signed char, int8, int8_t",
    "u1": "uchar, unsigned char, uint8, uint8_t",
    "i2": "short, short int, signed short, signed short int, int16, int16_t",
    "u2": "ushort, unsigned short, unsigned short int, uint16, uint16_t",
    "i4": "int, signed int, int32, int32_t",
    "u4": "uint, unsigned int, uint32, uint32_t",
    "i8": "longlong, long long, long long int, signed long long, signed long long int, int64, int64_t",
    "u8": "ulonglong, unsigned long long, unsigned long long int, uint64, uint64_t",
    "f4": "float",
    "f8": "double",
}.items():
    NRRD_TYPES.update({name.strip(): _dtype for name in _names.split(",")})


def _nrrd_spacing(fields: dict):
    """Voxel size per spatial axis from ``space directions`` (vector lengths) or ``spacings``."""
    if "space directions" in fields:
        spacing = []
        for vector in fields["space directions"].split():
            if vector == "none":
                continue
            spacing.append(float(np.linalg.norm([float(v) for v in vector.strip("()").split(",")])))
        return tuple(spacing)
    if "spacings" in fields:
        return tuple(float(v) for v in fields["spacings"].split() if v.lower() != "nan")
    return None


def read_nrrd(path) -> tuple[np.ndarray, dict]:
    """``(array, header)`` of an NRRD file with attached data.

    The array has shape ``sizes`` in the header's axis order (the first axis varies fastest
    in the file, so this is (X, Y, Z) for a scan, as pynrrd's default ``index_order='F'``).
    ``header`` holds the fields (lower-case names, string values) plus ``spacing``: the
    voxel size per spatial axis (mm for the LA scans) or None. Encodings raw, gzip, bzip2 and
    ascii; a detached data file or a type that is not a number is a ``UserError``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    content = path.read_bytes()
    if not content.startswith(b"NRRD000"):
        raise UserError(f"{path} is not an NRRD file (it does not start with NRRD000x)")
    if b"\n" not in content:
        raise UserError(f"{path}: the NRRD header has no end (no blank line before the data)")
    fields, pos = {}, content.index(b"\n") + 1
    while True:
        end = content.find(b"\n", pos)
        if end < 0:
            raise UserError(f"{path}: the NRRD header has no end (no blank line before the data)")
        line = content[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        if not line:
            break
        if line.startswith("#") or ":=" in line:  # comments and key/value pairs
            continue
        if ":" not in line:
            raise UserError(f"{path}: cannot read NRRD header line {line!r}")
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()

    try:
        dtype = np.dtype(NRRD_TYPES[fields["type"].lower()])
        sizes = [int(s) for s in fields["sizes"].split()]
    except KeyError as err:
        raise UserError(f"{path}: NRRD type {fields.get('type')!r} not supported or field {err} missing") from None
    except ValueError:
        raise UserError(f"{path}: NRRD sizes {fields['sizes']!r} are not whole numbers") from None
    if "data file" in fields or "datafile" in fields:
        raise UserError(f"{path}: detached NRRD data ({fields.get('data file', fields.get('datafile'))}) "
                        "is not supported; save the volume with its data attached (.nrrd, not .nhdr)")
    if int(fields.get("line skip", fields.get("lineskip", 0))):
        raise UserError(f"{path}: NRRD 'line skip' is not supported")
    dtype = dtype.newbyteorder("<" if fields.get("endian", "little").lower() == "little" else ">")
    encoding = fields.get("encoding", "raw").lower()
    skip = int(fields.get("byte skip", fields.get("byteskip", 0)))
    count = int(np.prod(sizes))
    data = content[pos:]
    try:
        if encoding in ("gzip", "gz"):
            data = gzip.decompress(data)
        elif encoding in ("bzip2", "bz2"):
            data = bz2.decompress(data)
        elif encoding in ("ascii", "text", "txt"):
            values = np.array(data.split(), dtype=np.float64 if dtype.kind == "f" else np.int64)
            data, skip = values.astype(dtype).tobytes(), 0
        elif encoding != "raw":
            raise UserError(f"{path}: NRRD encoding {encoding!r} is not supported (raw, gzip, bzip2, ascii are)")
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise UserError(f"{path}: cannot decode the {encoding} NRRD data: {err}") from None
    data = data[len(data) - count * dtype.itemsize:] if skip == -1 else data[skip:]
    if len(data) < count * dtype.itemsize:
        raise UserError(f"{path}: the NRRD data holds {len(data)} bytes, sizes {sizes} of {fields['type']} "
                        f"need {count * dtype.itemsize}; the file is truncated")
    array = np.frombuffer(data, dtype=dtype, count=count).reshape(sizes, order="F")
    fields["spacing"] = _nrrd_spacing(fields)
    return array.astype(dtype.newbyteorder("=")), fields  # a writable copy in native byte order


def crop_box(label: np.ndarray, rng: np.random.Generator, margin=MARGIN,
             min_size=MIN_SIZE) -> tuple[slice, slice, slice]:
    """(x, y, z) slices of the crop around the foreground of ``label`` (X, Y, Z).

    Along x and y: the label's bounding box, widened symmetrically to at least ``min_size``
    voxels, plus a margin drawn uniformly from ``margin[0]..margin[1]`` voxels before and
    after (four draws: x before, x after, y before, y after), clipped to the volume. All of
    z is kept. (UA-MT ended its slices at ``max + margin``, one voxel short of this.)
    """
    low, high = margin
    if not 0 <= low <= high:
        raise UserError(f"--margin must be two numbers 0 <= low <= high, got {low} {high}")
    if not label.any():
        raise UserError("the label has no foreground voxel, so there is nothing to crop around")
    draws = rng.integers(low, high + 1, size=4)
    slices = []
    for axis in (0, 1):
        other = tuple(a for a in range(label.ndim) if a != axis)
        present = np.flatnonzero(label.any(axis=other))
        first, last = int(present[0]), int(present[-1])
        pad = max(min_size[axis] - (last - first + 1), 0) // 2
        start = max(first - pad - int(draws[2 * axis]), 0)
        stop = min(last + 1 + pad + int(draws[2 * axis + 1]), label.shape[axis])
        slices.append(slice(start, stop))
    return slices[0], slices[1], slice(0, label.shape[2])


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """The margin generator of one case: depends on the seed and the ID only."""
    return np.random.default_rng([seed, zlib.crc32(case_id.encode("utf-8"))])


def process_case(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, margin=MARGIN,
                 min_size=MIN_SIZE, foreground: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32, label uint8 0/1)`` cropped, from a raw scan and its raw label (X, Y, Z).

    The image is z-scored with the mean and std of the whole raw volume (float64), then cropped
    (see ``crop_box``); the label is 1 where the raw label equals ``foreground``.
    """
    if image.shape != label.shape:
        raise UserError(f"image shape {image.shape} differs from label shape {label.shape}")
    values = np.unique(label)
    if not set(values.tolist()) <= {0, foreground}:
        raise UserError(f"label values {values[:8].tolist()} are not background 0 / foreground {foreground} "
                        "(pass --foreground if the atrium has another value)")
    binary = label == foreground
    box = crop_box(binary, rng, margin, min_size)
    mean, std = image.mean(dtype=np.float64), image.std(dtype=np.float64)
    if not std > 0:
        raise UserError("the image is constant (or holds NaN), it cannot be z-scored")
    cropped = (image[box].astype(np.float64) - mean) / std
    return cropped.astype(np.float32), binary[box].astype(np.uint8)


def write_h5(path: Path, image: np.ndarray, label: np.ndarray) -> None:
    """``image`` and ``label`` gzip-compressed in ``path``, written to a temporary file then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as f:
        f.create_dataset("image", data=np.ascontiguousarray(image), compression="gzip")
        f.create_dataset("label", data=np.ascontiguousarray(label), compression="gzip")
    os.replace(partial, path)


def convert_case(raw_dir, case_id: str, out_dir, seed: int = 0, margin=MARGIN, min_size=MIN_SIZE,
                 foreground: int = 255) -> tuple[int, int, int]:
    """Read ``<raw_dir>/<ID>/{lgemri,laendo}.nrrd``, write ``<out_dir>/<ID>/mri_norm2.h5``;
    returns the cropped shape (X, Y, Z)."""
    image_path = Path(raw_dir) / case_id / IMAGE_FILE
    label_path = Path(raw_dir) / case_id / LABEL_FILE
    for path in (image_path, label_path):
        if not path.is_file():
            raise UserError(f"case {case_id}: {path} not found (each case folder needs {IMAGE_FILE} and {LABEL_FILE})")
    image, _ = read_nrrd(image_path)
    label, _ = read_nrrd(label_path)
    try:
        image, label = process_case(image, label, case_rng(seed, case_id), margin, min_size, foreground)
    except UserError as err:
        raise UserError(f"case {case_id} ({label_path.parent}): {err}") from None
    write_h5(Path(out_dir) / case_id / VOLUME_FILE, image, label)
    return image.shape


def find_cases(raw_dir) -> list[str]:
    """Sorted names of the case folders of ``raw_dir`` (hidden folders and __MACOSX left out)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise UserError(f"raw data folder not found: {raw_dir} (pass --raw, the folder holding one folder per case)")
    ids = sorted(p.name for p in raw_dir.iterdir()
                 if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
    if not ids:
        raise UserError(f"no case folder in {raw_dir} (expected <raw>/<ID>/{IMAGE_FILE} and {LABEL_FILE})")
    return ids


def split_cases(case_ids, test_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train IDs, test IDs)``, each sorted: round(test_fraction * n) cases drawn for testing
    with a generator seeded by ``seed`` (from the sorted IDs, so the input order does not matter)."""
    if not 0 <= test_fraction < 1:
        raise UserError(f"--test_fraction must be in [0, 1), got {test_fraction}")
    ids = sorted(case_ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    num_test = int(round(test_fraction * len(ids)))
    if ids and num_test >= len(ids):
        raise UserError(f"--test_fraction {test_fraction} puts all {len(ids)} cases in test.list and none in "
                        "train.list; lower it")
    test = {ids[i] for i in order[:num_test]}
    return [i for i in ids if i not in test], [i for i in ids if i in test]


def process_dataset(raw_dir, out_dir, seed: int = 0, test_fraction: float = 0.2, train_list=None,
                    test_list=None, margin=MARGIN, min_size=MIN_SIZE, foreground: int = 255,
                    cases_dir: str = CASES_DIR, progress: bool = True) -> dict:
    """Convert every case and write the list files; returns ``{"train": [...], "test": [...],
    "shapes": {ID: (X, Y, Z)}, "volumes": Path}``.

    With ``train_list`` and/or ``test_list`` (files), those IDs are used in their file order
    (the labeled set of the literature is the first N lines of UA-MT's train.list); a missing
    one gets every other raw case. Without them, ``split_cases(..., test_fraction, seed)``.
    Cases go to ``<out_dir>/<cases_dir>/<ID>/mri_norm2.h5`` and the lists to ``<out_dir>``.
    """
    from tqdm import tqdm

    available = find_cases(raw_dir)
    if train_list is None and test_list is None:
        train, test = split_cases(available, test_fraction, seed)
    else:
        train = read_case_list(train_list) if train_list is not None else None
        test = read_case_list(test_list) if test_list is not None else None
        if train is None:
            train = [i for i in available if i not in set(test)]
        if test is None:
            test = [i for i in available if i not in set(train)]
        both = sorted(set(train) & set(test))
        if both:
            raise UserError(f"{len(both)} cases are in both the train and the test list, e.g. {both[0]}")
        missing = sorted(set(train + test) - set(available))
        if missing:
            raise UserError(f"{len(missing)} listed cases have no folder in {raw_dir}, e.g. {missing[0]}")
    for case_id in train + test:  # before any work: a missing file should not wait for the 80th case
        for name in (IMAGE_FILE, LABEL_FILE):
            if not (Path(raw_dir) / case_id / name).is_file():
                raise UserError(f"case {case_id}: {Path(raw_dir) / case_id / name} not found "
                                f"(each case folder needs {IMAGE_FILE} and {LABEL_FILE})")
    out_dir = Path(out_dir)
    volumes = out_dir / cases_dir if cases_dir else out_dir
    shapes = {}
    for case_id in tqdm(train + test, desc="LA cases", unit="case", disable=not progress):
        shapes[case_id] = convert_case(raw_dir, case_id, volumes, seed, margin, min_size, foreground)
    for name, ids in (("train.list", train), ("test.list", test)):
        if ids:
            (out_dir / name).write_text("\n".join(ids) + "\n")
        elif (out_dir / name).exists():
            (out_dir / name).unlink()  # a stale list from an earlier run would name other cases
    return {"train": train, "test": test, "shapes": shapes, "volumes": volumes}


@report_user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", required=True, help="folder holding <ID>/lgemri.nrrd and <ID>/laendo.nrrd")
    parser.add_argument("--out", required=True, help="output folder (cases under <out>/<cases_dir>/, lists in <out>)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the crop margins and the train/test split")
    parser.add_argument("--test_fraction", type=float, default=0.2, help="share of cases in test.list (without lists)")
    parser.add_argument("--train_list", help="use these training IDs, in this order (e.g. UA-MT's train.list)")
    parser.add_argument("--test_list", help="use these test IDs, in this order (e.g. UA-MT's test.list)")
    parser.add_argument("--margin", type=int, nargs=2, default=list(MARGIN), metavar=("LOW", "HIGH"),
                        help="random x/y margin around the atrium, voxels, both ends included")
    parser.add_argument("--min_size", type=int, nargs=2, default=list(MIN_SIZE), metavar=("X", "Y"),
                        help="widen the atrium's box to at least this before adding margins (0 0: no widening)")
    parser.add_argument("--foreground", type=int, default=255, help="atrium value in laendo.nrrd")
    parser.add_argument("--cases_dir", default=CASES_DIR, help="sub-folder of --out for the case folders ('' for none)")
    args = parser.parse_args(argv)
    require_folder_or_nothing(args.out)
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    result = process_dataset(args.raw, args.out, args.seed, args.test_fraction, args.train_list, args.test_list,
                             tuple(args.margin), tuple(args.min_size), args.foreground, args.cases_dir)
    print(f"wrote {len(result['shapes'])} cases to {result['volumes']}; {len(result['train'])} in "
          f"{Path(args.out) / 'train.list'}, {len(result['test'])} in {Path(args.out) / 'test.list'}")


if __name__ == "__main__":
    main()
