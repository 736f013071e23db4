"""Evaluate a trained model on the test cases: sliding-window prediction of each whole
volume, then Dice, Jaccard, 95HD and ASD per foreground class.

    python inference.py --dataset_name LA --exp vnet --model MT --labelnum 16

finds ``model/LA_vnet_16_labeled/MT/`` and its last ``iter_N.pth`` (or pass ``--checkpoint``,
``--iteration N``, ``--use_best``), and writes ``metrics.csv``, ``summary.json`` and the
console table to ``<run>/test/`` (or ``--out``). Empty predictions are never counted as
perfect: their Dice and Jaccard are 0, their 95HD and ASD are NaN and left out of those
means, and the summary says how many there were.
"""
import argparse
import csv
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataloaders.case_lists import read_case_list
from dataloaders.datasets import dataset_defaults
from dataloaders.la_heart import check_root, read_case
from networks.vnet import VNet
from utils.checkpoint import load_checkpoint
from utils.device import amp_dtype, runtime_versions, select_device
from utils.errors import UserError, report_user_errors
from utils.metrics import keep_largest_component_per_class, multiclass_metrics
from utils.run_folder import run_folder_path
from utils.sliding_window import sliding_window_predict

METRICS = ("dice", "jaccard", "hd95", "asd")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="LA")
    p.add_argument("--root_path", default=None, help="folder of case sub-folders (default: the dataset's)")
    p.add_argument("--test_list", default=None, help="case IDs to evaluate (default: <root>/../test.list)")
    p.add_argument("--exp", default="vnet")
    p.add_argument("--model", default="MT")
    p.add_argument("--labelnum", type=int, default=25)
    p.add_argument("--checkpoint", default=None, help="a checkpoint file (instead of the run folder's)")
    p.add_argument("--iteration", type=int, default=None, help="evaluate iter_N.pth")
    p.add_argument("--use_best", action="store_true", help="evaluate best_model.pth (chosen on --val_list)")
    p.add_argument("--teacher", action="store_true", help="evaluate the EMA teacher instead of the student")
    p.add_argument("--patch_size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"))
    p.add_argument("--stride_xy", type=int, default=18)
    p.add_argument("--stride_z", type=int, default=4)
    p.add_argument("--sw_batch", type=int, default=8, help="windows per forward pass")
    p.add_argument("--amp", type=int, default=1, help="bf16/fp16 autocast on CUDA")
    p.add_argument("--lcc", action="store_true", help="keep the largest connected component of each class")
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="voxel size in mm for 95HD and ASD (default: voxel units, as published LA numbers)")
    p.add_argument("--save_pred", action="store_true", help="write prediction, image and label as NIfTI")
    p.add_argument("--out", default=None, help="output folder (default: <run folder>/test)")
    p.add_argument("--gpu", default="0")
    return p.parse_args()


def find_checkpoint(args) -> Path:
    """--checkpoint, else iter_N / best_model / the last iter_N.pth of the run folder."""
    if args.checkpoint:
        return Path(args.checkpoint)
    run = run_folder_path(args.dataset_name, args.exp, args.labelnum, args.model)
    if not run.is_dir():
        raise UserError(f"run folder not found: {run} (check --dataset_name/--exp/--labelnum/--model, "
                        "or pass --checkpoint)")
    if args.use_best:
        return run / "best_model.pth"
    if args.iteration is not None:
        return run / f"iter_{args.iteration}.pth"
    snapshots = sorted(run.glob("iter_*.pth"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
    if not snapshots:
        raise UserError(f"no iter_N.pth checkpoint in {run}; has the training finished a save?")
    return snapshots[-1]


def load_network(checkpoint: dict, path: Path, teacher: bool, num_classes: int, device) -> torch.nn.Module:
    config = checkpoint.get("network")
    weights = checkpoint.get("teacher" if teacher else "student")
    if config is None or weights is None:
        what = "a teacher (trained with train_sup.py?)" if teacher and config else "network weights"
        raise UserError(f"{path} holds no {what}; pass a checkpoint written by this repository's training scripts")
    if config["n_classes"] != num_classes:
        raise UserError(f"{path} predicts {config['n_classes']} classes but the dataset has {num_classes}; "
                        "pick the checkpoint trained on this dataset")
    model = VNet(**config).to(device)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(f"{path} does not match the network: {str(err).splitlines()[0]}") from None
    return model.eval()


def summarize(rows: list[dict], num_classes: int) -> dict:
    """Mean and std of each metric per class; 95HD/ASD over the cases where both masks exist."""
    summary = {}
    for c in range(1, num_classes):
        class_rows = [r for r in rows if r["class"] == c]
        stats = {}
        for metric in METRICS:
            values = np.array([r[metric] for r in class_rows], dtype=float)
            finite = values[~np.isnan(values)]
            stats[metric] = {"mean": float(finite.mean()) if finite.size else math.nan,
                             "std": float(finite.std()) if finite.size else math.nan, "cases": int(finite.size)}
        stats["empty_predictions"] = sum(r["empty_pred"] for r in class_rows)
        stats["empty_ground_truth"] = sum(r["empty_gt"] for r in class_rows)
        summary[f"class_{c}"] = stats
    return summary


def save_nifti(volume: np.ndarray, path: Path, spacing) -> None:
    import nibabel as nib  # only needed for --save_pred
    nib.save(nib.Nifti1Image(volume, np.diag([*(spacing or (1.0, 1.0, 1.0)), 1.0])), str(path))


@report_user_errors
def main():
    args = parse_args()
    defaults = dataset_defaults(args.dataset_name)
    root = check_root(args.root_path or defaults.root_path)
    patch_size = tuple(args.patch_size or defaults.patch_size)
    for name, stride, size in (("--stride_xy", args.stride_xy, min(patch_size[:2])), ("--stride_z", args.stride_z, patch_size[2])):
        if not 1 <= stride <= size:
            raise UserError(f"{name} must be between 1 and the patch size {size}, got {stride}")
    test_list = args.test_list or str(root.parent / "test.list")
    case_ids = read_case_list(test_list)
    missing = [c for c in case_ids if not (root / c).is_dir()]
    if missing:
        raise UserError(f"{len(missing)} case(s) of {test_list} are not in {root}: {', '.join(missing[:5])}")

    device = select_device(args.gpu)
    path = find_checkpoint(args)
    checkpoint = load_checkpoint(path, map_location=device)
    model = load_network(checkpoint, path, args.teacher, defaults.num_classes, device)
    num_classes = defaults.num_classes
    autocast = amp_dtype(device, bool(args.amp))
    out = Path(args.out) if args.out else path.parent / "test"
    out.mkdir(parents=True, exist_ok=True)
    print(f"evaluating {path} ({'teacher' if args.teacher else 'student'}, iteration {checkpoint.get('iteration')}) "
          f"on {len(case_ids)} cases of {test_list}, device {device}")

    rows = []
    for case_id in tqdm(case_ids, desc="cases", dynamic_ncols=True, disable=None):  # no bar when piped
        image, label = read_case(root, case_id)
        if label.max() >= num_classes:
            raise UserError(f"case {case_id}: label value {int(label.max())} is outside the {num_classes} classes "
                            f"of {args.dataset_name}")
        start = time.perf_counter()
        _, predicted = sliding_window_predict(model, image, patch_size, args.stride_xy, args.stride_z, num_classes,
                                              device, sw_batch=args.sw_batch, amp_dtype=autocast)
        predicted = predicted.cpu().numpy().astype(np.uint8)
        predict_seconds = time.perf_counter() - start
        if args.lcc:
            predicted = keep_largest_component_per_class(predicted, num_classes)
        case_metrics = multiclass_metrics(predicted, label, num_classes, spacing=args.spacing)
        seconds = time.perf_counter() - start
        for m in case_metrics:
            rows.append({"case": case_id, **m, "predict_s": round(predict_seconds, 3), "total_s": round(seconds, 3)})
            if m["empty_pred"] or m["empty_gt"]:
                tqdm.write(f"warning: case {case_id} class {m['class']}: "
                           f"{'empty prediction' if m['empty_pred'] else 'empty ground truth'}")
        tqdm.write(f"{case_id}: " + ", ".join(f"class {m['class']} Dice {m['dice']:.4f}" for m in case_metrics)
                   + f" ({seconds:.2f} s)")
        if args.save_pred:
            save_nifti(predicted, out / f"{case_id}_pred.nii.gz", args.spacing)
            save_nifti(image, out / f"{case_id}_img.nii.gz", args.spacing)
            save_nifti(label, out / f"{case_id}_gt.nii.gz", args.spacing)

    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"checkpoint": str(path), "iteration": checkpoint.get("iteration"),
               "model": "teacher" if args.teacher else "student", "lcc": args.lcc,
               "units": "mm" if args.spacing else "voxels", "cases": len(case_ids),
               "empty_masks": "Dice and Jaccard 0; 95HD and ASD NaN and left out of their means",
               "classes": summarize(rows, num_classes), "flags": vars(args), "runtime": runtime_versions()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    print(f"\n{'class':>6} " + " ".join(f"{m:>15}" for m in METRICS) + "   empty pred/gt")
    for name, stats in summary["classes"].items():
        cells = [f"{stats[m]['mean'] * (100 if m in ('dice', 'jaccard') else 1):7.2f} ± "
                 f"{stats[m]['std'] * (100 if m in ('dice', 'jaccard') else 1):5.2f}" for m in METRICS]
        print(f"{name[6:]:>6} " + " ".join(f"{c:>15}" for c in cells)
              + f"   {stats['empty_predictions']}/{stats['empty_ground_truth']}")
    print(f"(Dice and Jaccard in %, 95HD and ASD in {summary['units']}; lcc {'on' if args.lcc else 'off'}) "
          f"written to {out}")


if __name__ == "__main__":
    main()
