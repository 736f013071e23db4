"""selection/ranking.py and selection/features.py: which unlabeled scans suggest.py proposes
(most uncertain first, near-identical scans not chosen together), the next training list, and
the bottleneck vector the spreading compares scans by."""
import numpy as np
import pytest
import torch

from networks.vnet import VNet
from selection.features import bottleneck_features
from selection.ranking import cosine_distances, next_training_list, rank_by_score, spread_selection
from utils.checkpoint import VNET_CONFIG


def unit(degrees: float) -> list[float]:
    """A 2D feature vector at this angle: cosine distances between them are 1 - cos(angle)."""
    return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]


def test_rank_by_score_is_highest_first_with_ties_in_the_given_order():
    assert rank_by_score([0.2, 0.5, 0.2, 0.9, 0.5]) == [3, 1, 4, 0, 2]
    assert rank_by_score([0.3, 0.3, 0.3]) == [0, 1, 2]
    assert rank_by_score([]) == []
    assert all(isinstance(i, int) for i in rank_by_score(np.array([0.1, 0.2])))


def test_cosine_distances():
    features = np.array([unit(0), unit(90), unit(180), [3.0, 0.0]])
    distances = cosine_distances(features)
    np.testing.assert_allclose(distances[0], [0, 1, 2, 0], atol=1e-12)  # the length does not count
    np.testing.assert_allclose(distances, distances.T)
    np.testing.assert_allclose(np.diag(distances), 0, atol=1e-12)


def test_near_identical_scans_are_not_chosen_together():
    """The two most uncertain scans look the same to the network: with spreading, the second
    pick is the distinct third scan, though it scores lower; without, the top two."""
    scores = [0.9, 0.89, 0.5]
    features = np.array([[1.0, 0.0, 0.2], [1.0, 0.001, 0.2], [0.0, 1.0, 0.0]])
    assert spread_selection(scores, features, 2) == [0, 2]
    assert rank_by_score(scores)[:2] == [0, 1]
    # the same in another order of the scans: the picks follow the scans, not their positions
    order = [2, 1, 0]
    assert spread_selection([scores[i] for i in order], features[order], 2) == [2, 0]


def test_each_pick_has_the_largest_score_times_distance_to_the_picks_so_far():
    """Scores 1.0, 0.8, 0.6, 0.7 at angles 0, 90, 180 and 60 degrees: distances to scan 0 are 1,
    2 and 0.5, the largest in the pool 2. Second pick: 0.8 * 1/2 = 0.4, 0.6 * 2/2 = 0.6,
    0.7 * 0.5/2 = 0.175 -> scan 2. Third: nearest distances 1 and 0.5 -> 0.4 and 0.175 -> scan 1."""
    scores = [1.0, 0.8, 0.6, 0.7]
    features = np.array([unit(0), unit(90), unit(180), unit(60)])
    assert spread_selection(scores, features, 2) == [0, 2]
    assert spread_selection(scores, features, 3) == [0, 2, 1]


def test_the_picks_come_from_the_pool_of_the_most_uncertain():
    """Two picks from the 3 x 2 = 6 most uncertain scans (angles 0 to 5 degrees, nearly alike):
    the seventh, distinct but least uncertain, is out of the pool; a pool of 8 lets it in, and
    there it beats the near-duplicates of the first pick. With a pool as small as the count,
    the picks are the top scores."""
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1]
    features = np.array([unit(a) for a in (0, 1, 2, 3, 4, 5, 180)])
    # inside the pool the merit grows as score x angle squared: 0.8, 2.8, 5.4, 8, 10 -> 5 degrees
    assert spread_selection(scores, features, 2) == [0, 5]
    assert spread_selection(scores, features, 2, pool_factor=4) == [0, 6]
    assert spread_selection(scores, features, 2, pool_factor=1) == [0, 1]


def test_with_spreading_the_first_pick_is_always_the_highest_score():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 12))
        scores = rng.uniform(size=n)
        features = rng.normal(size=(n, 4))
        count = int(rng.integers(1, n + 1))
        picks = spread_selection(scores, features, count)
        assert picks[0] == int(np.argmax(scores))
        assert len(picks) == count == len(set(picks))
        assert set(picks) <= set(rank_by_score(scores)[:3 * count])


def test_identical_features_fall_back_to_the_scores():
    """All scans alike (every distance 0): no pick is preferred for its distance, so they come
    in the order of their scores, each scan once."""
    scores = [0.5, 0.9, 0.7, 0.3]
    assert spread_selection(scores, np.ones((4, 3)), 3) == [1, 2, 0]


def test_next_training_list_is_labeled_then_suggested_then_the_rest():
    assert next_training_list(["a", "b"], ["e", "c"], ["c", "d", "e", "f"]) == ["a", "b", "e", "c", "d", "f"]
    assert next_training_list([], ["x"], ["x"]) == ["x"]


def test_bottleneck_features_are_the_mean_over_every_window_seen():
    """Three windows in two forwards: the vector is the mean over them of the bottleneck output
    averaged over space; outside the block the network is not watched any more."""
    torch.manual_seed(0)
    model = VNet(**{**VNET_CONFIG, "n_filters": 4, "n_classes": 2}).eval()
    seen = []
    handle = model.bottleneck.register_forward_hook(lambda m, i, output: seen.append(output.detach()))
    windows = torch.randn(3, 1, 16, 16, 16)
    with torch.no_grad(), bottleneck_features(model) as features:
        model(windows[:2])
        model(windows[2:])
    handle.remove()
    expected = torch.cat(seen).mean(dim=(2, 3, 4)).mean(dim=0).numpy()
    assert features.vector().shape == (16 * 4,)
    np.testing.assert_allclose(features.vector(), expected, rtol=1e-5, atol=1e-6)
    assert features.count == 3
    with torch.no_grad():
        model(windows[:1])
    assert features.count == 3 and not model.bottleneck._forward_hooks
    with bottleneck_features(model) as unused:
        pass
    with pytest.raises(ValueError, match="not run"):
        unused.vector()
