"""Ship the LA h5 data to a remote GPU machine in fewer bytes (a development tool).

Every LA image holds at most 245 distinct float32 values (an 8-bit scan, z-scored), so it is
stored exactly as uint8 codes plus a value table, xz-compressed with the label: about 60 % of
the gzip h5 size. ``pack`` splits the cases into parts of at most --max-mib; ``unpack``
rebuilds the identical UA-MT layout (gzip h5 files and list files) from the parts it is given.

    python tools/ship_la.py pack ../shared/data/LA .devdata/LAx
    python tools/ship_la.py unpack .devdata/LAx/part1 ... --out /tmp/LA
"""
import argparse
import io
import lzma
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

CASES = "2018LA_Seg_Training Set"


def encode(path: Path) -> bytes:
    with h5py.File(path, "r") as f:
        image, label = f["image"][:], f["label"][:]
    values, codes = np.unique(image, return_inverse=True)
    if len(values) > 256:
        raise SystemExit(f"{path}: {len(values)} distinct values do not fit uint8 codes")
    buffer = io.BytesIO()
    np.savez(buffer, values=values, codes=codes.reshape(image.shape).astype(np.uint8), label=label)
    return lzma.compress(buffer.getvalue(), preset=6)


def decode_to_h5(args) -> str:
    blob, out_file = args
    data = np.load(io.BytesIO(lzma.decompress(Path(blob).read_bytes())))
    image = data["values"][data["codes"]].astype(np.float32)
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(out_file, "w") as f:
        f.create_dataset("image", data=image, compression="gzip")
        f.create_dataset("label", data=data["label"], compression="gzip")
    return out_file


def pack(src: Path, out: Path, max_mib: int) -> None:
    cases = sorted(p.name for p in (src / CASES).iterdir() if (p / "mri_norm2.h5").is_file())
    with ProcessPoolExecutor() as pool:
        blobs = list(pool.map(encode, [src / CASES / c / "mri_norm2.h5" for c in cases]))
    shutil.rmtree(out, ignore_errors=True)
    part, size = 1, 0
    for case, blob in zip(cases, blobs):
        if size and size + len(blob) > max_mib * 2**20:
            part, size = part + 1, 0
        (out / f"part{part}").mkdir(parents=True, exist_ok=True)
        (out / f"part{part}" / f"{case}.xz").write_bytes(blob)
        size += len(blob)
    for lst in src.glob("*.list"):
        shutil.copy(lst, out / "part1" / lst.name)
    print(f"{len(cases)} cases in {part} parts under {out} "
          f"({sum(map(len, blobs)) / 2**20:.1f} MiB)")


def unpack(parts: list[Path], out: Path) -> None:
    jobs = [(blob, out / CASES / blob.stem / "mri_norm2.h5") for part in parts for blob in sorted(part.glob("*.xz"))]
    with ProcessPoolExecutor() as pool:
        list(pool.map(decode_to_h5, jobs))
    for part in parts:
        for lst in part.glob("*.list"):
            shutil.copy(lst, out / lst.name)
    print(f"{out}: {sum(1 for _ in (out / CASES).glob('*/mri_norm2.h5'))} cases")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack")
    a.add_argument("src", type=Path, help="folder holding the case folder and the .list files")
    a.add_argument("out", type=Path)
    a.add_argument("--max-mib", type=int, default=56)
    b = sub.add_parser("unpack")
    b.add_argument("parts", type=Path, nargs="+")
    b.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    pack(args.src, args.out, args.max_mib) if args.command == "pack" else unpack(args.parts, args.out)


if __name__ == "__main__":
    main()
