"""Segment new scans with a trained model, like nnU-Net's ``nnUNetv2_predict -i IN -o OUT``.

    python predict.py -i scans/ -o segmentations/ --checkpoint model/LA_vnet_16_labeled/MT/iter_6000.pth
    python predict.py -i case_0000.nii.gz -o out/ --labelnum 16 --model MT     # the run folder's last iter_N.pth
    python predict.py -i cases.list -o out/ --checkpoint ... --lcc --save_prob
    python predict.py -i scans/ -o out/ --checkpoint ... --uncertainty          # which to check first

IN is one scan, a folder (every scan in it, and the LA layout's ``<ID>/mri_norm2.h5``, sorted)
or a ``.list``/``.txt`` file of scan paths, one a line (relative to the list's folder). Scans
are NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or LA h5 (``image``;
taken as 0.625 mm voxels). For each scan OUT gets

    <case>.nii.gz       the label map (uint8) on the scan's own grid: its shape, spacing, origin
                        and direction, so it lies on the scan in 3D Slicer or ITK-SNAP
    <case>_prob.nii.gz  with --save_prob: the softmax of every class, one float32 NIfTI vector
                        image (C values per voxel; nibabel reads it as (X, Y, Z, 1, C))
    <case>_uncertainty.nii.gz   with --uncertainty: each voxel's uncertainty (float32, 0 certain
                        .. 1 a uniform guess: the normalised entropy of the softmax averaged
                        over the scan and its x/y mirror images)
    uncertainty.csv     with --uncertainty: one row per scan, most uncertain first: its score
                        (the segmentation's expected Dice error; ``evaluation.uncertainty``),
                        volume (mL) and connected components per class, flagged or not and why
                        (``evaluation.uncertainty_table``); rewritten after every scan

where <case> is the file name without its extension and without nnU-Net's ``_0000`` channel
ending (``<ID>`` for ``<ID>/mri_norm2.h5``). Nothing is overwritten: a scan whose output is
already there is skipped with a line saying so (rerun after a stop to do the rest), unless
``--overwrite``. Every file is written under a temporary name and renamed when complete.

Each scan is read as the checkpoint's run read its images: z-scored on its own (``--normalize
case``, MSD runs, or any NIfTI/NRRD/MHA scan), clipped and z-scored with the training
foreground's statistics (a run whose plan said CT), or as stored (an h5 of a ``--normalize none``
run, whose values were z-scored over the whole raw scan before cropping). Then a scan whose
voxel size differs on an axis from the one the checkpoint was trained at by more than training
allowed its own cases (10 %, or 1 % where training resampled them) is resampled to it
(linear), predicted, and its probabilities resampled back (linear, then argmax); older
checkpoints do not store their voxel size, and then no scan is resampled.

The LA models were trained on the UA-MT h5 files: the challenge scans cropped in x and y around
the atrium (about 200 x 140 x 88 voxels). A whole raw LA scan (about 640 x 640 x 88 voxels) is
mostly other anatomy the network never saw and may need a crop around the heart first.

A scan that cannot be used (unreadable, truncated, 2D, 4D, NaN voxels) is one line on stderr
and the others go on; the exit status is 1 if any scan failed, 2 for bad flags or input that
names no usable scan, 0 otherwise. The last line counts the scans predicted, failed and
skipped, with the seconds per predicted scan and the device.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataloaders.la_heart import zscore_finite
from dataloaders.msd import normalize_intensities
from dataloaders.resampling import differs, prediction_tolerance
from evaluation.predictor import Predictor, check_window_settings, default_window, network_strides
from evaluation.scans import (case_name, list_scans, read_scan, write_probabilities, write_segmentation,
                              write_voxel_map)
from evaluation.uncertainty import components_per_class, volumes_ml
from evaluation.uncertainty_table import flag_rows, flag_summary, read_rows, scan_row, write_rows
from training.run_folder import find_run_folder, run_checkpoint
from utils.checkpoint import TrainedSettings, load_checkpoint, trained_settings
from utils.device import select_device
from utils.errors import ArgumentParser, UserError, report_user_errors, require_folder_or_nothing

PROB_SUFFIX = "_prob"
UNCERTAINTY_SUFFIX = "_uncertainty"
UNCERTAINTY_TABLE = "uncertainty.csv"


def parse_args():
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, help="a scan, a folder of scans, or a .list/.txt of scan paths")
    p.add_argument("-o", "--output", required=True, help="the folder for the segmentations (created if needed)")
    ckpt = p.add_argument_group("checkpoint: --checkpoint, or the run folder of inference.py's flags")
    ckpt.add_argument("--checkpoint", default=None, help="a checkpoint file")
    ckpt.add_argument("--dataset_name", default="LA")
    ckpt.add_argument("--exp", default="vnet")
    ckpt.add_argument("--labelnum", type=int, default=None,
                      help="the run's labeled cases, part of its folder (default: the one run folder of --exp)")
    ckpt.add_argument("--model", default="MT")
    ckpt.add_argument("--iteration", type=int, default=None, help="the run folder's iter_N.pth (default: the last)")
    ckpt.add_argument("--teacher", action="store_true", help="the EMA teacher's weights instead of the student's")
    sw = p.add_argument_group("sliding window (inference.py's flags)")
    sw.add_argument("--patch_size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                    help="window size in voxels (default: the patch the checkpoint was trained on)")
    sw.add_argument("--stride_xy", type=int, default=None, help="window step along X and Y (default: the dataset's)")
    sw.add_argument("--stride_z", type=int, default=None, help="window step along Z (default: the dataset's)")
    sw.add_argument("--sw_batch", type=int, default=8, help="windows per forward pass")
    sw.add_argument("--amp", type=int, default=None, help="1: bf16/fp16 autocast; 0: fp32 (default: 1 on a GPU)")
    sw.add_argument("--channels_last", type=int, default=1, help="channels_last_3d memory layout (0: NCDHW)")
    sw.add_argument("--gpu", default="0", help="GPU index (the CPU where there is none, or with -1)")
    out = p.add_argument_group("outputs")
    out.add_argument("--lcc", action="store_true", help="keep the largest connected component of each class")
    out.add_argument("--save_prob", action="store_true", help="also write <case>_prob.nii.gz, the class probabilities")
    out.add_argument("--uncertainty", action="store_true",
                     help="also write <case>_uncertainty.nii.gz and uncertainty.csv (4 passes per scan: x/y mirrored)")
    out.add_argument("--flag_score", type=float, default=None,
                     help="with --uncertainty: also flag every scan scoring at least this (0..1)")
    out.add_argument("--overwrite", action="store_true", help="replace outputs that exist (skipped otherwise)")
    return p.parse_args()


def find_checkpoint(args) -> Path:
    """--checkpoint, else the run folder's iter_N.pth (--iteration) or its last one."""
    if args.checkpoint:
        if args.iteration is not None:
            raise UserError("--checkpoint names the file itself; drop --iteration")
        return Path(args.checkpoint)
    return run_checkpoint(find_run_folder(args.dataset_name, args.exp, args.labelnum, args.model),
                          args.iteration)


def plan_outputs(scans: list[Path], out: Path, save_prob: bool, uncertainty: bool = False) -> list[list[Path]]:
    """The files each scan writes into ``out``; two scans of one case name, or an output that
    would replace its own scan, are a ``UserError`` before anything is predicted."""
    plans, owner = [], {}
    for scan in scans:
        case = case_name(scan)
        if case in owner:
            raise UserError(f"{owner[case]} and {scan} would both be written as {out / case}.nii.gz; "
                            "rename one, or predict them into different folders")
        owner[case] = scan
        files = ([out / f"{case}.nii.gz"] + ([out / f"{case}{PROB_SUFFIX}.nii.gz"] if save_prob else [])
                 + ([out / f"{case}{UNCERTAINTY_SUFFIX}.nii.gz"] if uncertainty else []))
        if any(f.resolve() == scan.resolve() for f in files):
            raise UserError(f"the output for {scan} would replace the scan itself; choose another -o folder")
        plans.append(files)
    return plans


def input_rule(settings: TrainedSettings) -> str:
    """How scans are normalised for this checkpoint: "msd" (as MSD training: z-scored, or the
    CT plan's clip and z-score), "case" (z-scored per scan) or "none" (h5 values as stored,
    other scans z-scored)."""
    return "msd" if settings.data_kind == "msd" else settings.normalize


def normalized(voxels: np.ndarray, path: Path, rule: str, intensity: dict | None = None) -> np.ndarray:
    """The scan's (X, Y, Z) float32 voxels as the checkpoint's run saw its images (see
    ``input_rule``): z-scored over the whole volume (mean and std in float64, float32 out) by
    the training readers' own functions, so an h5 case and its NIfTI copy give the same voxels;
    for an MSD run, normalised by its plan's ``intensity`` (CT). A scan holding NaN or infinite
    voxels, or a constant scan, is a ``UserError``: training refuses the one, and there is
    nothing to segment in the other."""
    non_finite = int(voxels.size - np.count_nonzero(np.isfinite(voxels)))
    if non_finite:
        raise UserError(f"{path}: {non_finite} voxel(s) are NaN or infinite; training refuses such images, so fix "
                        "or replace the scan")
    if voxels.size and voxels.min() == voxels.max():
        raise UserError(f"{path}: the image is constant ({voxels.flat[0]:g} everywhere); nothing to segment")
    if rule == "msd":
        return normalize_intensities(voxels, intensity, path)
    if rule == "none" and path.suffix.lower() == ".h5":
        return voxels
    return zscore_finite(voxels)


def predict_scan(predictor: Predictor, scan, *, rule: str, spacing, tolerance: float, save_prob: bool,
                 intensity: dict | None = None, uncertainty: bool = False) -> tuple:
    """(labels (X, Y, Z) uint8, probabilities (C, X, Y, Z) or None, a note or "", the
    ``ScanUncertainty`` or None) of one scan, normalised by ``rule`` and ``intensity`` (see
    ``normalized``), predicted at the training voxel size ``spacing`` (mm) and brought back
    where it is more than ``tolerance`` off on an axis; with ``uncertainty``, the mirrored passes
    score it (the labels are those of the unmirrored pass all the same)."""
    image = normalized(scan.voxels, scan.path, rule, intensity)  # before resampling, as training reads MSD cases
    resampled = spacing is not None and differs(scan.spacing, spacing, tolerance)
    note = f", predicted at the training {mm(spacing)} (its own {mm(scan.spacing)}) and brought back" if resampled else ""
    if uncertainty:
        labels, probabilities, scores = predictor.predict_with_uncertainty(
            image, scan.spacing if resampled else None, spacing if resampled else None)
        return labels, probabilities if save_prob else None, note, scores
    if not resampled:
        labels, probabilities = predictor.predict(image, with_probabilities=save_prob)
        return labels, probabilities, note, None
    labels, probabilities = predictor.predict_at_spacing(image, scan.spacing, spacing)
    return labels, probabilities if save_prob else None, note, None


def mm(spacing) -> str:
    return " x ".join(f"{s:.4g}" for s in spacing) + " mm"


@report_user_errors
def main():
    args = parse_args()
    scans = list_scans(args.input)
    out = Path(args.output)
    require_folder_or_nothing(out, "-o")
    if args.flag_score is not None and not args.uncertainty:
        raise UserError("--flag_score flags scans by their uncertainty score; add --uncertainty")
    if args.flag_score is not None and not 0 <= args.flag_score <= 1:
        raise UserError(f"--flag_score must be between 0 and 1 (an expected Dice error), got {args.flag_score}")
    plans = plan_outputs(scans, out, args.save_prob, args.uncertainty)
    path = find_checkpoint(args)
    checkpoint = load_checkpoint(path, map_location="cpu")
    window = default_window(checkpoint, args.patch_size, args.stride_xy, args.stride_z)
    check_window_settings(*window, args.sw_batch, network_strides(checkpoint))  # before the device is touched
    device = select_device(args.gpu)
    predictor = Predictor(checkpoint, path, device=device, teacher=args.teacher, patch_size=window[0],
                          stride_xy=window[1], stride_z=window[2], sw_batch=args.sw_batch, amp=args.amp,
                          channels_last=bool(args.channels_last), lcc=args.lcc)
    settings = trained_settings(checkpoint)
    rule, spacing, iteration = input_rule(settings), settings.spacing, checkpoint.get("iteration")
    tolerance = prediction_tolerance(settings.resampled)
    del checkpoint  # the optimizer state is not needed
    out.mkdir(parents=True, exist_ok=True)

    print(f"predicting {len(scans)} scan(s) of {args.input} into {out} with {path} (iteration {iteration}): "
          f"{predictor.describe()}, "
          + ("scans clipped to {lower:.1f}..{upper:.1f} and z-scored with {mean:.1f}/{std:.1f} (the CT plan)".format(
              **settings.intensity) if rule == "msd" and settings.intensity and settings.intensity["scheme"] == "ct"
             else {"msd": "scans z-scored (MSD training)", "case": "scans z-scored each on its own",
                   "none": "h5 scans as stored, other scans z-scored"}[rule]))
    print(f"training voxel size {mm(spacing)}: scans more than {tolerance:.0%} off on an axis are resampled "
          "to it and predicted back on their own grid" if spacing else
          "the checkpoint does not store its training voxel size: every scan is predicted at its own spacing")
    table_path = out / UNCERTAINTY_TABLE
    table = {row["scan"]: row for row in read_rows(table_path)} if args.uncertainty else {}
    unscored = []  # skipped scans the table has no row for
    done, failed, skipped, seconds = 0, 0, 0, 0.0
    progress = tqdm(list(zip(scans, plans)), desc="scans", dynamic_ncols=True, disable=None)  # no bar when piped
    try:
        for scan_path, files in progress:
            existing = [f for f in files if f.exists()]
            if existing and not args.overwrite:
                skipped += 1
                tqdm.write(f"{case_name(scan_path)}: {existing[0]} exists, skipped (--overwrite replaces it)")
                if args.uncertainty and case_name(scan_path) not in table:
                    unscored.append(case_name(scan_path))
                continue
            start = time.perf_counter()
            try:
                scan = read_scan(scan_path)
                labels, probabilities, note, scores = predict_scan(
                    predictor, scan, rule=rule, spacing=spacing, tolerance=tolerance, save_prob=args.save_prob,
                    intensity=settings.intensity, uncertainty=args.uncertainty)
                write_segmentation(labels, scan.image, files[0])
                if args.save_prob:
                    write_probabilities(probabilities, scan.image, files[1])
                if scores is not None:
                    write_voxel_map(scores.voxel_map, scan.image, files[-1])
                    case = case_name(scan_path)
                    table[case] = scan_row(case, files[0], scores, volumes_ml(labels, predictor.num_classes, scan.spacing),
                                           components_per_class(labels, predictor.num_classes))
                    write_rows(table_path, flag_rows(list(table.values()), args.flag_score)[0])
                    note += f", uncertainty {scores.score:.4f}"
            except (UserError, MemoryError) as err:  # this scan only; the others go on
                failed += 1
                reason = str(err) if isinstance(err, UserError) else f"{scan_path}: out of memory ({err})"
                tqdm.write(f"error: {reason}", file=sys.stderr)
                continue
            elapsed = time.perf_counter() - start
            done, seconds = done + 1, seconds + elapsed
            tqdm.write(f"{case_name(scan_path)}: {' x '.join(map(str, labels.shape))} voxels, {elapsed:.2f} s{note} "
                       f"-> {files[0]}")
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted after {done} of {len(scans)} scan(s); the files in {out} are complete "
                                "(a rerun skips them)") from None
    if args.uncertainty and table:
        rows, fence = flag_rows(list(table.values()), args.flag_score)
        write_rows(table_path, rows)
        print(f"{flag_summary(rows, fence, args.flag_score)}; most uncertain first in {table_path}"
              + (f"; {len(unscored)} skipped scan(s) have no score (predicted before without --uncertainty: "
                 f"--overwrite scores them): {', '.join(unscored[:5])}" if unscored else ""))
    print(f"{done} predicted, {failed} failed, {skipped} skipped of {len(scans)} scan(s); "
          f"{seconds / done if done else 0:.2f} s per predicted scan; device {device}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
