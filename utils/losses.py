"""Losses of the Mean Teacher LA scripts, each reduced to a scalar tensor.

Shapes: logits and probabilities ``(B, C, X, Y, Z)``, integer labels ``(B, X, Y, Z)``.
"""
import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of one foreground channel, squared terms in the denominator.

    ``probs`` and ``target`` have the same shape (target 0/1 as float).
    1 - (2 sum(p t) + s) / (sum(p^2) + sum(t^2) + s), s = 1e-5, as in UA-MT.
    """
    target = target.float()
    intersection = (probs * target).sum()
    denominator = (probs * probs).sum() + (target * target).sum()
    return 1 - (2 * intersection + DICE_SMOOTH) / (denominator + DICE_SMOOTH)


def foreground_dice_loss(logits: torch.Tensor, labels: torch.Tensor, *, with_background: bool = False) -> torch.Tensor:
    """Mean of ``soft_dice_loss`` over the foreground classes 1..C-1 of softmax(logits), or
    with ``with_background`` over every class 0..C-1 (AD-MT's DiceLoss).

    With two classes and no background this is exactly the LA scripts' Dice loss on channel 1.
    """
    probs = F.softmax(logits.float(), dim=1)
    first = 0 if with_background else 1
    losses = [soft_dice_loss(probs[:, c], labels == c) for c in range(first, probs.shape[1])]
    return torch.stack(losses).mean()


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, *, with_background: bool = False) -> torch.Tensor:
    """0.5 (cross-entropy + foreground Dice loss): the supervised term of the LA scripts; with
    ``with_background`` the Dice loss also counts the background class, as AD-MT's does."""
    dice = foreground_dice_loss(logits, labels, with_background=with_background)
    return 0.5 * (F.cross_entropy(logits.float(), labels.long()) + dice)


def softmax_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over every element (batch, class, voxel) of (softmax(s) - softmax(t))^2."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"consistency needs equal shapes, got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    diff = F.softmax(student_logits.float(), dim=1) - F.softmax(teacher_logits.float(), dim=1)
    return (diff * diff).mean()


def softmax_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over every element of KL(softmax(t) || softmax(s)), computed pointwise."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"consistency needs equal shapes, got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    return F.kl_div(F.log_softmax(student_logits.float(), dim=1),
                    F.softmax(teacher_logits.float(), dim=1), reduction="none").mean()


CONSISTENCY_LOSSES = {"mse": softmax_mse_loss, "kl": softmax_kl_loss}


def confident_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor,
                            threshold: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``logits`` against pseudo-``labels``, averaged over the voxels whose
    ``confidence`` is at least ``threshold`` (one number, or one per voxel, shaped like
    ``labels``; 0 where there is none: no NaN), and the share of voxels that counted."""
    confident = confidence >= threshold
    per_voxel = F.cross_entropy(logits.float(), labels.long(), reduction="none")
    loss = (per_voxel * confident).sum() / confident.sum().clamp_min(1)
    return loss, confident.float().mean()
