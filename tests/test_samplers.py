"""dataloaders/samplers.py: TwoStreamBatchSampler and EndlessBatchSampler."""
import itertools

import numpy as np
import pytest

from dataloaders.samplers import EndlessBatchSampler, TwoStreamBatchSampler

PRIMARY = list(range(6))
SECONDARY = list(range(6, 16))


def sampler(seed=0, primary=PRIMARY, secondary=SECONDARY, batch_size=4, secondary_bs=2):
    return TwoStreamBatchSampler(primary, secondary, batch_size, secondary_bs, rng=np.random.default_rng(seed))


def test_len_and_epoch_visits_every_labeled_index_once():
    s = sampler()
    batches = list(s)
    assert len(s) == 3 == len(batches)
    labeled = [i for b in batches for i in b[:2]]
    assert sorted(labeled) == PRIMARY


def test_batch_composition():
    for seed in range(5):
        for batch in sampler(seed):
            assert len(batch) == 4
            assert all(i in PRIMARY for i in batch[:2])
            assert all(i in SECONDARY for i in batch[2:])
            assert all(type(i) is int for i in batch)


def test_labeled_remainder_dropped():
    s = sampler(primary=list(range(7)), batch_size=4, secondary_bs=2)
    assert len(s) == 3
    labeled = [i for b in s for i in b[:2]]
    assert len(labeled) == 6 and len(set(labeled)) == 6 and set(labeled) <= set(range(7))


def test_len_by_hand():
    assert len(sampler(primary=list(range(25)), batch_size=4, secondary_bs=2)) == 12
    assert len(sampler(primary=list(range(25)), batch_size=3, secondary_bs=2)) == 25
    assert len(sampler(primary=list(range(4)), batch_size=4, secondary_bs=0)) == 1


def test_epochs_are_reshuffled():
    s = sampler(seed=3, primary=list(range(12)), batch_size=3, secondary_bs=1)
    orders = {tuple(i for b in s for i in b[:2]) for _ in range(5)}
    assert len(orders) > 1


def test_unlabeled_cycle_through_all_before_repeating_within_epoch():
    secondary = list(range(100, 106))
    s = sampler(seed=1, primary=list(range(20)), secondary=secondary, batch_size=4, secondary_bs=3)
    drawn = [i for b in s for i in b[1:]]
    assert len(drawn) == 60
    for start in range(0, 60, 6):
        assert sorted(drawn[start:start + 6]) == secondary, f"pass starting at draw {start}"
    passes = {tuple(drawn[k:k + 6]) for k in range(0, 60, 6)}
    assert len(passes) > 1, "each pass must be reshuffled"


def test_unlabeled_cycle_continues_across_epochs():
    secondary = list(range(100, 104))
    s = sampler(seed=2, primary=[0, 1], secondary=secondary, batch_size=4, secondary_bs=2)  # 1 batch per epoch
    drawn = [i for b in itertools.islice(EndlessBatchSampler(s), 20) for i in b[2:]]
    for start in range(0, 40, 4):
        assert sorted(drawn[start:start + 4]) == secondary


def test_secondary_zero_gives_labeled_only_batches():
    s = sampler(seed=4, secondary=SECONDARY, batch_size=2, secondary_bs=0)
    batches = list(s)
    assert len(batches) == 3
    assert all(len(b) == 2 for b in batches)
    assert sorted(i for b in batches for i in b) == PRIMARY
    s = sampler(seed=4, secondary=[], batch_size=3, secondary_bs=0)
    assert sorted(i for b in s for i in b) == PRIMARY


def test_seeded_rng_reproducible():
    a = list(itertools.islice(EndlessBatchSampler(sampler(seed=7)), 10))
    b = list(itertools.islice(EndlessBatchSampler(sampler(seed=7)), 10))
    c = list(itertools.islice(EndlessBatchSampler(sampler(seed=8)), 10))
    assert a == b
    assert a != c


@pytest.mark.parametrize("primary,secondary,batch_size,secondary_bs,match", [
    (PRIMARY, SECONDARY, 2, 2, "at least one labeled"),
    (PRIMARY, SECONDARY, 2, 3, "at least one labeled"),
    ([0, 1], SECONDARY, 5, 2, "cannot fill"),
    (PRIMARY, [], 4, 2, "no unlabeled"),
])
def test_errors(primary, secondary, batch_size, secondary_bs, match):
    with pytest.raises(ValueError, match=match):
        TwoStreamBatchSampler(primary, secondary, batch_size, secondary_bs, rng=np.random.default_rng(0))


def test_default_rng_works():
    s = TwoStreamBatchSampler(PRIMARY, SECONDARY, 4, 2)
    assert sorted(i for b in s for i in b[:2]) == PRIMARY


def test_endless_sampler_continues_past_an_epoch():
    s = sampler(seed=5)
    endless = EndlessBatchSampler(s)
    batches = list(itertools.islice(endless, 3 * len(s) + 1))
    assert len(batches) == 10
    for epoch in range(3):
        block = batches[epoch * 3:(epoch + 1) * 3]
        assert sorted(i for b in block for i in b[:2]) == PRIMARY
    assert batches[9][0] in PRIMARY and batches[9][2] in SECONDARY
    # different epochs are different permutations (overwhelmingly likely with 6! orders)
    epochs = {tuple(i for b in batches[e * 3:(e + 1) * 3] for i in b[:2]) for e in range(3)}
    assert len(epochs) > 1
