"""Diagnostic (not part of the toolkit): Dice per foreground class of a Hippocampus checkpoint's
student on patches of a training batch stream (20 batches, seed 7: rotated, mirrored, cropped as
training made them), scored on the batches' labeled places, three ways: eval mode on those
patches alone; train mode on labeled, weak and strong patches in one pass as AD-MT's student
sees them; the same with dropout off. ``labeled``: the run's 17 labeled cases in the labeled
places; ``unlabeled``: 17 of its unlabeled cases (their labels read from disk) instead.

    python stream_patches.py <checkpoint> <data root> labeled|unlabeled

The figures in stream_patches_admt_hippocampus.txt came from a97c54d's batch stream (every
patch mirrored); from 98c12a3 on, the stream also holds the scans as stored.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dataloaders.batches import BatchSettings, make_training_batches  # noqa: E402
from dataloaders.datasets import data_folder  # noqa: E402
from evaluation.predictor import Predictor  # noqa: E402
from utils.intensity_perturbation import strong_intensity_view  # noqa: E402
from utils.metrics import dice as mask_dice  # noqa: E402


def class_dice(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Dice of classes 1 and 2 over the batch."""
    predicted, labels = logits.argmax(1).numpy(), labels.numpy()
    return [mask_dice(predicted == c, labels == c) for c in (1, 2)]


def main():
    checkpoint_path, root, which = sys.argv[1:4]
    torch.set_num_threads(1)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    net = Predictor(checkpoint, checkpoint_path, device=torch.device("cpu")).model
    unlabeled = list(checkpoint["unlabeled_ids"])
    scored = list(checkpoint["labeled_ids"]) if which == "labeled" else unlabeled[:17]
    stream = make_training_batches(data_folder(root, "case"), scored, unlabeled[17:],
                                   BatchSettings(batch_size=4, labeled_bs=2, patch_size=(32, 48, 32), seed=7),
                                   device=torch.device("cpu"))
    results = {"eval, labeled alone": [], "train mode, batch of 6": [], "train mode, dropout off, batch of 6": []}
    with torch.no_grad():
        for _ in range(20):
            image, label = next(stream)
            labeled, weak = image[:2], image[2:]
            net.eval()
            results["eval, labeled alone"].append(class_dice(net(labeled), label[:2]))
            net.train()
            results["train mode, batch of 6"].append(
                class_dice(net(torch.cat([image, strong_intensity_view(weak)]))[:2], label[:2]))
            for module in net.modules():
                if isinstance(module, torch.nn.Dropout3d):
                    module.eval()
            results["train mode, dropout off, batch of 6"].append(
                class_dice(net(torch.cat([image, strong_intensity_view(weak)]))[:2], label[:2]))
    for way, values in results.items():
        print(Path(checkpoint_path).name, which, way, "Dice % per foreground class:", np.round(100 * np.mean(values, 0), 1))


if __name__ == "__main__":
    main()
