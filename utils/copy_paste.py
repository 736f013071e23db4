"""BCP's bidirectional copy-paste (Bai et al., CVPR 2023): a cube of one patch pasted into
another, and the loss that weighs each voxel by where its target comes from.

Shapes: images ``(B, 1, X, Y, Z)``, logits ``(B, C, X, Y, Z)``, labels and masks ``(B, X, Y, Z)``
or, for the cube, ``(X, Y, Z)`` (one cube per batch, as in the official code).
"""
from collections import deque

import torch
import torch.nn.functional as F

from utils.metrics import keep_largest_component_per_class

DICE_SMOOTH = 1e-5  # BCP's mask_DiceLoss


def cube_mask(patch_size, ratio: float, device: torch.device) -> torch.Tensor:
    """(X, Y, Z) int64: 0 inside a cube of ``int(ratio * side)`` voxels per axis at a random
    place (drawn from torch's global generator, so seeds and --resume cover it), 1 outside. As
    in the official code the cube starts before ``side - cube``, never touching the far side."""
    mask = torch.ones(tuple(patch_size), dtype=torch.long, device=device)
    region = []
    for side in patch_size:
        cube = int(side * ratio)
        start = int(torch.randint(0, max(side - cube, 1), ()).item())
        region.append(slice(start, start + cube))
    mask[tuple(region)] = 0
    return mask


def paste(outside: torch.Tensor, inside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``outside`` where the (X, Y, Z) ``mask`` is 1 and ``inside`` where it is 0, for images
    (B, 1, X, Y, Z) and labels (B, X, Y, Z) alike (the mask broadcasts)."""
    return outside * mask + inside * (1 - mask)


@torch.no_grad()
def pseudo_labels(teacher_logits: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) int64: class c >= 1 where its softmax is at least 0.5, only its largest
    26-connected component kept (per sample and class), background elsewhere."""
    probs = F.softmax(teacher_logits.float(), dim=1)
    num_classes = probs.shape[1]
    labels = torch.zeros(probs.shape[0], *probs.shape[2:], dtype=torch.long, device=probs.device)
    for c in range(1, num_classes):
        labels[probs[:, c] >= 0.5] = c
    kept = [torch.from_numpy(keep_largest_component_per_class(sample.cpu().numpy(), num_classes))
            for sample in labels]
    return torch.stack(kept).to(probs.device)


def masked_dice_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean over samples and classes (background included) of the soft Dice between
    softmax(logits) and the one-hot target, counted where ``mask`` is 1 (everywhere for None):
    (2 sum(p t m) + s) / (sum((p + t) m) + s), s = 1e-5, as BCP's mask_DiceLoss."""
    probs = F.softmax(logits.float(), dim=1).flatten(2)
    one_hot = F.one_hot(target.long().flatten(1), probs.shape[1]).transpose(1, 2).float()
    weight = torch.ones_like(probs[:, :1]) if mask is None else mask.float().flatten(1)[:, None]
    intersection = (probs * one_hot * weight).sum(2)
    total = ((probs + one_hot) * weight).sum(2)
    return 1 - ((2 * intersection + DICE_SMOOTH) / (total + DICE_SMOOTH)).mean()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the voxels where ``mask`` is 1."""
    per_voxel = F.cross_entropy(logits.float(), target.long(), reduction="none")
    mask = mask.float().expand_as(per_voxel)
    return (per_voxel * mask).sum() / (mask.sum() + 1e-16)


def copy_paste_loss(logits: torch.Tensor, outside_target: torch.Tensor, inside_target: torch.Tensor,
                    mask: torch.Tensor, *, outside_weight: float, inside_weight: float) -> torch.Tensor:
    """BCP's mixed loss: (Dice + cross-entropy) / 2, each the ``outside_weight``-weighted term
    on the voxels outside the cube (``mask`` 1, target ``outside_target``) plus the
    ``inside_weight``-weighted term inside it. A ground-truth region weighs 1, a pseudo-labeled
    one ``--u_weight`` (0.5)."""
    batch_mask = mask.expand_as(outside_target)
    inside = 1 - batch_mask
    dice = (outside_weight * masked_dice_loss(logits, outside_target, batch_mask)
            + inside_weight * masked_dice_loss(logits, inside_target, inside))
    cross_entropy = (outside_weight * masked_cross_entropy(logits, outside_target, batch_mask)
                     + inside_weight * masked_cross_entropy(logits, inside_target, inside))
    return (dice + cross_entropy) / 2


def whole_patch_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(cross-entropy + Dice loss over every class) / 2 on the whole patch: BCP's pre-training loss."""
    return (F.cross_entropy(logits.float(), target.long()) + masked_dice_loss(logits, target)) / 2


class EmptyPseudoLabelWatch:
    """Tells, once, when over ``window`` self-training iterations the teacher's pseudo-labels
    mark less than ``ratio`` times the foreground share of the labeled patches: the pre-trained
    network then finds (almost) no foreground, and the unlabeled voxels teach background until it
    does (on Hippocampus, after short first stages, for 200 to 700 self-training iterations
    before the runs recovered). A share, not zero: such a network can still leave a stray voxel
    or two (seen on data whose labels are all background)."""

    def __init__(self, window: int, ratio: float = 0.01):
        self.pseudo = deque(maxlen=window)
        self.labeled = deque(maxlen=window)
        self.ratio = ratio
        self.told = False

    def update(self, pseudo_foreground: float, labeled_foreground: float) -> bool:
        """Add one iteration's foreground shares (of the pseudo-labels, of the ground-truth
        labels); True the one time the last ``window`` iterations fall short. Once told it reads
        nothing more (no device synchronisation per iteration)."""
        if self.told:
            return False
        self.pseudo.append(float(pseudo_foreground))
        self.labeled.append(float(labeled_foreground))
        if len(self.pseudo) < self.pseudo.maxlen or sum(self.pseudo) >= self.ratio * sum(self.labeled):
            return False
        self.told = True
        return True

    def shares(self) -> tuple[float, float]:
        """Mean foreground shares of the pseudo-labels and of the labeled patches over the window."""
        return sum(self.pseudo) / len(self.pseudo), sum(self.labeled) / len(self.labeled)
