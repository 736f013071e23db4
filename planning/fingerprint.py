"""The fingerprint of a data folder: each case's voxel size and shape (from the headers, without
reading the voxels), dataset.json's modality, and for CT a sample of the labeled cases'
foreground intensities. ``planning.planner`` plans from it.

It is computed once per folder and kept in ``model/fingerprints/<folder>-<hash of its path>.json``
(beside the run folders, never in the data folder, which may be read-only or shared); a case is
read again only where its files changed (``DataFolder.fingerprint``: sizes and edge hashes), so
a second run on the same data reads no image. Where the cache cannot be written the folder is
fingerprinted each time instead.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from dataloaders import la_heart, msd
from dataloaders.datasets import H5_SPACING_MM, DataFolder
from planning.planner import CT_PERCENTILES, Fingerprint, is_ct
from utils.errors import UserError

CACHE_DIR = Path("model") / "fingerprints"
CACHE_VERSION = 1
SAMPLES_PER_CASE = 2000   # foreground intensities kept per labeled CT case (nnU-Net samples too)


def modality_of(data: DataFolder) -> tuple[str | None, str | None]:
    """(the first channel's modality in dataset.json, or None; a note where it names none)."""
    if data.kind != "msd":
        return "MRI", None  # the UA-MT h5 layout holds the LA MRI scans
    modality = msd.read_dataset_json(data.root)["modality"].get(0)
    if modality:
        return str(modality), None
    return None, (f"{data.root / msd.DATASET_JSON} names no modality (\"modality\": {{\"0\": \"CT\"}} or \"MRI\"); "
                  "assumed not CT: each image is z-scored on its own")


def _case_entry(data: DataFolder, case_id: str, *, foreground: bool) -> dict:
    """One case's part of the fingerprint: spacing (mm), shape (voxels) and, where
    ``foreground``, a sample of its foreground voxels' intensities as stored."""
    if data.kind == "msd":
        spacing = msd.read_msd_spacing(data.root, case_id, data.unlabeled_dirs)
        shape = msd.read_msd_shape(data.root, case_id, data.unlabeled_dirs)[:3]
    else:
        spacing, shape = H5_SPACING_MM, la_heart.read_shape(data.root, case_id)[:3]
    entry = {"spacing": list(spacing), "shape": [int(n) for n in shape]}
    if foreground:
        image, label = msd.read_msd_case(data.root, case_id, num_classes=data.num_classes,
                                         extra_dirs=data.unlabeled_dirs, raw=True)
        values = np.asarray(image[label > 0], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise UserError(f"{data.case_file(case_id)}: the image holds NaN or infinite values")
        rng = np.random.default_rng(len(values))  # the same sample every time for the same case
        if len(values) > SAMPLES_PER_CASE:
            values = rng.choice(values, SAMPLES_PER_CASE, replace=False)
        entry["foreground"] = [float(v) for v in values]
    return entry


def _read_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache.get("cases", {}) if isinstance(cache, dict) and cache.get("version") == CACHE_VERSION else {}


def cache_path(root: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """Where the fingerprint of the data folder ``root`` is kept."""
    root = Path(root).resolve()
    return Path(cache_dir) / f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}.json"


def _write_cache(path: Path, cases: dict) -> bool:
    """Write the cache atomically; False where its folder cannot be written to."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": CACHE_VERSION, "cases": cases}, f)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def foreground_statistics(samples: list) -> dict:
    """Mean, std and the ``CT_PERCENTILES`` of the pooled foreground samples."""
    values = np.asarray(samples, dtype=np.float64)
    lower, upper = np.percentile(values, CT_PERCENTILES)
    return {"mean": float(values.mean()), "std": float(values.std()), "lower": float(lower), "upper": float(upper),
            "voxels": int(values.size)}


def data_fingerprint(data: DataFolder, case_ids, labeled_ids, *, cache_dir: Path = CACHE_DIR,
                     progress=None) -> tuple[Fingerprint, list[str]]:
    """(the ``Fingerprint`` of ``case_ids``, notes). CT foreground intensities come from
    ``labeled_ids``; a CT dataset whose labeled cases hold no foreground is a ``UserError``.
    The cases' entries are kept in ``cache_dir`` (see ``cache_path``). ``progress(done, total)``
    is called while cases are read."""
    modality, note = modality_of(data)
    notes = [note] if note else []
    ct = is_ct(modality)
    labeled = set(labeled_ids)
    cache = cache_path(data.root, cache_dir) if data.kind == "msd" else None
    cached = _read_cache(cache) if cache else {}
    cases, changed = {}, False
    for number, case_id in enumerate(case_ids):
        files = data.fingerprint(case_id, labeled=case_id in labeled)
        wants_foreground = ct and case_id in labeled
        entry = cached.get(case_id)
        if not entry or entry.get("files") != files or (wants_foreground and "foreground" not in entry):
            entry = {"files": files, **_case_entry(data, case_id, foreground=wants_foreground)}
            changed = True
        cases[case_id] = entry
        if progress:
            progress(number + 1, len(case_ids))
    if cache and changed:
        _write_cache(cache, {**cached, **cases})
    foreground = None
    if ct:
        samples = [v for case_id in labeled_ids for v in cases[case_id].get("foreground", [])]
        if not samples:
            raise UserError(f"{data.root / msd.DATASET_JSON} says CT, but the {len(labeled_ids)} labeled case(s) hold "
                            f"no foreground voxel in {data.root / msd.LABELS_DIR}: the CT normalisation needs the "
                            "foreground's intensities; check the label files (all zero?)")
        foreground = foreground_statistics(samples)
    fingerprint = Fingerprint(spacings=tuple(tuple(cases[c]["spacing"]) for c in case_ids),
                              shapes=tuple(tuple(cases[c]["shape"]) for c in case_ids),
                              files=tuple(str(data.case_file(c)) for c in case_ids),
                              modality=modality, foreground=foreground)
    return fingerprint, notes


def describe(fingerprint: Fingerprint) -> list[str]:
    """A few lines for ``--check_data``: spacings, shapes, modality, CT intensities."""
    spacings, shapes = np.asarray(fingerprint.spacings, float), np.asarray(fingerprint.shapes)

    def span(values, unit):
        return " x ".join(f"{lo:g}-{hi:g}" if lo != hi else f"{lo:g}" for lo, hi in zip(values.min(0), values.max(0))) + unit

    lines = [f"fingerprint of {len(fingerprint.spacings)} cases: voxel sizes {span(spacings, ' mm')} "
             f"(median {' x '.join(f'{v:g}' for v in np.median(spacings, 0))}), shapes {span(shapes, ' voxels')}, "
             f"modality {fingerprint.modality or 'not named'}"]
    if fingerprint.foreground:
        f = fingerprint.foreground
        lines.append(f"foreground intensities ({f['voxels']} sampled voxels of the labeled cases): mean {f['mean']:.1f}, "
                     f"std {f['std']:.1f}, 0.5-99.5th percentiles {f['lower']:.1f} to {f['upper']:.1f}")
    return lines
