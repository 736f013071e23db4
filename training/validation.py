"""Validation during training: whole-volume Dice on a validation list (never the test list)."""
import torch

from utils.sliding_window import sliding_window_predict


class Validator:
    """Mean foreground Dice of a model over the validation cases, by sliding windows with
    half-patch strides (coarser than ``inference.py``'s, to keep validation cheap)."""

    def __init__(self, volumes, *, patch_size, num_classes: int, device: torch.device,
                 amp_dtype: torch.dtype | None = None, gather=None):
        """``volumes``: the validation cases' (image, label) arrays, each (X, Y, Z). Under
        torchrun each rank holds a share of the cases and ``gather`` (``Ranks.gather``) collects
        every rank's scores, so all ranks return the same mean."""
        self.volumes = list(volumes)
        self.gather = gather
        self.patch_size = tuple(patch_size)
        self.num_classes = num_classes
        self.device = device
        self.amp_dtype = amp_dtype

    def __call__(self, model: torch.nn.Module) -> float:
        was_training = model.training
        model.eval()
        scores = []
        for image, label in self.volumes:
            _, predicted = sliding_window_predict(model, image, patch_size=self.patch_size,
                                                  stride_xy=self.patch_size[0] // 2, stride_z=self.patch_size[2] // 2,
                                                  num_classes=self.num_classes, device=self.device,
                                                  amp_dtype=self.amp_dtype)
            label = torch.as_tensor(label, device=self.device)
            for c in range(1, self.num_classes):
                p, g = predicted == c, label == c
                denominator = p.sum() + g.sum()
                scores.append(2 * (p & g).sum() / denominator if denominator > 0 else torch.tensor(0.0))
        model.train(was_training)
        scores = [float(s) for s in scores]
        if self.gather is not None:
            scores = [s for part in self.gather(scores) for s in part]
        return sum(scores) / len(scores)
