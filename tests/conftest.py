"""Shared fixtures: the repository path, a tiny synthetic dataset, tiny h5 cases and a
helper that runs a training script in a scratch working directory."""
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dataloaders.batches import BatchSettings, make_training_batches  # noqa: E402
from dataloaders.datasets import DataFolder  # noqa: E402
from dataloaders.synthetic import generate_dataset  # noqa: E402

# Under pytest-xdist (`-n 2`) the cores are shared between the workers: each worker and the
# scripts it starts take their share of threads, since oversubscribed cores run torch slower.
THREADS = max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
if "PYTEST_XDIST_WORKER" in os.environ:
    torch.set_num_threads(THREADS)

# Flags that keep an end-to-end run tiny on 2 CPU cores.
TINY = ["--patch_size", "32", "32", "16", "--labelnum", "2", "--batch_size", "4", "--labeled_bs", "2"]


def script_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", str(min(THREADS, 2)))
    return env


def run_script(script: str, args, cwd, timeout: float = 240, python_args=()) -> subprocess.CompletedProcess:
    """Run ``REPO/script`` with ``args`` from ``cwd`` (scripts write ``model/...`` relative to it)."""
    cmd = [sys.executable, *python_args, str(REPO / script), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=script_env(), capture_output=True, text=True, timeout=timeout)


def log_lines(run_dir: Path, prefix: str = "iteration") -> list[str]:
    """The log.txt lines starting with ``prefix`` once the ``[HH:MM:SS] `` stamp is removed."""
    lines = []
    for line in (Path(run_dir) / "log.txt").read_text().splitlines():
        body = line.split("] ", 1)[1] if line.startswith("[") else line
        if body.startswith(prefix):
            lines.append(body)
    return lines


def read_scalars(run_dir: Path) -> dict:
    """{tag: {step: value}} from the run's TensorBoard event files (full float32 precision)."""
    from tensorboardX.proto import event_pb2

    scalars: dict = {}
    for path in sorted((Path(run_dir) / "tensorboard").glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            record = data[pos + 12:pos + 12 + length]
            pos += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def syn(tmp_path_factory) -> SimpleNamespace:
    """6 training + 2 test synthetic cases (each at least 64 x 56 x 36 voxels), generated once."""
    out = tmp_path_factory.mktemp("syn")
    volumes = generate_dataset(out, num_train=6, num_test=2)
    return SimpleNamespace(out=out, root=volumes, train_list=out / "train.list", test_list=out / "test.list",
                           train_ids=(out / "train.list").read_text().split(),
                           test_ids=(out / "test.list").read_text().split())


def write_case(root: Path, case_id: str, image: np.ndarray, label: np.ndarray) -> None:
    """One case in the LA layout: ``<root>/<ID>/mri_norm2.h5`` with ``image`` f32, ``label`` u8."""
    case_dir = Path(root) / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(case_dir / "mri_norm2.h5", "w") as f:
        f.create_dataset("image", data=image.astype(np.float32))
        f.create_dataset("label", data=label.astype(np.uint8))


# Shapes of the hand-made cases: different sizes, the last one smaller than a 32 x 32 x 16
# patch along x, so it must be zero-padded.
TINY_SHAPES = {"case_a": (40, 36, 20), "case_b": (34, 44, 18), "case_c": (36, 33, 24), "case_d": (20, 40, 17)}


@pytest.fixture(scope="session")
def tiny_cases(tmp_path_factory) -> SimpleNamespace:
    """Four tiny cases whose image encodes (case, x, y, z) and whose label is a function of it.

    image = 1 + case * 1e6 + x * 1e4 + y * 100 + z (exact in float32, all > 0, so
    padding zeros are recognisable); label = (x + y + z + case) % 2 + 1 (never 0, so padded
    voxels are the only background).
    """
    root = tmp_path_factory.mktemp("tiny") / "volumes"
    for number, (case_id, shape) in enumerate(TINY_SHAPES.items()):
        x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        image = 1 + number * 1e6 + x * 1e4 + y * 100 + z
        label = (x + y + z + number) % 2 + 1
        write_case(root, case_id, image, label)
    return SimpleNamespace(root=root, ids=list(TINY_SHAPES), shapes=TINY_SHAPES)


def decode_image(image: np.ndarray):
    """(case, x, y, z) arrays from an image made by ``tiny_cases`` (undefined where padded)."""
    v = np.rint(np.asarray(image, dtype=np.float64)).astype(np.int64) - 1
    case, rest = np.divmod(v, 1_000_000)
    x, rest = np.divmod(rest, 10_000)
    y, z = np.divmod(rest, 100)
    return case, x, y, z


@pytest.fixture(autouse=True)
def grad_mode_is_left_on():
    """Fail the test that switches autograd off globally (in-process ``main()`` calls do this if
    a script forgets a ``no_grad`` context), instead of the unrelated tests that run after it."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("the test left autograd disabled (torch.set_grad_enabled(False) without a context)")


def training_batches(root, labeled_ids, unlabeled_ids, batch_size, labeled_bs, patch_size, num_classes, *, seed,
                     device, normalize="none", start_batch=0, rank=0, world_size=1, **settings):
    """``make_training_batches`` on the h5 folder ``root`` taken to have ``num_classes`` classes
    (the tiny cases' labels are 1 and 2), the batch settings given as arguments."""
    data = DataFolder(Path(root), "h5", num_classes, Path(root).parent, normalize)
    batch = BatchSettings(batch_size=batch_size, labeled_bs=labeled_bs, patch_size=tuple(patch_size), seed=seed,
                          **settings)
    return make_training_batches(data, labeled_ids, unlabeled_ids, batch, device=device, start_batch=start_batch,
                                 rank=rank, world_size=world_size)


# PNG files read back, to check what the scripts draw
def png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"CRC of {kind}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    return chunks


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png_chunks(data)[0][1][:8])
    return width, height


def decode_png(data: bytes) -> np.ndarray:
    chunks = png_chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and interlace == 0 and colour in (0, 2)
    channels = 3 if colour == 2 else 1
    raw = np.frombuffer(zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT")), np.uint8)
    rows = raw.reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all(), "filter type 0"
    pixels = rows[:, 1:].reshape(height, width, channels)
    return pixels[..., 0] if channels == 1 else pixels
