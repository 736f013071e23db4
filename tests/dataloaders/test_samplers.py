"""dataloaders/samplers.py: TwoStreamBatchSampler and EndlessBatchSampler."""
import itertools

import numpy as np
import pytest

from dataloaders.samplers import EndlessBatchSampler, TwoStreamBatchSampler

PRIMARY = list(range(6))
SECONDARY = list(range(6, 16))


def sampler(seed=0, primary=PRIMARY, secondary=SECONDARY, batch_size=4, secondary_bs=2):
    return TwoStreamBatchSampler(primary, secondary, batch_size, secondary_bs, seed=seed)


def first_batches(s, count, start=0):
    return list(itertools.islice(EndlessBatchSampler(s, start), count))


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


def test_each_iteration_is_the_next_epoch_and_epochs_are_reshuffled():
    s = sampler(seed=3, primary=list(range(12)), batch_size=3, secondary_bs=1)
    epochs = [list(s) for _ in range(5)]
    for epoch in epochs:
        assert sorted(i for b in epoch for i in b[:2]) == list(range(12))
    assert len({tuple(i for b in e for i in b[:2]) for e in epochs}) > 1
    # iterating continues where the previous epoch stopped: the same as counting batches
    assert [b for e in epochs for b in e] == [s.batch(n) for n in range(5 * len(s))]


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
    drawn = [i for b in first_batches(s, 20) for i in b[2:]]
    for start in range(0, 40, 4):
        assert sorted(drawn[start:start + 4]) == secondary
    # the same through repeated iteration (one epoch each time)
    drawn_by_epochs = [i for _ in range(20) for b in s for i in b[2:]]
    assert drawn_by_epochs == drawn


def test_unlabeled_pass_straddling_batches_and_epochs():
    """3 unlabeled per batch, 5 unlabeled cases: passes end in the middle of batches and epochs."""
    secondary = list(range(50, 55))
    s = sampler(seed=9, primary=[0, 1, 2], secondary=secondary, batch_size=4, secondary_bs=3)  # 3 batches per epoch
    drawn = [i for b in first_batches(s, 10) for i in b[1:]]
    assert len(drawn) == 30
    for start in range(0, 30, 5):
        assert sorted(drawn[start:start + 5]) == secondary


def test_secondary_zero_gives_labeled_only_batches():
    s = sampler(seed=4, secondary=SECONDARY, batch_size=2, secondary_bs=0)
    batches = list(s)
    assert len(batches) == 3
    assert all(len(b) == 2 for b in batches)
    assert sorted(i for b in batches for i in b) == PRIMARY
    s = sampler(seed=4, secondary=[], batch_size=3, secondary_bs=0)
    assert sorted(i for b in s for i in b) == PRIMARY


def test_reproducible_from_seed():
    a = first_batches(sampler(seed=7), 10)
    b = first_batches(sampler(seed=7), 10)
    c = first_batches(sampler(seed=8), 10)
    assert a == b
    assert a != c


def test_global_numpy_stream_neither_used_nor_changed():
    np.random.seed(0)
    a = first_batches(sampler(seed=7), 10)
    state = np.random.get_state()[1].copy()
    np.random.seed(123)
    b = first_batches(sampler(seed=7), 10)
    assert a == b
    np.random.seed(0)
    first_batches(sampler(seed=7), 10)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_batch_n_is_the_nth_batch_of_iteration():
    s = sampler(seed=5, primary=list(range(7)), secondary=list(range(10, 13)), batch_size=3, secondary_bs=1)
    iterated = first_batches(sampler(seed=5, primary=list(range(7)), secondary=list(range(10, 13)), batch_size=3,
                                     secondary_bs=1), 40)
    # out of order and repeated: a pure function of (seed, n), whatever was asked before
    for n in [39, 0, 17, 3, 17, 38, 1, 25, 2, 0]:
        assert s.batch(n) == iterated[n], n
    assert [s.batch(n) for n in range(40)] == iterated


def test_batch_n_matches_documented_permutations():
    """Labeled epoch e is default_rng([seed, 0, e]).permutation; unlabeled pass p is default_rng([seed, 1, p])."""
    seed, primary, secondary = 21, np.arange(5), np.arange(5, 8)
    s = TwoStreamBatchSampler(primary, secondary, 3, 1, seed=seed)  # 2 labeled + 1 unlabeled, 2 batches per epoch
    for n in range(12):
        epoch, i = divmod(n, 2)
        labeled = np.random.default_rng([seed, 0, epoch]).permutation(primary)[2 * i:2 * i + 2].tolist()
        unlabeled_pass, j = divmod(n, 3)
        unlabeled = int(np.random.default_rng([seed, 1, unlabeled_pass]).permutation(secondary)[j])
        assert s.batch(n) == [*labeled, unlabeled], n


@pytest.mark.parametrize("start", [0, 1, 2, 3, 7, 11])
def test_endless_start_resumes_the_sequence(start):
    full = first_batches(sampler(seed=6), 20)
    assert first_batches(sampler(seed=6), 20 - start, start=start) == full[start:]


def test_endless_seeded_items():
    s = sampler(seed=6)
    items = list(itertools.islice(EndlessBatchSampler(s, start=4, seeded=True), 5))
    for n, batch in enumerate(items, start=4):
        assert batch == [(index, n, position) for position, index in enumerate(s.batch(n))]


@pytest.mark.parametrize("primary,secondary,batch_size,secondary_bs,match", [
    (PRIMARY, SECONDARY, 2, 2, "at least one labeled"),
    (PRIMARY, SECONDARY, 2, 3, "at least one labeled"),
    ([0, 1], SECONDARY, 5, 2, "cannot fill"),
    (PRIMARY, [], 4, 2, "no unlabeled"),
])
def test_errors(primary, secondary, batch_size, secondary_bs, match):
    with pytest.raises(ValueError, match=match):
        TwoStreamBatchSampler(primary, secondary, batch_size, secondary_bs, seed=0)


def test_default_seed_works():
    s = TwoStreamBatchSampler(PRIMARY, SECONDARY, 4, 2)
    assert sorted(i for b in s for i in b[:2]) == PRIMARY
    assert s.batch(5) == TwoStreamBatchSampler(PRIMARY, SECONDARY, 4, 2, seed=0).batch(5)


def test_endless_sampler_continues_past_an_epoch():
    s = sampler(seed=5)
    batches = first_batches(s, 3 * len(s) + 1)
    assert len(batches) == 10
    for epoch in range(3):
        block = batches[epoch * 3:(epoch + 1) * 3]
        assert sorted(i for b in block for i in b[:2]) == PRIMARY
    assert batches[9][0] in PRIMARY and batches[9][2] in SECONDARY
    # different epochs are different permutations (overwhelmingly likely with 6! orders)
    epochs = {tuple(i for b in batches[e * 3:(e + 1) * 3] for i in b[:2]) for e in range(3)}
    assert len(epochs) > 1
