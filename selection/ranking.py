"""Which unlabeled scans to label next: the most uncertain first, optionally spread so that
near-identical scans are not all chosen."""
import numpy as np

POOL_FACTOR = 3  # with spreading, the picks come from the 3N most uncertain scans


def cosine_distances(features: np.ndarray) -> np.ndarray:
    """(N, N) cosine distances (0 identical direction .. 2 opposite) of (N, D) feature vectors."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - unit @ unit.T, 0.0, 2.0)


def rank_by_score(scores) -> list[int]:
    """Indices from the highest score to the lowest (ties in the given order)."""
    return [int(i) for i in np.argsort(-np.asarray(scores, float), kind="stable")]


def spread_selection(scores, features: np.ndarray, count: int, pool_factor: int = POOL_FACTOR) -> list[int]:
    """``count`` indices chosen among the ``pool_factor * count`` highest scores: the most
    uncertain first, then each time the candidate with the largest score x distance to the
    nearest pick so far (cosine distance of ``features``, divided by the largest distance in the
    pool), so that a scan nearly identical to a pick (distance about 0) waits behind any other."""
    order = rank_by_score(scores)
    pool = order[:max(count, pool_factor * count)]
    if count >= len(pool):
        return pool[:count]
    scores = np.asarray(scores, float)
    distances = cosine_distances(np.asarray(features, float)[pool])
    scale = distances.max() or 1.0
    picked = [0]                                   # positions in pool; the top score first
    nearest = distances[0].copy()
    while len(picked) < count:
        merit = scores[pool] * (nearest / scale)
        merit[picked] = -np.inf
        best = int(np.argmax(merit))
        picked.append(best)
        nearest = np.minimum(nearest, distances[best])
    return [pool[i] for i in picked]


def next_training_list(labeled: list[str], suggested: list[str], unlabeled: list[str]) -> list[str]:
    """The training list after labeling ``suggested``: the labeled cases, then the suggested
    ones, then the other unlabeled cases (so ``--labelnum len(labeled) + len(suggested)``
    trains with the new labels)."""
    chosen = set(suggested)
    return [*labeled, *suggested, *(case for case in unlabeled if case not in chosen)]
