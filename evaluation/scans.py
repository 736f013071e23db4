"""Scans on disk, through SimpleITK: finding them, reading each as an (X, Y, Z) array with its
geometry, resampling, and writing segmentations and probabilities in a scan's own geometry.

Formats read: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and the UA-MT
LA h5 (its ``image`` dataset). The h5 holds no geometry; it gets the LA challenge scans' voxel
size, 0.625 mm isotropic, a zero origin and the axes of the NIfTI files ``inference.py
--save_pred`` writes (affine diag(0.625, 0.625, 0.625)), so its outputs overlay those.

Arrays keep the file's voxel order (as nibabel gives them, no reorientation). SimpleITK's arrays
are (Z, Y, X), so every array is transposed where it crosses into SimpleITK, here and only here.
SimpleITK is imported inside the functions: scripts that never read a scan do not load it.
"""
import contextlib
import gzip
import math
import os
import re
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataloaders.datasets import H5_SPACING_MM
from dataloaders.la_heart import VOLUME_FILE
from utils.errors import UserError

FORMATS = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage",
           ".mhd": "MetaImage", ".h5": "LA h5"}
SCAN_SUFFIXES = tuple(FORMATS)  # .nii.gz before .nii
LIST_SUFFIXES = (".list", ".txt")
CHANNEL_SUFFIX = "_0000"  # nnU-Net's channel-0 file name ending
H5_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # ITK's LPS axes of the NIfTI affine diag(s, s, s)


@dataclass(frozen=True)
class Scan:
    """One scan as read: ``voxels`` (X, Y, Z) float32, the values as stored; ``image`` the same
    voxels as a 3D float32 SimpleITK image with the file's spacing (mm), origin and direction,
    the geometry its outputs are written in."""
    path: Path
    voxels: np.ndarray
    image: object  # SimpleITK.Image

    @property
    def spacing(self) -> tuple:
        """The voxel size in mm along X, Y, Z."""
        return tuple(self.image.GetSpacing())


def scan_suffix(path) -> str | None:
    """The known scan extension ``path`` ends with (".nii.gz", ".nrrd", ...), or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in SCAN_SUFFIXES if name.endswith(suffix)), None)


def case_name(path) -> str:
    """The case a scan file is of: its name without extension(s) and without nnU-Net's
    ``_0000`` channel ending (``case_0000.nii.gz`` -> ``case``); for the LA layout's
    ``<ID>/mri_norm2.h5``, the folder name ``<ID>``."""
    path = Path(path)
    if path.name == VOLUME_FILE:
        return path.resolve().parent.name
    suffix = scan_suffix(path)
    name = path.name[:-len(suffix)] if suffix else path.stem
    return name[:-len(CHANNEL_SUFFIX)] if name.endswith(CHANNEL_SUFFIX) and len(name) > len(CHANNEL_SUFFIX) else name


def list_scans(source) -> list[Path]:
    """The scan files ``source`` names: itself (a scan file); every scan of a folder with a
    known extension, and ``<ID>/mri_norm2.h5`` in its sub-folders (the LA layout), sorted by
    path; or the paths of a ``.list``/``.txt`` file, one a line, in file order (blank lines
    and ``#`` comments skipped, relative paths taken from the list's folder). A missing
    ``source``, a folder or list with no scan, or one file of an unknown format is a
    ``UserError``; a listed file is only checked when it is read."""
    source = Path(source)
    if source.is_dir():
        entries = [p for p in source.iterdir() if not p.name.startswith(".")]  # nor temporary outputs
        found = [p for p in entries if p.is_file() and scan_suffix(p)]
        found += [p / VOLUME_FILE for p in entries if (p / VOLUME_FILE).is_file()]
        if not found:
            raise UserError(f"{source} holds no scan (looked for {', '.join(SCAN_SUFFIXES)} files, and "
                            f"<ID>/{VOLUME_FILE} in its folders)")
        return sorted(found)
    if not source.is_file():
        raise UserError(f"{source} not found: give a scan file, a folder of scans or a .list/.txt file of paths")
    if source.suffix.lower() in LIST_SUFFIXES:
        try:
            lines = source.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read the list {source}: {err}") from None
        paths = [Path(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]
        if not paths:
            raise UserError(f"the list {source} names no scan (one path a line)")
        return [p if p.is_absolute() else source.parent / p for p in paths]
    if scan_suffix(source) is None:
        raise UserError(unknown_format(source))
    return [source]


def unknown_format(path) -> str:
    return (f"{path}: unknown scan format; scans are {', '.join(SCAN_SUFFIXES)} files, or name them in a "
            f"{'/'.join(LIST_SUFFIXES)} file, one path a line")


def read_scan(path) -> Scan:
    """The scan at ``path``, checked: a known format, readable and whole, one 3D volume (a 4D
    file with a single channel or time point is taken as 3D), at least one voxel along each
    axis, every voxel finite. Any problem is a one-line ``UserError`` naming the file; what
    ITK prints on the process's stderr while reading goes into that line instead."""
    path = Path(path)
    suffix = scan_suffix(path)
    if suffix is None:
        raise UserError(unknown_format(path))
    if not path.is_file():
        raise UserError(f"{path}: {'a folder, not a scan file' if path.is_dir() else 'not found'}")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes)")
    image = _read_h5(path) if suffix == ".h5" else _read_itk(path, suffix)
    image = _as_3d_float(image, path)
    if suffix == ".h5":
        image.SetSpacing(H5_SPACING_MM)
        image.SetDirection(H5_DIRECTION)
    voxels = array_of(image)
    bad = voxels.size - int(np.isfinite(voxels).sum())
    if not bad and suffix in (".nii", ".nii.gz"):
        bad = _nifti_non_finite(path)  # ITK's NIfTI reader turns NaN and inf into 0 without a word
    if bad:
        raise UserError(f"{path}: {bad} voxel(s) are NaN or infinite; training refuses such images, so fix or "
                        "replace the scan")
    return Scan(path, voxels, image)


def _nifti_non_finite(path: Path) -> int:
    """How many voxels of the NIfTI file are NaN or infinite, as nibabel (training's reader)
    reads them; 0 for integer files, which cannot hold either."""
    import nibabel as nib

    nii = nib.load(path)
    if np.issubdtype(nii.get_data_dtype(), np.integer) and not np.isnan(nii.dataobj.slope):
        return 0
    voxels = np.asanyarray(nii.dataobj)
    return int(voxels.size - np.count_nonzero(np.isfinite(voxels)))


def _read_itk(path: Path, suffix: str):
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)  # ITK warnings would be extra lines on stderr
    native, failure = [], None
    with _native_stderr_into(native):
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            failure = err
    if failure is not None:
        raise UserError(f"{path}: cannot read it as {FORMATS[suffix]}: {_reason(failure, native[0])}") from None
    if FORMATS[suffix] == "NIfTI":
        problem = _nifti_truncation(path, suffix)
        if problem:
            raise UserError(f"{path}: {problem}")
    return image


@contextlib.contextmanager
def _native_stderr_into(captured: list):
    """Collect what C++ code writes to file descriptor 2 meanwhile (ITK's MetaImage reader
    reports a short file there, outside Python's ``sys.stderr``) into ``captured``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def _reason(error: Exception, native: str) -> str:
    """One line of why ITK could not read a file: what it printed, else the last line of its
    exception, without the source locations and object addresses."""
    text = " ".join(native.split()) or next((line for line in reversed(str(error).splitlines()) if line.strip()), "")
    text = re.sub(r"(sitk::ERROR|ITK ERROR): (\w+\(0x[0-9a-f]+\): )?", "", text.strip())
    return f"{text} (truncated, or not this format?)"


def _nifti_truncation(path: Path, suffix: str) -> str | None:
    """Why a NIfTI file is shorter than its header says, or None. ITK's NIfTI reader fills a
    short file's missing voxels with zeros without a word."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        dims = [int(reader.GetMetaData(f"dim[{axis}]")) for axis in range(1, int(reader.GetMetaData("dim[0]")) + 1)]
        voxel_bytes = math.prod(dims) * int(reader.GetMetaData("bitpix")) // 8
        expected = int(float(reader.GetMetaData("vox_offset"))) + voxel_bytes
    except (RuntimeError, ValueError):
        return None  # a header without these fields: nothing to compare with
    if suffix == ".nii":
        held = path.stat().st_size
    else:
        held = 0
        try:
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    held += len(chunk)
        except (EOFError, OSError, zlib.error):
            return (f"the file is truncated or damaged: its gzip stream breaks off before the {expected} bytes "
                    "its header describes")
    if held < expected:
        return f"the file is truncated: its header describes {expected} bytes, it holds {held}"
    return None


def _read_h5(path: Path):
    """The ``image`` dataset of an LA h5 file as a SimpleITK image (default geometry)."""
    import h5py
    import SimpleITK as sitk

    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise UserError(f"{path}: no 'image' dataset (the LA h5 layout has 'image' and 'label')")
            voxels = f["image"][()]
    except OSError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path}: cannot read it as HDF5 (truncated, or not an h5 file?): {reason}") from None
    if not 2 <= voxels.ndim <= 4 or not np.issubdtype(voxels.dtype, np.number):
        raise UserError(f"{path}: its 'image' is {voxels.dtype} of shape {voxels.shape}, not a 3D volume")
    return sitk.GetImageFromArray(voxels.transpose(*reversed(range(voxels.ndim))))


def _as_3d_float(image, path: Path):
    """``image`` as one 3D float32 volume: a single channel, a 4D image with one time point cut
    to 3D; anything else is a ``UserError``."""
    import SimpleITK as sitk

    size = " x ".join(map(str, image.GetSize()))
    if "complex" in image.GetPixelIDTypeAsString():
        raise UserError(f"{path}: complex voxel values; give a magnitude image")
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        raise UserError(f"{path}: {components} values per voxel (a multi-channel or colour image, {size}); "
                        "give one channel per file")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    if image.GetDimension() == 4:
        raise UserError(f"{path}: a 4D image ({size} voxels); give one 3D volume per file (one channel or "
                        "time point, as nnU-Net's case_0000.nii.gz)")
    if image.GetDimension() != 3:
        raise UserError(f"{path}: a {image.GetDimension()}D image ({size}); the network segments 3D volumes")
    if min(image.GetSize()) < 1:
        raise UserError(f"{path}: an empty volume ({size} voxels)")
    if image.GetNumberOfComponentsPerPixel() == 1 and image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def array_of(image) -> np.ndarray:
    """The voxels of a SimpleITK image: (X, Y, Z) for a scalar image, (C, X, Y, Z) for one with
    C values per voxel; C-contiguous."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)  # (Z, Y, X) or (Z, Y, X, C)
    axes = (3, 2, 1, 0) if image.GetNumberOfComponentsPerPixel() > 1 else (2, 1, 0)
    return np.ascontiguousarray(array.transpose(axes))


def image_like(array: np.ndarray, reference):
    """``array`` (X, Y, Z), or (C, X, Y, Z) for C values per voxel, as a SimpleITK image with the
    geometry of ``reference`` (its size must match)."""
    import SimpleITK as sitk

    array = np.asarray(array)
    if tuple(array.shape[-3:]) != tuple(reference.GetSize()):
        raise ValueError(f"an array of shape {array.shape} does not fit a grid of {reference.GetSize()} voxels")
    vector = array.ndim == 4
    image = sitk.GetImageFromArray(array.transpose((3, 2, 1, 0) if vector else (2, 1, 0)), isVector=vector)
    image.CopyInformation(reference)
    return image


def write_segmentation(labels: np.ndarray, reference, path) -> Path:
    """A (X, Y, Z) label map as uint8 NIfTI at ``path`` (.nii.gz) in the geometry of
    ``reference`` (shape, spacing, origin, direction), so it lies on its scan in 3D Slicer or
    ITK-SNAP; written atomically."""
    return _write_atomically(image_like(labels.astype(np.uint8, copy=False), reference), path)


def write_probabilities(probabilities: np.ndarray, reference, path) -> Path:
    """(C, X, Y, Z) probabilities as one float32 NIfTI vector image (C values per voxel;
    nibabel reads it as (X, Y, Z, 1, C)) at ``path`` in ``reference``'s geometry; atomically."""
    return _write_atomically(image_like(probabilities.astype(np.float32, copy=False), reference), path)


def write_voxel_map(values: np.ndarray, reference, path) -> Path:
    """A (X, Y, Z) map of one value per voxel (e.g. uncertainty) as float32 NIfTI at ``path`` in
    ``reference``'s geometry; atomically."""
    return _write_atomically(image_like(values.astype(np.float32, copy=False), reference), path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomically(image, path) -> Path:
    """Write to a hidden temporary file beside ``path``, flush it to disk, then rename it, so a
    killed run never leaves a partial file under the final name."""
    import SimpleITK as sitk

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.nii.gz", dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, useCompression=True)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; outputs are ordinary files
        os.replace(tmp, path)
    except RuntimeError as err:  # ITK's writer: a full disk, no permission
        Path(tmp).unlink(missing_ok=True)
        reason = next((line for line in reversed(str(err).splitlines()) if line.strip()), "")
        raise UserError(f"cannot write {path}: {reason.strip()}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
