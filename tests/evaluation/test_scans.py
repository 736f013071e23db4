"""evaluation/scans.py on real files: every format read back in the file's voxel order with its
geometry (as nibabel sees it), case names, finding scans, each kind of bad file as one line,
and outputs written atomically in the scan's geometry."""
import math
import os

import numpy as np
import pytest

from conftest import write_case
from evaluation import scans
from evaluation.scans import case_name, list_scans, read_scan, write_probabilities, write_segmentation
from utils.errors import UserError

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")

SPACING, ORIGIN = (0.7, 0.8, 1.1), (10.0, -20.0, 5.0)
ANGLE = 0.3
DIRECTION = (math.cos(ANGLE), -math.sin(ANGLE), 0.0, math.sin(ANGLE), math.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)


def file(path, data):
    """``path`` holding ``data`` (bytes or text)."""
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def volume(shape=(9, 7, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def sitk_image(array, spacing=SPACING, origin=ORIGIN, direction=DIRECTION):
    image = sitk.GetImageFromArray(array.transpose(2, 1, 0))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"])
def test_every_format_reads_in_voxel_order_with_its_geometry(suffix, tmp_path):
    array = volume()
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(sitk_image(array), str(path))
    scan = read_scan(path)
    assert scan.voxels.dtype == np.float32 and scan.voxels.flags.c_contiguous
    np.testing.assert_array_equal(scan.voxels, array)  # (X, Y, Z), not SimpleITK's (Z, Y, X)
    np.testing.assert_allclose(scan.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(scan.image.GetOrigin(), ORIGIN, atol=1e-5)
    np.testing.assert_allclose(scan.image.GetDirection(), DIRECTION, atol=1e-6)


def test_nifti_voxels_are_nibabels_and_integers_become_float(tmp_path):
    array = np.arange(9 * 7 * 5, dtype=np.int16).reshape(9, 7, 5)
    affine = np.array([[0, -0.7, 0, 5], [0.9, 0, 0, -3], [0, 0, 1.2, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(array, affine), tmp_path / "a.nii.gz")
    scan = read_scan(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(scan.voxels, np.asarray(nib.load(tmp_path / "a.nii.gz").dataobj))
    assert scan.voxels.dtype == np.float32
    write_segmentation((array % 3).astype(np.uint8), scan.image, tmp_path / "seg.nii.gz")
    seg = nib.load(tmp_path / "seg.nii.gz")
    np.testing.assert_allclose(seg.affine, affine, atol=1e-6)  # lies on the scan in a viewer
    np.testing.assert_array_equal(np.asarray(seg.dataobj), array % 3)
    assert seg.get_data_dtype() == np.uint8


def test_an_la_h5_gets_the_challenge_voxel_size_and_inference_axes(tmp_path):
    array = volume()
    write_case(tmp_path, "LA_case", array, np.zeros(array.shape))
    scan = read_scan(tmp_path / "LA_case" / "mri_norm2.h5")
    np.testing.assert_array_equal(scan.voxels, array)
    assert scan.spacing == (0.625, 0.625, 0.625) and scan.image.GetOrigin() == (0.0, 0.0, 0.0)
    write_segmentation(np.zeros(array.shape, np.uint8), scan.image, tmp_path / "seg.nii.gz")
    # the affine of inference.py's --save_pred files, so the two overlay
    np.testing.assert_allclose(nib.load(tmp_path / "seg.nii.gz").affine, np.diag([0.625, 0.625, 0.625, 1.0]))


def test_a_4d_file_with_one_time_point_is_3d(tmp_path):
    array = volume()
    nib.save(nib.Nifti1Image(array[..., None], np.eye(4)), tmp_path / "one.nii.gz")
    np.testing.assert_array_equal(read_scan(tmp_path / "one.nii.gz").voxels, array)
    sitk.WriteImage(sitk.GetImageFromArray(array.transpose(2, 1, 0)[None], isVector=False), str(tmp_path / "one.nrrd"))
    assert read_scan(tmp_path / "one.nrrd").voxels.shape == array.shape


@pytest.mark.parametrize("path, case", [("a/case_0000.nii.gz", "case"), ("a/case.nii", "case"), ("x.nrrd", "x"),
                                        ("x.y.mha", "x.y"), ("LA_001/mri_norm2.h5", "LA_001"), ("c.h5", "c"),
                                        ("a/_0000.nii.gz", "_0000"), ("CASE.NII.GZ", "CASE")])
def test_case_names(path, case):
    assert case_name(path) == case


def test_scans_are_found_in_folders_lists_and_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.nrrd", "a_0000.nii.gz", "notes.txt", ".a.nii.gz.tmp.nii.gz", "c.mhd", "c.raw"):
        file(folder / name, "x")
    write_case(folder, "LA_1", volume(), np.zeros((9, 7, 5)))
    assert [p.name for p in list_scans(folder)] == ["mri_norm2.h5", "a_0000.nii.gz", "b.nrrd", "c.mhd"]  # by path
    listing = tmp_path / "scans.list"
    listing.write_text(f"# two scans\nin/b.nrrd\n\n  {folder / 'c.mhd'}  \n")
    assert list_scans(listing) == [tmp_path / "in" / "b.nrrd", folder / "c.mhd"]
    assert list_scans(folder / "b.nrrd") == [folder / "b.nrrd"]


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.nii.gz", "not found"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no scan"),
    (lambda d: file(d / "scan.png", "x"), "unknown scan format"),
    (lambda d: file(d / "none.list", "\n# nothing\n"), "names no scan"),
])
def test_input_that_names_no_scan_is_one_line(make, expected, tmp_path):
    with pytest.raises(UserError, match=expected) as err:
        list_scans(make(tmp_path))
    assert "\n" not in str(err.value)


def truncated(path, kind):
    """``path`` cut to half its bytes (written first as ``kind``)."""
    sitk.WriteImage(sitk.GetImageFromArray(volume((40, 40, 30))), str(path), useCompression=kind == "compressed")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


BAD = {
    "empty": (lambda d: file(d / "e.nii.gz", b""), "the file is empty"),
    "not NIfTI": (lambda d: file(d / "g.nii.gz", b"hello" * 100), "cannot read it as NIfTI"),
    "truncated nii.gz": (lambda d: truncated(d / "t.nii.gz", "plain"), "truncated or damaged"),
    "truncated nii": (lambda d: truncated(d / "t.nii", "plain"), "the file is truncated"),
    "truncated nrrd": (lambda d: truncated(d / "t.nrrd", "compressed"), "cannot read it as NRRD"),
    "truncated mha": (lambda d: truncated(d / "t.mha", "plain"), "data not read completely"),
    "2D": (lambda d: nib.save(nib.Nifti1Image(np.ones((5, 6), np.float32), np.eye(4)), d / "f.nii.gz")
           or d / "f.nii.gz", "a 2D image (5 x 6)"),
    "4D": (lambda d: nib.save(nib.Nifti1Image(np.ones((5, 6, 7, 2), np.float32), np.eye(4)), d / "f.nii.gz")
           or d / "f.nii.gz", "a 4D image (5 x 6 x 7 x 2 voxels)"),
    # (ITK's NIfTI reader itself turns NaN and inf into 0; NRRD and MetaImage keep them)
    "NaN": (lambda d: sitk.WriteImage(sitk.GetImageFromArray(np.full((5, 6, 7), np.nan, np.float32)), str(d / "n.nrrd"))
            or d / "n.nrrd", "210 voxel(s) are NaN or infinite"),
    "colour": (lambda d: sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 6, 7, 3), np.float32), isVector=True),
                                         str(d / "rgb.nrrd")) or d / "rgb.nrrd", "3 values per voxel"),
    "not HDF5": (lambda d: file(d / "mri_norm2.h5", b"junk"), "cannot read it as HDF5"),
    "unknown format": (lambda d: file(d / "x.png", "x"), "unknown scan format"),
    "a folder": (lambda d: (d / "f.nii.gz").mkdir() or d / "f.nii.gz", "a folder, not a scan file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_scan_is_one_line_naming_the_file(case, tmp_path, capfd):
    make, expected = BAD[case]
    path = make(tmp_path)
    with pytest.raises(UserError) as err:
        read_scan(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message
    assert capfd.readouterr().err == ""  # ITK's own stderr lines went into the message


def test_probabilities_are_one_vector_nifti_in_the_scans_geometry(tmp_path):
    image = sitk_image(volume())
    probabilities = np.random.default_rng(2).random((2, 9, 7, 5)).astype(np.float32)
    write_probabilities(probabilities, image, tmp_path / "p.nii.gz")
    back = sitk.ReadImage(str(tmp_path / "p.nii.gz"))
    assert back.GetNumberOfComponentsPerPixel() == 2 and back.GetSize() == (9, 7, 5)
    np.testing.assert_allclose(back.GetDirection(), DIRECTION, atol=1e-6)
    loaded = nib.load(tmp_path / "p.nii.gz")
    assert loaded.shape == (9, 7, 5, 1, 2)
    np.testing.assert_array_equal(np.asarray(loaded.dataobj)[:, :, :, 0].transpose(3, 0, 1, 2), probabilities)


def test_writes_are_atomic_and_ordinary_files(tmp_path, monkeypatch):
    image = sitk_image(volume())
    path = write_segmentation(np.ones((9, 7, 5), np.uint8), image, tmp_path / "s.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nii.gz"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~scans._umask()
    before = path.read_bytes()

    def killed(*args, **kwargs):  # the writer stops halfway (a kill, a full disk)
        with open(args[1], "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(sitk, "WriteImage", killed)
    with pytest.raises(KeyboardInterrupt):
        write_segmentation(np.zeros((9, 7, 5), np.uint8), image, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.nii.gz"]
    with pytest.raises(ValueError, match="does not fit"):
        write_segmentation(np.zeros((9, 7, 4), np.uint8), image, tmp_path / "t.nii.gz")
    assert os.listdir(tmp_path) == ["s.nii.gz"]
