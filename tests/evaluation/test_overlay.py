"""evaluation/overlay.py: PNG encoding and the outline picture of a case."""
import numpy as np
import pytest

from conftest import decode_png, png_size
from evaluation.overlay import GT_COLOUR, PRED_COLOUR, case_overlay, encode_png, write_png


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 3), (1, 1), (3, 300, 3)])
def test_png_round_trip(shape, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = write_png(tmp_path / "p.png", pixels).read_bytes()
    assert png_size(data) == (shape[1], shape[0])
    np.testing.assert_array_equal(decode_png(data), pixels)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 3), np.uint8)])
def test_png_rejects_what_it_cannot_encode(bad):
    with pytest.raises(ValueError):
        encode_png(bad)


def test_case_overlay_draws_both_outlines():
    shape = (30, 24, 12)
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[5:20, 4:16, 2:9] = 1
    pred = np.zeros(shape, np.uint8)
    pred[8:24, 6:18, 3:10] = 1
    picture = case_overlay(image, label, pred, scale=1, gap=2)
    assert picture.dtype == np.uint8 and picture.shape == (max(24, 12), 30 + 30 + 24 + 4, 3)
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert GT_COLOUR in colours and PRED_COLOUR in colours
    # the axial panel is the slice with the most ground truth; its outline is on the label's border
    axial = picture[:24, :30]  # Y down, X across, at z = 5 (the middle of the fullest, 2..8)
    assert (axial[4, 5:20] == GT_COLOUR).all() and (axial[4:16, 5] == GT_COLOUR).all()
    assert (axial[:4] != GT_COLOUR).any(axis=-1).all()
    grey_only = case_overlay(image, np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), scale=1)
    assert (grey_only[..., 0] == grey_only[..., 1]).all()  # nothing drawn on empty masks
