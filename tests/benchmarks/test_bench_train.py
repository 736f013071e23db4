"""The training benchmark's modes: the named ones, and variants made of a mode plus flags."""
import pytest

from benchmarks.bench_train import FAST, PLAIN, chosen_modes


def test_named_modes_keep_their_order_and_flags():
    assert chosen_modes("fast,plain", []) == {"fast": FAST, "plain": PLAIN}


def test_a_variant_is_its_mode_plus_flags():
    modes = chosen_modes("fast,nchw", [("nchw", "fast --channels_last 0")])
    assert modes["nchw"] == FAST + ["--channels_last", "0"]
    assert modes["fast"] == FAST  # the mode it starts from is not changed


@pytest.mark.parametrize("names, variants, message", [
    ("fast,nope", [], "unknown mode(s) nope"),
    ("x", [("x", "quick --amp 0")], "must start with one of"),
    ("x", [("x", "")], "must start with one of"),
])
def test_bad_modes_are_named(names, variants, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chosen_modes(names, variants)
