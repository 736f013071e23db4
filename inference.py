"""Evaluate a trained model on the test cases: sliding-window prediction of each whole
volume, then Dice, Jaccard, 95HD and ASD per foreground class.

    python inference.py --dataset_name LA --exp vnet --model MT --labelnum 16

finds ``model/LA_vnet_16_labeled/MT/`` and its last ``iter_N.pth`` (or pass ``--checkpoint``,
``--iteration N``, ``--use_best``), and writes to ``<run>/test/`` (or ``--out``; other
checkpoints, ``--teacher`` and ``--lcc`` get their own folders: ``test_teacher``,
``test_iter_2000``, ``test_lcc``, ...):

    metrics.csv     one row per case and foreground class, with the seconds it took
    summary.json    mean and std of each metric, the checkpoint, iteration and all flags
    log.txt         the console output: one line per case, then the table
    <ID>_pred.nii.gz, <ID>_img.nii.gz, <ID>_gt.nii.gz    with --save_pred
    <ID>_overlay.png    with --save_png: fullest axial, coronal and sagittal slices, ground
                        truth outlined in green, prediction in red (yellow where they agree)
    uncertainty_vs_dice.png    with --uncertainty: each case's uncertainty score against its
                        Dice; metrics.csv gets the score columns, summary.json their rank
                        correlation (``evaluation.uncertainty``: the segmentations and their
                        metrics stay those of the run without the flag)

Every test case is checked before the first prediction (readable, 3D, finite image, labels
inside the classes), and none may be one of the checkpoint's training cases unless
``--allow_overlap`` (then summary.json and the table flag them). The outputs appear in the
folder only when the evaluation has finished; a finished evaluation there is replaced only
with ``--overwrite``, and one evaluation at a time writes a folder.

Empty predictions are never counted as perfect: their Dice and Jaccard are 0, their 95HD and
ASD are NaN and left out of those means, and the summary says how many there were (the same
for an empty ground truth).
"""
import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataloaders.case_lists import read_case_list
from dataloaders.check_data import check_cases
from dataloaders.datasets import DATASETS, dataset_label
from dataloaders.la_heart import check_root
from dataloaders.msd import save_nifti
from dataloaders.resampling import differs, prediction_tolerance
from evaluation.cases import check_overlap, training_cases
from evaluation.output_folder import EvaluationFolder
from evaluation.outputs import Log, json_ready
from evaluation.predictor import Predictor, check_window_settings, default_window, network_strides, trained_data
from evaluation.report import summarize, table
from evaluation.uncertainty_report import failure_detection, plot_score_against_dice
from training.run_folder import find_run_folder, run_checkpoint
from utils.checkpoint import load_checkpoint, trained_settings
from utils.device import precision_text, runtime_versions, select_device
from utils.distributed import ranks_from_environment
from utils.errors import ArgumentParser, UserError, report_user_errors, require_folder_or_nothing
from utils.metrics import EMPTY_MASK_RULE, multiclass_metrics
from utils.sliding_window import sliding_window_predict

# Voxel size written into the NIfTI affine when --spacing is not given (the UA-MT LA volumes
# are crops of the 0.625 mm isotropic challenge scans, not resampled).
VOXEL_SIZE_MM = {"LA": (0.625, 0.625, 0.625)}


def parse_args():
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # errors in one line
    data = p.add_argument_group("data and run folder (the training scripts' flags)")
    data.add_argument("--dataset_name", default=None,
                      help="the run folder's dataset (default: LA, or an MSD --root_path's folder name)")
    data.add_argument("--root_path", default=None,
                      help="folder of case sub-folders (h5), or an MSD folder with dataset.json (default: the dataset's)")
    data.add_argument("--test_list", default=None,
                      help="case IDs to evaluate (default: test.list beside the case folders, or in the MSD folder)")
    data.add_argument("--exp", default="vnet")
    data.add_argument("--model", default="MT")
    data.add_argument("--labelnum", type=int, default=None,
                      help="the run's labeled cases, part of its folder (default: the one run folder of --exp)")
    data.add_argument("--allow_overlap", action="store_true",
                      help="score test cases the checkpoint was trained on (refused otherwise; flagged in the outputs)")
    ckpt = p.add_argument_group("checkpoint (default: the last iter_N.pth of the run folder)")
    ckpt.add_argument("--checkpoint", default=None, help="a checkpoint file (instead of the run folder's)")
    ckpt.add_argument("--iteration", type=int, default=None, help="evaluate the run folder's iter_N.pth")
    ckpt.add_argument("--use_best", action="store_true", help="evaluate best_model.pth (chosen on --val_list)")
    ckpt.add_argument("--teacher", action="store_true", help="evaluate the EMA teacher instead of the student")
    sw = p.add_argument_group("sliding window")
    sw.add_argument("--patch_size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                    help="window size in voxels (default: the patch the checkpoint was trained on)")
    sw.add_argument("--stride_xy", type=int, default=None,
                    help="window step along X and Y, voxels (default: the run's, its plan's or dataset's; LA: 18)")
    sw.add_argument("--stride_z", type=int, default=None, help="window step along Z, voxels (default: the run's; LA: 4)")
    sw.add_argument("--sw_batch", type=int, default=8, help="windows per forward pass")
    sw.add_argument("--amp", type=int, default=None,
                    help="1: bf16/fp16 autocast on CUDA, bf16 on CPUs with bf16 units; 0: fp32 "
                         "(default: 1 on a GPU, 0 on a CPU)")
    sw.add_argument("--channels_last", type=int, default=1, help="channels_last_3d memory layout (0: NCDHW)")
    sw.add_argument("--gpu", default="0")
    out = p.add_argument_group("post-processing and outputs")
    out.add_argument("--lcc", action="store_true",
                     help="keep the largest connected component of each class (off by default)")
    out.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                     help="voxel size in mm for 95HD and ASD (default: voxel units, as published LA numbers) "
                          "and the NIfTI files")
    out.add_argument("--save_pred", action="store_true", help="write prediction, image and label as NIfTI")
    out.add_argument("--save_png", action="store_true", help="write an overlay picture of each case")
    out.add_argument("--uncertainty", action="store_true",
                     help="also score each case's uncertainty (x/y-mirrored passes: 4x the prediction time), "
                          "its correlation with Dice and uncertainty_vs_dice.png")
    out.add_argument("--out", default=None, help="output folder (default: <run folder>/test)")
    out.add_argument("--overwrite", action="store_true",
                     help="replace a finished evaluation in the output folder (refused otherwise)")
    return p.parse_args()


def check_args(args, patch_size, strides) -> None:
    """Flags that cannot work, each reported as one line before any case is read
    (``args.stride_xy``/``stride_z`` already resolved to the run's; ``strides``: the VNet's)."""
    check_window_settings(patch_size, args.stride_xy, args.stride_z, args.sw_batch, strides)
    if args.spacing is not None and not all(math.isfinite(s) and s > 0 for s in args.spacing):
        raise UserError(f"--spacing must be three positive numbers (mm), got {args.spacing}")


def find_checkpoint(args) -> Path:
    """--checkpoint, else iter_N / best_model / the last iter_N.pth of the run folder."""
    if args.checkpoint and (args.iteration is not None or args.use_best):
        raise UserError("--checkpoint names the file itself; drop --iteration/--use_best")
    if args.iteration is not None and args.use_best:
        raise UserError("give either --iteration or --use_best, not both")
    if args.checkpoint:
        return Path(args.checkpoint)
    return run_checkpoint(find_run_folder(dataset_label(args.dataset_name, args.root_path), args.exp, args.labelnum,
                                          args.model), args.iteration, best=args.use_best)


def default_out(args, path: Path) -> Path:
    """``<run>/test`` for the student of the last snapshot; other evaluations get their own
    folder (``test_teacher``, ``test_iter_2000``, ``test_best_model_lcc``, ...); another test
    list, spacing or stride replaces the evaluation in the same folder unless ``--out`` is given."""
    parts = ["test"]
    if args.checkpoint or args.iteration is not None or args.use_best:
        parts.append(path.stem)
    parts += ["teacher"] * args.teacher + ["lcc"] * args.lcc
    return path.parent / "_".join(parts)


def voxel_size(args, data, case_id) -> tuple:
    """The voxel size (mm) for the NIfTI files: --spacing, else the case file's, else the dataset's."""
    if args.spacing:
        return tuple(args.spacing)
    if data.has_spacing:
        return tuple(data.spacing(case_id))
    return VOXEL_SIZE_MM.get(dataset_label(args.dataset_name, args.root_path), (1.0, 1.0, 1.0))


def nifti_voxel_size_note(args, data):
    """What ``voxel_size`` gives, for summary.json: a list (mm), or where it comes from."""
    if args.spacing:
        return list(args.spacing)
    if data.has_spacing:
        return "each case's image header"
    return list(VOXEL_SIZE_MM.get(dataset_label(args.dataset_name, args.root_path), (1.0, 1.0, 1.0)))


def resolve_data(args, checkpoint: dict) -> tuple:
    """The window (the flags', else the checkpoint's run's: ``default_window``) and the data
    folder (--root_path, else the named dataset's), its images read as the run read its own;
    returns (patch_size, the data folder) and sets ``args.stride_xy``/``stride_z``."""
    settings = trained_settings(checkpoint)
    patch_size, args.stride_xy, args.stride_z = default_window(checkpoint, args.patch_size, args.stride_xy,
                                                               args.stride_z)
    dataset = DATASETS.get(args.dataset_name or settings.dataset_name)
    if args.root_path is None and dataset is None:
        raise UserError(f"the checkpoint was trained on {settings.dataset_name or 'data'} that is not a named dataset; "
                        "pass its folder with --root_path")
    root = check_root(args.root_path or dataset.root_path)
    return patch_size, trained_data(settings, root)  # the h5 layout or an MSD folder


def images_text(data) -> str:
    """How the images are normalised, for the log."""
    if data.intensity and data.intensity.get("scheme") == "ct":
        return "images clipped to {lower:.1f}..{upper:.1f} and z-scored with {mean:.1f}/{std:.1f} (CT plan)".format(
            **data.intensity)
    return "images z-scored per case" if data.kind == "msd" or data.normalize == "case" else "images as stored"


def uncertainty_summary(rows: list[dict], folder: Path, title: str) -> dict:
    """Per case, the scan's uncertainty score against its mean Dice over the foreground classes:
    ``failure_detection`` of the two, and the picture of it (uncertainty_vs_dice.png)."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    scores = [next(r["scan_uncertainty"] for r in rows if r["case"] == c) for c in cases]
    dice = [float(np.mean([r["dice"] for r in rows if r["case"] == c])) for c in cases]
    plot_score_against_dice(folder / "uncertainty_vs_dice.png", cases, scores, dice,
                            title=title)
    return {"score": "the mean of the expected Dice error and the mirrored passes' disagreement (evaluation.uncertainty)",
            **failure_detection(cases, scores, dice)}


@report_user_errors
def main():
    args = parse_args()
    path = find_checkpoint(args)
    checkpoint = load_checkpoint(path, map_location="cpu")
    patch_size, data = resolve_data(args, checkpoint)
    check_args(args, patch_size, network_strides(checkpoint))
    num_classes = data.num_classes
    test_list = str(data.list_file(args.test_list) if args.test_list else data.lists_dir / "test.list")
    case_ids = read_case_list(test_list)
    missing = [c for c in case_ids if not data.case_file(c).is_file()]
    if missing:
        raise UserError(f"{len(missing)} case(s) of {test_list} are not in {data.root}: {', '.join(missing[:5])}"
                        f"{', ...' if len(missing) > 5 else ''}")
    # a labeled-only run (no teacher) never saw its list's unlabeled cases
    trained, trained_source = training_cases(checkpoint, with_unlabeled=checkpoint.get("teacher") is not None)
    overlap = check_overlap(case_ids, trained, trained_source, test_list=test_list, allowed=args.allow_overlap)

    ranks = ranks_from_environment()  # under torchrun each process evaluates every N-th case
    device = ranks.device(select_device(args.gpu))
    ranks.start(device)
    # the window function is passed by this module's name for it, which the tests watch
    predictor = Predictor(checkpoint, path, device=device, teacher=args.teacher, num_classes=num_classes,
                          patch_size=patch_size, stride_xy=args.stride_xy, stride_z=args.stride_z,
                          sw_batch=args.sw_batch, amp=args.amp, channels_last=bool(args.channels_last), lcc=args.lcc,
                          sliding_window=sliding_window_predict)
    settings = trained_settings(checkpoint)
    normalize = settings.normalize
    # a network trained at one voxel size (MSD cases resampled to it) predicts each case there
    trained_at = settings.spacing if data.has_spacing else None
    tolerance = prediction_tolerance(settings.resampled)
    iteration = checkpoint.get("iteration")
    del checkpoint  # the optimizer state is not needed
    autocast = predictor.amp_dtype
    out = Path(args.out) if args.out else default_out(args, path)
    require_folder_or_nothing(out)

    # One evaluation at a time in ``out`` (rank 0 holds it); the outputs grow in folder.staging.
    with EvaluationFolder(out, overwrite=args.overwrite, ranks=ranks) as folder:
        # every case checked (readable, 3D, finite, labels in the classes; all problems at once)
        # before the first prediction, on every rank, so all ranks stop alike; each keeps its share
        my_cases = case_ids[ranks.rank::ranks.world_size]
        volumes = check_cases(data, case_ids)[ranks.rank::ranks.world_size]
        log = Log(folder.staging / "log.txt", writes=ranks.is_main)
        log(f"evaluating {path} ({'teacher' if args.teacher else 'student'}, iteration {iteration}) on "
            f"{len(case_ids)} cases of {test_list}; device {device}, "
            f"{precision_text(device, args.amp)}{', channels_last_3d' if args.channels_last else ''}, "
            f"patch {patch_size}, "
            f"strides {args.stride_xy}/{args.stride_z}, lcc {'on' if args.lcc else 'off'}, "
            f"{images_text(data)}"
            + (f", cases split over {ranks.world_size} processes" if ranks.distributed else ""))
        log(f"overlap with the training cases not checked: {trained_source}" if overlap is None else
            f"trained on {trained_source}: {len(overlap)} of them among the test cases")
        if folder.replaces:
            log(f"replacing {folder.replaces} in {out} once this evaluation has finished")

        rows = []
        start_line = len(log.lines)
        progress = tqdm(my_cases, desc="cases", dynamic_ncols=True,
                        disable=None if ranks.is_main else True)  # no bar when piped
        for case_id, (image, label) in zip(progress, volumes):
            start = time.perf_counter()
            own_spacing = data.spacing(case_id) if trained_at else None
            resampled = bool(own_spacing and differs(own_spacing, trained_at, tolerance))
            if resampled:
                log(f"{case_id}: predicted at the training voxel size {trained_at} mm (its own: {own_spacing}) "
                    "and brought back to its grid")
            uncertainty = None
            if args.uncertainty:
                predicted, _, uncertainty = predictor.predict_with_uncertainty(
                    image, own_spacing if resampled else None, trained_at if resampled else None)
            elif resampled:
                predicted, _ = predictor.predict_at_spacing(image, own_spacing, trained_at)
            else:
                predicted, _ = predictor.predict(image)  # with --lcc, its time is in predict_s
            predict_seconds = time.perf_counter() - start
            start_metrics = time.perf_counter()
            case_metrics = multiclass_metrics(predicted, label, num_classes, spacing=args.spacing)
            metrics_seconds = time.perf_counter() - start_metrics
            seconds = time.perf_counter() - start
            for m in case_metrics:
                scores = {} if uncertainty is None else {
                    "uncertainty": round(uncertainty.per_class[m["class"] - 1], 6),
                    "expected_dice_error": round(uncertainty.expected_dice_error[m["class"] - 1], 6),
                    "flip_disagreement": round(uncertainty.flip_disagreement[m["class"] - 1], 6),
                    "scan_uncertainty": round(uncertainty.score, 6), "scan_entropy": round(uncertainty.entropy, 6)}
                rows.append({"case": case_id, **m, **scores, "lcc": args.lcc, "predict_s": round(predict_seconds, 3),
                             "metrics_s": round(metrics_seconds, 3), "total_s": round(seconds, 3)})
                if m["empty_pred"] or m["empty_gt"]:
                    log(f"warning: case {case_id} class {m['class']}: "
                        + " and ".join(w for w, e in (("empty prediction", m["empty_pred"]),
                                                      ("empty ground truth", m["empty_gt"])) if e)
                        + " (Dice 0, 95HD and ASD NaN)")
            log(f"{case_id}: " + ", ".join(f"class {m['class']} Dice {m['dice']:.4f} 95HD {m['hd95']:.2f} "
                                           f"ASD {m['asd']:.2f}" for m in case_metrics)
                + ("" if uncertainty is None else f", uncertainty {uncertainty.score:.4f}")
                + f" ({predict_seconds:.2f} s windows + {metrics_seconds:.2f} s metrics)")
            if args.save_pred:  # every rank writes its own cases into rank 0's staging folder
                nifti_spacing = voxel_size(args, data, case_id)
                save_nifti(predicted, folder.staging / f"{case_id}_pred.nii.gz", nifti_spacing)
                save_nifti(image, folder.staging / f"{case_id}_img.nii.gz", nifti_spacing)
                save_nifti(label, folder.staging / f"{case_id}_gt.nii.gz", nifti_spacing)
            if args.save_png:
                from evaluation.overlay import case_overlay, write_png
                write_png(folder.staging / f"{case_id}_overlay.png",
                          case_overlay(image, label, predicted, num_classes=num_classes))

        if ranks.distributed:  # rank 0 gathers every rank's rows (in list order) and case lines
            gathered = ranks.gather((rows, log.lines[start_line:]))
            order = {c: i for i, c in enumerate(case_ids)}
            rows = sorted((r for part, _ in gathered for r in part), key=lambda r: (order[r["case"]], r["class"]))
            for _, lines in gathered[1:]:
                for line in lines:
                    log(line)
            if not ranks.is_main:
                ranks.close()
                return

        with open(folder.staging / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        case_rows = rows[::num_classes - 1]  # one row per case for the timings
        summary = {"checkpoint": str(path), "iteration": iteration, "model": "teacher" if args.teacher else "student",
                   "lcc": args.lcc, "normalize": normalize, "intensity": data.intensity, "units": "mm" if args.spacing else "voxels",
                   "cases": len(case_ids),
                   "patch_size": list(patch_size), "stride_xy": args.stride_xy, "stride_z": args.stride_z,
                   "autocast": str(autocast).replace("torch.", "") if autocast else None,
                   "empty_masks": EMPTY_MASK_RULE, "classes": summarize(rows, num_classes),
                   "training_cases": trained_source, "overlap_with_training": overlap,
                   "seconds_per_case": {k: float(np.mean([r[k] for r in case_rows]))
                                        for k in ("predict_s", "metrics_s", "total_s")},
                   "nifti_voxel_size": nifti_voxel_size_note(args, data) if args.save_pred else None,
                   "uncertainty": uncertainty_summary(
                       rows, folder.staging, f"{path.parent.parent.name} {path.parent.name} {path.stem}"
                       + " teacher" * args.teacher) if args.uncertainty else None,
                   "flags": vars(args), "device": str(device), "runtime": runtime_versions()}

        log()
        for line in table(summary):
            log(line)
        if summary["uncertainty"]:
            found = summary["uncertainty"]
            log(f"uncertainty against Dice over {found['cases']} cases: Spearman "
                + ("n/a" if found["spearman"] is None else f"{found['spearman']:.3f}")
                + f"; {found['worst_in_top']} of the {len(found['worst_by_dice'])} worst by Dice in the top "
                  f"{len(found['top_by_score'])} by score ({', '.join(found['top_by_score'])})")
        log(f"written to {out}")
        log.close()
        (folder.staging / "summary.json").write_text(json.dumps(json_ready(summary), indent=2))
        folder.publish()
    ranks.close()


if __name__ == "__main__":
    main()
