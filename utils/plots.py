"""The pictures of a reproduction grid (matplotlib, imported here only):

* ``training_curves``: supervised loss, consistency loss, consistency weight and validation Dice
  against the iteration, one line per method and label count (mean over seeds);
* ``comparison_figure``: a few evaluation cases, each on the axial and coronal slice with the most
  ground truth, with the ground truth, labeled-only and Mean Teacher outlines.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataloaders.case_lists import read_case_list  # noqa: E402
from dataloaders.datasets import case_format  # noqa: E402
from utils.checkpoint import load_checkpoint  # noqa: E402
from utils.device import select_device  # noqa: E402
from utils.run_folder import read_scalars, run_folder_path  # noqa: E402
from utils.sliding_window import sliding_window_predict  # noqa: E402

PANELS = (("loss/supervised", "supervised loss"), ("loss/consistency", "consistency loss"),
          ("train/consistency_weight", "consistency weight"), ("val/dice", "validation Dice"))
COLOURS = {"SUP": "tab:blue", "MT": "tab:red"}
LINESTYLES = ("-", "--", ":", "-.")
OUTLINES = (("ground truth", "lime"), ("labeled-only", "deepskyblue"), ("Mean Teacher", "red"))


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (fewer at the start)."""
    if window <= 1:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (cumulative[end] - cumulative[start]) / (end - start)


def seed_mean(curves: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Iterations logged by every seed, and the mean value over seeds there."""
    common = sorted(set.intersection(*(set(c) for c in curves)))
    return np.array(common), np.array([np.mean([c[i] for c in curves]) for i in common])


def training_curves(runs, dataset: str, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    labelnums = sorted({r.labelnum for r in runs})
    for method in COLOURS:
        for number, labelnum in enumerate(labelnums):
            chosen = [r for r in runs if r.method == method and r.labelnum == labelnum]
            if not chosen:
                continue
            scalars = [read_scalars(run_folder_path(dataset, r.exp, r.labelnum, r.method)) for r in chosen]
            for ax, (tag, title) in zip(axes, PANELS):
                if not all(tag in s for s in scalars):
                    continue
                x, y = seed_mean([s[tag] for s in scalars])
                if tag.startswith("loss"):
                    y = smooth(y, max(len(y) // 60, 1))
                ax.plot(x, y, color=COLOURS[method], linestyle=LINESTYLES[number % len(LINESTYLES)],
                        marker="o" if tag == "val/dice" else None, markersize=3,
                        label=f"{method} {labelnum} labeled ({len(chosen)} seeds)")
    for ax, (tag, title) in zip(axes, PANELS):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: training curves (mean over seeds; losses smoothed)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _predict(checkpoint_path: Path, image: np.ndarray, patch, strides, num_classes: int, device) -> np.ndarray:
    from inference import load_network  # the evaluation's own loader and checks

    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    model = load_network(checkpoint, checkpoint_path, False, num_classes, device)
    _, labels = sliding_window_predict(model, image, patch, *strides, num_classes, device)
    return labels.cpu().numpy()


def _dice(pred: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    scores = []
    for c in range(1, num_classes):
        p, g = pred == c, label == c
        total = p.sum() + g.sum()
        scores.append(2 * (p & g).sum() / total if total else 0.0)
    return float(np.mean(scores))


def comparison_figure(args, labelnum: int, seed: int, path: Path) -> Path:
    """The first ``args.figure_cases`` evaluation cases, predicted by the last checkpoints of
    the labeled-only and Mean Teacher students trained with ``labelnum`` labels and ``seed``."""
    data = case_format(args.root_path)
    evaluated = json.loads((args.out / "eval" / f"MT_{labelnum}_s{seed}" / "summary.json").read_text())
    patch, strides = evaluated["patch_size"], (evaluated["stride_xy"], evaluated["stride_z"])  # as evaluated
    device = select_device(args.gpu)
    exp = f"{args.exp}{args.max_iterations}_s{seed}"
    checkpoints = [run_folder_path(args.dataset_name, exp, labelnum, m) / f"iter_{args.max_iterations}.pth"
                   for m in ("SUP", "MT")]
    cases = read_case_list(args.eval_list)[:args.figure_cases]
    fig, axes = plt.subplots(len(cases), 2, figsize=(8, 4 * len(cases)), squeeze=False)
    for row, case_id in zip(axes, cases):
        image, label = data.read(args.root_path, case_id)
        with torch.no_grad():
            preds = [_predict(c, image, patch, strides, data.num_classes, device) for c in checkpoints]
        scores = [_dice(p, label, data.num_classes) for p in preds]
        foreground = label > 0
        for ax, axis, view in zip(row, (2, 1), ("axial", "coronal")):
            counts = foreground.sum(axis=tuple(a for a in range(3) if a != axis))
            index = int(counts.argmax())
            take = lambda v: np.take(v, index, axis=axis).T  # noqa: E731  (rows: Y or Z)
            ax.imshow(take(image), cmap="gray", origin="lower" if axis == 1 else "upper")
            for (name, colour), mask in zip(OUTLINES, (label, *preds)):
                for c in range(1, data.num_classes):
                    if (take(mask) == c).any():
                        ax.contour(take(mask) == c, levels=[0.5], colors=colour, linewidths=1.2,
                                   origin="lower" if axis == 1 else "upper")
            ax.set_title(f"{case_id} {view} {index}\nDice labeled-only {100 * scores[0]:.1f}, "
                         f"Mean Teacher {100 * scores[1]:.1f}", fontsize=9)
            ax.axis("off")
    handles = [plt.Line2D([], [], color=colour, label=name) for name, colour in OUTLINES]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9)
    fig.suptitle(f"{args.dataset_name}, {labelnum} labeled, seed {seed}: last checkpoints", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
