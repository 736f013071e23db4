"""The pictures of a reproduction grid (matplotlib, imported here only):

* ``training_curves``: supervised loss, consistency loss, consistency weight and validation Dice
  against the iteration, one line per method and label count (mean over seeds);
* ``comparison_figure``: a few evaluation cases, each on the axial and coronal slice with the most
  ground truth, with the ground truth and each method's outline.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluation.overlay import fullest_slices, slice_view  # noqa: E402
from evaluation.predictor import trained_data  # noqa: E402
from grid.results import case_dice  # noqa: E402
from utils.checkpoint import load_checkpoint, load_network, trained_settings  # noqa: E402
from utils.device import select_device  # noqa: E402
from utils.metrics import keep_largest_component_per_class  # noqa: E402
from utils.sliding_window import sliding_window_predict  # noqa: E402

PANELS = (("loss/supervised", "supervised loss"), ("loss/consistency", "consistency loss"),
          ("train/consistency_weight", "consistency weight"), ("val/dice", "validation Dice"))
COLOURS = {"SUP": "tab:blue", "MT": "tab:red", "UAMT": "tab:orange", "BCP": "tab:green"}
LINESTYLES = ("-", "--", ":", "-.")
OUTLINE_COLOURS = ("lime", "deepskyblue", "red", "orange", "magenta")  # ground truth, then each model


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


def training_curves(curves: dict, dataset: str, path: Path) -> Path:
    """One panel per scalar of PANELS, a line per method and labelnum (mean over seeds).
    ``curves``: {Run: {scalar name: {iteration: value}}}."""
    runs = list(curves)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    labelnums = sorted({r.labelnum for r in runs})
    for method in COLOURS:
        for number, labelnum in enumerate(labelnums):
            chosen = [r for r in runs if r.method == method and r.labelnum == labelnum]
            if not chosen:
                continue
            scalars = [curves[r] for r in chosen]
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


def comparison_figure(models: list[tuple[str, Path, Path]], *, root, case_ids: list[str], gpu: str, title: str,
                      path: Path) -> Path:
    """``case_ids`` on the axial and coronal slices with the most ground truth: the ground
    truth and each model's prediction outlined. ``models``: (name, checkpoint, the folder of
    its evaluation by inference.py), whose windows and per-case Dice the figure reuses."""
    device = select_device(gpu)
    evaluated = json.loads((Path(models[0][2]) / "summary.json").read_text())
    patch, strides = evaluated["patch_size"], (evaluated["stride_xy"], evaluated["stride_z"])
    checkpoints = [load_checkpoint(checkpoint, map_location="cpu") for _, checkpoint, _ in models]
    # each model sees the images as its run did (per-case z-score, as stored, a CT plan's clip)
    settings = [trained_settings(c) for c in checkpoints]
    normalizations = [json.dumps([s.normalize, s.intensity], sort_keys=True) for s in settings]
    readers = {n: trained_data(s, root) for n, s in zip(normalizations, settings)}
    data = readers[normalizations[0]]
    networks = [load_network(c, path, teacher=False, num_classes=data.num_classes, device=device)
                for c, (_, path, _) in zip(checkpoints, models)]
    dice = [case_dice(eval_dir) for _, _, eval_dir in models]
    largest_component = [json.loads((Path(eval_dir) / "summary.json").read_text()).get("lcc", False)
                         for _, _, eval_dir in models]
    outlines = list(zip(OUTLINE_COLOURS, ["ground truth"] + [name for name, _, _ in models]))
    fig, axes = plt.subplots(len(case_ids), 2, figsize=(8, 4 * len(case_ids)), squeeze=False)
    for row, case_id in zip(axes, case_ids):
        volumes = {n: reader.read(case_id) for n, reader in readers.items()}  # one read per normalization
        image, label = volumes[normalizations[0]]
        with torch.no_grad():
            preds = [sliding_window_predict(net, volumes[n][0], patch_size=patch, stride_xy=strides[0],
                                            stride_z=strides[1], num_classes=data.num_classes, device=device)[1]
                     .cpu().numpy() for net, n in zip(networks, normalizations)]
        preds = [keep_largest_component_per_class(p, data.num_classes) if lcc else p  # as the Dice shown was scored
                 for p, lcc in zip(preds, largest_component)]
        slices = fullest_slices(label, preds[0])
        model_scores = [f"{name} {100 * d[case_id]:.1f}" for (name, _, _), d in zip(models, dice)]
        scores = ",\n".join(", ".join(model_scores[i:i + 2])  # two a line: four methods fit above a panel
                              for i in range(0, len(model_scores), 2))
        for ax, axis, view in zip(row, (2, 1), ("axial", "coronal")):
            ax.imshow(slice_view(image, axis, slices[axis]), cmap="gray")
            for (colour, _), mask in zip(outlines, (label, *preds)):
                plane = slice_view(mask, axis, slices[axis])
                for c in range(1, data.num_classes):
                    if (plane == c).any():
                        ax.contour(plane == c, levels=[0.5], colors=colour, linewidths=1.2)
            ax.set_title(f"{case_id} {view} {slices[axis]}\nDice {scores}", fontsize=9)
            ax.axis("off")
    handles = [plt.Line2D([], [], color=colour, label=name) for colour, name in outlines]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
