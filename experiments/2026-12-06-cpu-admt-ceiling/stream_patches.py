"""Diagnostic (not part of the toolkit): Dice per foreground class of a Hippocampus checkpoint's
student on patches of a training batch stream (20 batches, seed 7: rotated, mirrored, cropped as
training made them), scored on the batches' labeled places, three ways: eval mode on those
patches alone; train mode on labeled, weak and strong patches in one pass as AD-MT's student
sees them; the same with dropout off. ``labeled``: the run's 17 labeled cases in the labeled
places; ``unlabeled``: 17 of its unlabeled cases (their labels read from disk) instead.

    python stream_patches.py <checkpoint> labeled|unlabeled

Reads ../shared/data/Hippocampus as /work/shared/data/Hippocampus. The figures in
stream_patches_admt_hippocampus.txt came from a97c54d's batch stream (every patch mirrored);
from 98c12a3 on, the stream also holds the scans as stored.
"""
import sys
import numpy as np, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dataloaders.batches import make_training_batches, BatchSettings
from evaluation.predictor import Predictor
from dataloaders.datasets import data_folder
from utils.intensity_perturbation import strong_intensity_view
torch.set_num_threads(1)
path = sys.argv[1]
ck = torch.load(path, map_location="cpu", weights_only=False)
net = Predictor(ck, path, device=torch.device("cpu")).model
data = data_folder("/work/shared/data/Hippocampus", "case")
s = BatchSettings(batch_size=4, labeled_bs=2, patch_size=(32, 48, 32), seed=7)
ids = list(ck["labeled_ids"]) if sys.argv[2] == "labeled" else list(ck["unlabeled_ids"])[:17]
rest = list(ck["unlabeled_ids"])[17:]
stream = make_training_batches(data, ids, rest, s, device=torch.device("cpu"))
def d1(logits, label):
    p = logits.argmax(1)
    return [(2 * ((p == c) & (label == c)).sum() / max(((p == c).sum() + (label == c).sum()).item(), 1)).item() for c in (1, 2)]
res = {"eval, labeled alone": [], "train mode, batch of 6": [], "train mode, dropout off, batch of 6": []}
with torch.no_grad():
    for _ in range(20):
        image, label = next(stream)
        lab, weak = image[:2], image[2:]
        net.eval(); res["eval, labeled alone"].append(d1(net(lab), label[:2]))
        net.train(); res["train mode, batch of 6"].append(d1(net(torch.cat([image, strong_intensity_view(weak)]))[:2], label[:2]))
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout3d): m.eval()
        res["train mode, dropout off, batch of 6"].append(d1(net(torch.cat([image, strong_intensity_view(weak)]))[:2], label[:2]))
for k, v in res.items():
    print(path.split("/")[-1], sys.argv[2], k, "Dice % per foreground class:", np.round(100 * np.mean(v, 0), 1))
