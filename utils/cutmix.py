"""3D CutMix of a batch (Yun et al., ICCV 2019, in AD-MT's 3D form): a box of each sample is
replaced by the same box of another sample of the batch, and whatever belongs to the voxels
(pseudo-labels, confidences, masks) is moved with the image.

Shapes: images ``(B, C, X, Y, Z)``, per-voxel tensors ``(B, X, Y, Z)``; a box is in voxels.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CutMixBoxes:
    """One box per sample: sample ``i`` receives ``[start, end)`` (per axis, voxels) of sample
    ``source[i]`` (``source`` a permutation of the batch; a sample that is its own source is
    left as it was)."""
    source: tuple[int, ...]
    starts: tuple[tuple[int, int, int], ...]
    ends: tuple[tuple[int, int, int], ...]

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """A mixed copy of ``batch`` ((B, C, X, Y, Z) or (B, X, Y, Z): the boxes are in the last
        three axes), ``batch`` itself untouched."""
        if batch.shape[0] != len(self.source):
            raise ValueError(f"the boxes are for a batch of {len(self.source)}, got {batch.shape[0]}")
        mixed = batch.clone()
        for sample, (source, start, end) in enumerate(zip(self.source, self.starts, self.ends)):
            box = (..., *(slice(a, b) for a, b in zip(start, end)))
            mixed[sample][box] = batch[source][box]
        return mixed


def random_boxes(batch_size: int, spatial_shape, *, beta: float = 4.0) -> CutMixBoxes:
    """AD-MT's random boxes, drawn from torch's global generator (seeds and --resume cover it):
    one ``lam ~ Beta(beta, beta)`` for the batch, a length ``n = int(side * sqrt(1 - lam))`` per
    axis, the box ``[centre - n // 2, centre + n // 2)`` (so an even number of voxels, at most n)
    around a centre drawn per sample from ``[side // 8, side)``, clipped to the patch, and
    a random permutation of the batch as the sources."""
    lam = torch.distributions.Beta(beta, beta).sample().item()
    cut = (1.0 - lam) ** 0.5
    source = tuple(torch.randperm(batch_size).tolist())
    starts, ends = [], []
    for _ in range(batch_size):
        start, end = [], []
        for side in spatial_shape:
            length = int(side * cut)
            centre = int(torch.randint(side // 8, side, ()).item())
            start.append(min(max(centre - length // 2, 0), side))
            end.append(min(max(centre + length // 2, 0), side))
        starts.append(tuple(start))
        ends.append(tuple(end))
    return CutMixBoxes(source, tuple(starts), tuple(ends))
