"""Download the public copies of the datasets, with progress bars, checksums and resume.

    python -m dataloaders.download la --out data/            # data/LA/2018LA_Seg_Training Set/<ID>/mri_norm2.h5,
                                                             # data/LA/train.list, data/LA/test.list
    python -m dataloaders.download hippocampus --out data/   # data/Hippocampus/dataset.json, imagesTr/, labelsTr/, imagesTs/

- ``la``: the preprocessed 2018 LA challenge data (100 cases, h5) that UA-MT publishes in its
  repository's ``data/`` folder (Yu et al., MICCAI 2019): ``train.list`` and ``test.list``
  first, then ``2018LA_Seg_Training Set/<ID>/mri_norm2.h5`` for every ID in them. The h5 files
  are plain Git objects there (not Git LFS), so raw.githubusercontent.com serves them; no
  checksums are published, so each file is only checked to be an HDF5 file.
- ``hippocampus``: the Medical Segmentation Decathlon's ``Task04_Hippocampus.tar`` from the
  MONAI mirror of the MSD bucket (md5 checked, the one MONAI's ``DecathlonDataset`` checks),
  extracted into ``<out>/Hippocampus`` in the MSD layout (260 labeled + 130 unlabeled cases;
  CC-BY-SA 4.0, Antonelli et al., Nature Communications 2022).

A file is fetched into ``<file>.part`` and renamed once complete and verified; an interrupted
download resumes from the ``.part`` file with an HTTP Range request when run again. Files
already there are not fetched again. ``--base_url`` points at a mirror with the same layout.
Only the standard library (urllib) talks to the network; proxies come from the usual
``https_proxy`` / ``no_proxy`` variables.
"""
import argparse
import hashlib
import http.client
import os
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from dataloaders.case_lists import read_case_list
from utils.errors import UserError, report_user_errors, require_folder_or_nothing

LA_BASE_URL = "https://raw.githubusercontent.com/yulequan/UA-MT/master/data/"
LA_CASES_DIR = "2018LA_Seg_Training Set"
LA_VOLUME_FILE = "mri_norm2.h5"
MSD_BASE_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/"
HIPPOCAMPUS_TAR = "Task04_Hippocampus.tar"
HIPPOCAMPUS_MD5 = "9d24dba78a72977dbd1d2e110310f31b"

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CHUNK = 1 << 20
USER_AGENT = "mean-teacher-data-download/1.0 (python urllib)"


def url_join(base_url: str, relative_path: str) -> str:
    """``base_url`` + ``relative_path`` with each path segment percent-encoded (spaces in LA's folder)."""
    return base_url.rstrip("/") + "/" + quote(relative_path, safe="/")


def file_digest(path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _name(path) -> str:
    """The file name for messages, without the ``.part`` of a download in progress."""
    return Path(path).name.removesuffix(".part")


def verify_checksum(path, sha256: str | None = None, md5: str | None = None, url: str | None = None,
                    advice: str = "a corrupt download or a changed file upstream; run again to download it afresh"
                    ) -> None:
    """Compare ``path``'s sha256 and/or md5 with the expected hex digests; a mismatch is a ``UserError``."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                source = f" from {url}" if url else ""
                raise UserError(f"checksum mismatch for {_name(path)}{source}: expected {algorithm} {expected}, "
                                f"got {actual} ({advice})")


def _unreachable(url: str, reason, into) -> UserError:
    return UserError(f"cannot reach {urlsplit(url).netloc}: {reason} (check your connection or download manually "
                     f"from {url} into {into})")


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a ``Content-Range: bytes a-b/n`` or ``bytes */n`` header."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header or "")
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def download_file(url: str, dest, sha256: str | None = None, md5: str | None = None, timeout: float = 60.0,
                  progress: bool = True, check=None) -> Path:
    """Fetch ``url`` into ``dest`` (a file path) and return ``dest``.

    Bytes go to ``<dest>.part``; an existing ``.part`` is resumed with ``Range: bytes=<size>-``
    (a server that answers with the whole file restarts it). Once the size matches, the file is
    checked against ``sha256``/``md5`` when given and by ``check(path)`` (which raises
    ``UserError``), then renamed to ``dest``; a failed check deletes the ``.part``. An existing
    ``dest`` is kept (only re-verified). Network failures are one-line ``UserError`` s:
    ``cannot reach <host>: <reason> (check your connection or download manually from <url> into <dir>)``.
    """
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file():
        verify_checksum(dest, sha256, md5, url, advice=f"delete {dest} and run again to download it afresh")
        return dest
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    total = None
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        first, size = _content_range(err.headers.get("Content-Range") if err.headers else None)
        err.close()
        if err.code == 416 and offset and size == offset:  # the .part already holds the whole file
            total, response = size, None
        elif err.code == 416 and offset:  # a .part that does not fit this file: start over
            part.unlink()
            return download_file(url, dest, sha256, md5, timeout, progress, check)
        else:
            raise UserError(f"{url}: HTTP error {err.code} {err.reason} (check the address, or download the file "
                            f"manually into {dest.parent})") from None
    except (URLError, OSError, http.client.HTTPException) as err:
        raise _unreachable(url, getattr(err, "reason", None) or err, dest.parent) from None

    if response is not None:
        with response:
            first, size = _content_range(response.headers.get("Content-Range"))
            length = response.headers.get("Content-Length")
            if response.status == 206 and offset and first != offset:  # not the range asked for: start over
                response.close()
                part.unlink(missing_ok=True)
                return download_file(url, dest, sha256, md5, timeout, progress, check)
            if response.status == 206:
                mode, total = "ab", size if size is not None else (offset + int(length) if length else None)
            else:  # 200: the server sent the whole file (or no resume was asked for)
                mode, offset, total = "wb", 0, int(length) if length else None
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=dest.name, disable=not progress,
                                             leave=False) as bar:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as err:
                        f.flush()
                        raise UserError(f"download of {url} interrupted after {part.stat().st_size} bytes "
                                        f"({type(err).__name__}: {err}); run the same command again to resume "
                                        f"from {part}") from None
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
    received = part.stat().st_size
    if total is not None and received != total:
        raise UserError(f"download of {url} incomplete: {received} of {total} bytes; run the same command again "
                        f"to resume from {part}")
    try:
        verify_checksum(part, sha256, md5, url)
        if check is not None:
            check(part)
    except UserError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def check_hdf5(path) -> None:
    """A ``UserError`` unless ``path`` starts like an HDF5 file (catches Git LFS pointers and HTML pages)."""
    with open(path, "rb") as f:
        head = f.read(200)
    if head.startswith(LFS_POINTER):
        raise UserError(f"{_name(path)} is a Git LFS pointer, not the data; download the files from the "
                        "LFS address instead (--base_url https://media.githubusercontent.com/media/<owner>/<repo>/"
                        "<branch>/data/)")
    if not head.startswith(HDF5_SIGNATURE):
        raise UserError(f"{_name(path)} is not an HDF5 file (it starts with {head[:40]!r}); "
                        "check --base_url")


def check_case_list(path) -> None:
    """A ``UserError`` unless every line of ``path`` is a plain case ID (no path separators)."""
    if Path(path).read_bytes().startswith(LFS_POINTER):
        raise UserError(f"{_name(path)} is a Git LFS pointer, not a case list")
    for case_id in read_case_list(path):
        if not CASE_ID.match(case_id):
            raise UserError(f"{_name(path)}: {case_id[:60]!r} is not a case ID; check --base_url")


def download_la(out, base_url: str = LA_BASE_URL, timeout: float = 60.0, progress: bool = True) -> Path:
    """UA-MT's LA h5 data into ``<out>/LA`` (train.list, test.list, ``2018LA_Seg_Training Set/<ID>/
    mri_norm2.h5``); returns ``<out>/LA``."""
    from tqdm import tqdm

    root = Path(out) / "LA"
    ids = []
    for name in ("train.list", "test.list"):
        path = download_file(url_join(base_url, name), root / name, timeout=timeout, progress=progress,
                             check=check_case_list)
        ids += read_case_list(path)
    for case_id in tqdm(ids, desc="LA cases", unit="case", disable=not progress):
        relative = f"{LA_CASES_DIR}/{case_id}/{LA_VOLUME_FILE}"
        download_file(url_join(base_url, relative), root / relative, timeout=timeout, progress=progress,
                      check=check_hdf5)
    return root


def _skipped(parts) -> bool:
    """macOS metadata that the MSD archives carry (``._name`` resource forks, ``__MACOSX``, .DS_Store)."""
    return any(p.startswith("._") or p in ("__MACOSX", ".DS_Store") for p in parts)


def extract_msd_tar(tar_path, dest, progress: bool = True) -> Path:
    """Extract an MSD task archive (``TaskXX_Name/dataset.json``, ``imagesTr/``, ...) into ``dest``
    (``dest/dataset.json``, ``dest/imagesTr/``, ...); returns ``dest``.

    The archive's single top folder is dropped, macOS ``._*`` files are left out, links and
    members outside the folder are refused. Extraction goes to a hidden sibling folder that is
    renamed to ``dest`` at the end, so ``dest`` exists only complete.
    """
    from tqdm import tqdm

    dest = Path(dest)
    if dest.exists():
        raise UserError(f"{dest} already exists; remove it to extract {Path(tar_path).name} again")
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = [m for m in tar.getmembers() if not _skipped(PurePosixPath(m.name).parts)]
            tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
            strip = len(tops) == 1 and not any(m.isfile() and PurePosixPath(m.name).parts == (*tops,)
                                               for m in members)
            for member in tqdm(members, desc=f"extracting {Path(tar_path).name}", unit="file",
                               disable=not progress, leave=False):
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise UserError(f"{tar_path}: refusing the archive member {member.name!r} (outside the folder)")
                parts = parts[1:] if strip else parts
                if not parts or not (member.isfile() or member.isdir()):
                    continue  # the top folder itself; links, devices
                target = partial.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK)
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"cannot extract {tar_path}: {err} (delete it and download again)") from None
    except UserError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    missing = [name for name in ("dataset.json", "imagesTr", "labelsTr") if not (partial / name).exists()]
    if missing:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"{tar_path} is not an MSD task archive: no {', '.join(missing)} in it")
    partial.rename(dest)
    return dest


def download_hippocampus(out, base_url: str = MSD_BASE_URL, md5: str | None = HIPPOCAMPUS_MD5,
                         sha256: str | None = None, keep_archive: bool = False, timeout: float = 60.0,
                         progress: bool = True) -> Path:
    """MSD Task04 Hippocampus into ``<out>/Hippocampus`` (dataset.json, imagesTr, labelsTr, imagesTs);
    returns that folder. Nothing is fetched when ``<out>/Hippocampus/dataset.json`` exists. The
    tar (``<out>/Task04_Hippocampus.tar``) is deleted after extraction unless ``keep_archive``."""
    root = Path(out) / "Hippocampus"
    if (root / "dataset.json").is_file():
        return root
    tar_path = download_file(url_join(base_url, HIPPOCAMPUS_TAR), Path(out) / HIPPOCAMPUS_TAR, sha256=sha256, md5=md5,
                             timeout=timeout, progress=progress)
    extract_msd_tar(tar_path, root, progress)
    if not keep_archive:
        tar_path.unlink()
    return root


@report_user_errors
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["la", "hippocampus"])
    parser.add_argument("--out", default="data", help="parent folder: writes <out>/LA or <out>/Hippocampus")
    parser.add_argument("--base_url", help=f"a mirror with the same layout (la: {LA_BASE_URL}, "
                                           f"hippocampus: {MSD_BASE_URL})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without an answer before giving up")
    parser.add_argument("--keep_archive", action="store_true", help="hippocampus: keep the .tar after extraction")
    parser.add_argument("--skip_checksum", action="store_true",
                        help="hippocampus: do not check the archive's md5 (for a mirror that repacked it)")
    args = parser.parse_args(argv)
    require_folder_or_nothing(args.out)
    if not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.dataset == "la":
        root = download_la(args.out, args.base_url or LA_BASE_URL, args.timeout)
        print(f"LA data in {root} (cases in '{root / LA_CASES_DIR}', lists train.list and test.list); "
              "cite Xiong et al., MedIA 2021 and Yu et al., MICCAI 2019")
    else:
        root = download_hippocampus(args.out, args.base_url or MSD_BASE_URL,
                                    None if args.skip_checksum else HIPPOCAMPUS_MD5,
                                    keep_archive=args.keep_archive, timeout=args.timeout)
        print(f"MSD Hippocampus in {root} (CC-BY-SA 4.0; cite Antonelli et al., Nature Communications 2022)")


if __name__ == "__main__":
    main()
