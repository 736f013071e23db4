"""dataloaders/download.py against a local HTTP server on 127.0.0.1 that honours Range requests,
serving small files generated here. No other address is contacted."""
import gzip
import hashlib
import http.server
import io
import json
import re
import socket
import tarfile
import threading
from pathlib import Path
from urllib.parse import unquote

import h5py
import nibabel as nib
import numpy as np
import pytest

from dataloaders.download import (HIPPOCAMPUS_TAR, LA_CASES_DIR, download_file, download_hippocampus, download_la,
                                  extract_msd_tar, main)
from dataloaders.la_heart import read_case
from dataloaders.msd import list_case_ids, read_msd_case
from utils.errors import UserError


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET of files under ``server.root``; honours ``Range: bytes=a-`` and ``bytes=a-b`` (206,
    416) unless ``server.ignore_range``; ``server.cut_after`` bytes, when set, ends the body early
    (an interrupted transfer). Every request is logged as (path, Range header)."""

    def do_GET(self):
        self.server.log.append((self.path, self.headers.get("Range")))
        path = self.server.root / unquote(self.path.lstrip("/"))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match and not self.server.ignore_range:
            start = int(match.group(1))
            end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if self.server.cut_after is not None:
            body = body[:self.server.cut_after]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must never go through a proxy from the environment."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.root, httpd.log, httpd.ignore_range, httpd.cut_after = root, [], False, None
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def serve(server, relative: str, data: bytes) -> str:
    path = server.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{server.base}/{relative}"


def payload(size: int = 300_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ single files
def test_full_download_with_checksum(server, tmp_path):
    data = payload()
    url = serve(server, "files/blob.bin", data)
    dest = download_file(url, tmp_path / "out" / "blob.bin", sha256=hashlib.sha256(data).hexdigest(),
                         md5=hashlib.md5(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data
    assert not (tmp_path / "out" / "blob.bin.part").exists()
    assert server.log == [("/files/blob.bin", None)]
    download_file(url, dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)  # already there
    assert len(server.log) == 1


def test_checksum_mismatch(server, tmp_path):
    url = serve(server, "blob.bin", payload())
    wrong = "0" * 64
    with pytest.raises(UserError, match=f"checksum mismatch for blob.bin from {re.escape(url)}: expected sha256 "
                                        f"{wrong}, got [0-9a-f]{{64}}") as err:
        download_file(url, tmp_path / "blob.bin", sha256=wrong, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_resume_half_written_part(server, tmp_path):
    data = payload(500_000, seed=1)
    url = serve(server, "big.bin", data)
    (tmp_path / "big.bin.part").write_bytes(data[:200_000])
    dest = download_file(url, tmp_path / "big.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert server.log == [("/big.bin", "bytes=200000-")]
    assert dest.read_bytes() == data and not (tmp_path / "big.bin.part").exists()


def test_resume_after_interrupted_transfer(server, tmp_path):
    data = payload(400_000, seed=2)
    url = serve(server, "big.bin", data)
    server.cut_after = 150_000
    with pytest.raises(UserError, match="run the same command again to resume"):
        download_file(url, tmp_path / "big.bin", progress=False)
    kept = (tmp_path / "big.bin.part").stat().st_size
    assert 0 < kept <= 150_000
    server.cut_after = None
    download_file(url, tmp_path / "big.bin", md5=hashlib.md5(data).hexdigest(), progress=False)
    assert server.log[-1] == ("/big.bin", f"bytes={kept}-")
    assert (tmp_path / "big.bin").read_bytes() == data


def test_server_without_range_support_restarts(server, tmp_path):
    data = payload(100_000, seed=3)
    url = serve(server, "blob.bin", data)
    (tmp_path / "blob.bin.part").write_bytes(b"x" * 40_000)  # not even the right bytes
    server.ignore_range = True
    download_file(url, tmp_path / "blob.bin", progress=False)
    assert server.log == [("/blob.bin", "bytes=40000-")]
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_complete_part_file(server, tmp_path):
    data = payload(50_000, seed=4)
    url = serve(server, "blob.bin", data)
    (tmp_path / "blob.bin.part").write_bytes(data)  # complete, but not yet renamed
    download_file(url, tmp_path / "blob.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert server.log == [("/blob.bin", "bytes=50000-")]  # answered 416 with the total size
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_http_404(server, tmp_path):
    with pytest.raises(UserError, match=r"HTTP error 404"):
        download_file(f"{server.base}/missing.bin", tmp_path / "missing.bin", progress=False)
    assert not (tmp_path / "missing.bin.part").exists()


def test_offline_message(tmp_path):
    port = closed_port()
    url = f"http://127.0.0.1:{port}/data/train.list"
    with pytest.raises(UserError) as err:
        download_file(url, tmp_path / "LA" / "train.list", timeout=5, progress=False)
    message = str(err.value)
    assert message.startswith(f"cannot reach 127.0.0.1:{port}: ")
    assert message.endswith(f"(check your connection or download manually from {url} into {tmp_path / 'LA'})")
    assert "refused" in message.lower() and "\n" not in message
    assert not (tmp_path / "LA").exists()


def test_timeout_message(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.bin"
        with pytest.raises(UserError, match=r"cannot reach 127\.0\.0\.1:\d+: .*timed out"):
            download_file(url, tmp_path / "x.bin", timeout=0.5, progress=False)


def test_cli_offline(tmp_path, capsys):
    port = closed_port()
    with pytest.raises(SystemExit) as exit_info:
        main(["hippocampus", "--out", str(tmp_path), "--base_url", f"http://127.0.0.1:{port}/", "--timeout", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach 127.0.0.1:{port}: ") and err.count("\n") == 1
    assert f"download manually from http://127.0.0.1:{port}/{HIPPOCAMPUS_TAR} into {tmp_path})" in err


@pytest.mark.parametrize("flags,message", [(["--timeout", "0"], "--timeout must be a positive number"),
                                           (["--out", "a_file"], "a_file is a file")])
def test_cli_bad_flags(tmp_path, capsys, flags, message):
    (tmp_path / "a_file").write_text("")
    flags = [str(tmp_path / f) if f == "a_file" else f for f in flags]
    with pytest.raises(SystemExit) as exit_info:
        main(["la", "--out", str(tmp_path / "data"), *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


# ------------------------------------------------------------------ LA
def h5_bytes(tmp_path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    path = tmp_path / f"case{seed}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=rng.normal(size=(12, 10, 8)).astype(np.float32), compression="gzip")
        f.create_dataset("label", data=(rng.uniform(size=(12, 10, 8)) > 0.7).astype(np.uint8), compression="gzip")
    return path.read_bytes()


def serve_la(server, tmp_path, train=("CASE1", "CASE2"), test=("CASE3",)):
    serve(server, "UA-MT/data/train.list", ("\n".join(train) + "\n").encode())
    serve(server, "UA-MT/data/test.list", ("\n".join(test) + "\n").encode())
    for seed, case_id in enumerate([*train, *test]):
        serve(server, f"UA-MT/data/{LA_CASES_DIR}/{case_id}/mri_norm2.h5", h5_bytes(tmp_path, seed))
    return f"{server.base}/UA-MT/data/"


def test_download_la(server, tmp_path):
    base = serve_la(server, tmp_path)
    root = download_la(tmp_path / "data", base_url=base, progress=False)
    assert root == tmp_path / "data" / "LA"
    assert (root / "train.list").read_text().split() == ["CASE1", "CASE2"]
    assert (root / "test.list").read_text().split() == ["CASE3"]
    for case_id in ("CASE1", "CASE2", "CASE3"):
        image, label = read_case(root / LA_CASES_DIR, case_id)
        assert image.shape == label.shape == (12, 10, 8)
    assert ("/UA-MT/data/2018LA_Seg_Training%20Set/CASE2/mri_norm2.h5", None) in server.log
    count = len(server.log)
    download_la(tmp_path / "data", base_url=base, progress=False)  # everything already there
    assert len(server.log) == count


def test_download_la_refuses_lfs_pointers_and_bad_ids(server, tmp_path):
    base = serve_la(server, tmp_path)
    serve(server, f"UA-MT/data/{LA_CASES_DIR}/CASE2/mri_norm2.h5",
          b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(UserError, match="mri_norm2.h5 is a Git LFS pointer"):
        download_la(tmp_path / "data", base_url=base, progress=False)
    assert not (tmp_path / "data" / "LA" / LA_CASES_DIR / "CASE2" / "mri_norm2.h5").exists()
    serve(server, "UA-MT/data/test.list", b"../../evil\n")
    with pytest.raises(UserError, match="is not a case ID"):
        download_la(tmp_path / "other", base_url=base, progress=False)


# ------------------------------------------------------------------ Hippocampus
def nii_bytes(array: np.ndarray) -> bytes:
    """A .nii.gz file's bytes."""
    return gzip.compress(nib.Nifti1Image(array, np.eye(4)).to_bytes())


def make_msd_tar(tmp_path: Path, extra_members=()) -> Path:
    """A tiny Task04_Hippocampus.tar as the MSD ships it: one top folder, ._ files from macOS."""
    rng = np.random.default_rng(0)
    files = {
        "Task04_Hippocampus/dataset.json": json.dumps(
            {"name": "Hippocampus", "modality": {"0": "MRI"},
             "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}).encode(),
        "Task04_Hippocampus/imagesTr/hippocampus_001.nii.gz": nii_bytes(rng.uniform(0, 100, (6, 7, 5)).astype(np.float32)),
        "Task04_Hippocampus/labelsTr/hippocampus_001.nii.gz": nii_bytes(rng.integers(0, 3, (6, 7, 5)).astype(np.uint8)),
        "Task04_Hippocampus/imagesTs/hippocampus_002.nii.gz": nii_bytes(rng.uniform(0, 9, (5, 5, 5)).astype(np.float32)),
        "Task04_Hippocampus/imagesTr/._hippocampus_001.nii.gz": b"\x00\x05\x16\x07 AppleDouble",
        "._Task04_Hippocampus": b"\x00\x05\x16\x07 AppleDouble",
        **dict(extra_members),
    }
    path = tmp_path / "fixture.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_download_hippocampus(server, tmp_path):
    tar_bytes = make_msd_tar(tmp_path).read_bytes()
    serve(server, f"msd/{HIPPOCAMPUS_TAR}", tar_bytes)
    out = tmp_path / "data"
    root = download_hippocampus(out, base_url=f"{server.base}/msd/", md5=hashlib.md5(tar_bytes).hexdigest(),
                                sha256=hashlib.sha256(tar_bytes).hexdigest(), progress=False)
    assert root == out / "Hippocampus"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "dataset.json", "imagesTr/hippocampus_001.nii.gz", "imagesTs/hippocampus_002.nii.gz",
        "labelsTr/hippocampus_001.nii.gz"]
    assert not (out / HIPPOCAMPUS_TAR).exists()  # deleted once extracted
    assert list_case_ids(root) == ["hippocampus_001"]
    image, label = read_msd_case(root, "hippocampus_001")
    assert image.shape == label.shape == (6, 7, 5)
    requests = len(server.log)
    download_hippocampus(out, base_url=f"{server.base}/msd/", progress=False)  # already there: no request
    assert len(server.log) == requests


def test_hippocampus_checksum_mismatch_and_keep_archive(server, tmp_path, capsys):
    tar_bytes = make_msd_tar(tmp_path).read_bytes()
    serve(server, f"msd/{HIPPOCAMPUS_TAR}", tar_bytes)
    with pytest.raises(UserError, match="checksum mismatch for Task04_Hippocampus.tar"):
        download_hippocampus(tmp_path / "a", base_url=f"{server.base}/msd/", progress=False)  # the real MSD md5
    assert not (tmp_path / "a" / "Hippocampus").exists()
    main(["hippocampus", "--out", str(tmp_path / "b"), "--base_url", f"{server.base}/msd/", "--skip_checksum",
          "--keep_archive"])
    assert (tmp_path / "b" / HIPPOCAMPUS_TAR).read_bytes() == tar_bytes
    assert (tmp_path / "b" / "Hippocampus" / "labelsTr" / "hippocampus_001.nii.gz").is_file()
    assert "MSD Hippocampus in" in capsys.readouterr().out


def test_extract_refuses_unsafe_or_foreign_archives(tmp_path):
    unsafe = make_msd_tar(tmp_path, {"Task04_Hippocampus/../../escape.txt": b"x"})
    with pytest.raises(UserError, match="refusing the archive member"):
        extract_msd_tar(unsafe, tmp_path / "x" / "Hippocampus", progress=False)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x" / "Hippocampus").exists()

    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        info = tarfile.TarInfo("stuff/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(UserError, match="is not an MSD task archive: no dataset.json, imagesTr, labelsTr"):
        extract_msd_tar(foreign, tmp_path / "y" / "Hippocampus", progress=False)

    broken = tmp_path / "broken.tar"
    broken.write_bytes(make_msd_tar(tmp_path).read_bytes()[:700])
    with pytest.raises(UserError, match="cannot extract"):
        extract_msd_tar(broken, tmp_path / "z" / "Hippocampus", progress=False)
    assert not (tmp_path / "z" / "Hippocampus").exists()


def test_existing_file_with_wrong_checksum(server, tmp_path):
    url = serve(server, "blob.bin", b"new content")
    (tmp_path / "blob.bin").write_bytes(b"old content")
    with pytest.raises(UserError, match=f"delete {re.escape(str(tmp_path / 'blob.bin'))} and run again"):
        download_file(url, tmp_path / "blob.bin", sha256=hashlib.sha256(b"new content").hexdigest(), progress=False)
    assert server.log == []
