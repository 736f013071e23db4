"""Which unlabeled scans to label next: rank the unlabeled cases of a training folder by the
uncertainty of a trained model's segmentation of them, print the top N and write them as a list.

    python suggest.py --checkpoint model/LA_vnet_6_labeled/MT/iter_6000.pth -n 7
    python suggest.py --checkpoint ... --root_path data/Task09 --train_list train.list --labelnum 6 -n 7 --spread 0

The cases are found as training finds them: ``--root_path``, ``--train_list``, ``--labelnum``
and ``--unlabeled_dir`` as the training scripts read them (the first ``--labelnum`` listed cases
are labeled and the rest are not; without ``--labelnum``, the cases that have no label file are
the unlabeled ones); each one not given is the checkpoint's own run's. Each
unlabeled case is predicted as ``predict.py --uncertainty`` predicts a scan (its score: the
segmentation's expected Dice error over the scan and its x/y mirror images,
``evaluation.uncertainty``) and ranked most uncertain first. With ``--spread 1`` (the default)
the N come from the 3N most uncertain, each next one the largest score x distance to the
picks so far (the network's bottleneck features, cosine), so that near-identical scans are not
all chosen (``selection.ranking``).

Writes (``--out``, default ``<run folder>/suggested_<N>.list``):

    suggested_<N>.list          the N case IDs, one a line
    suggested_<N>_train.list    the next training list: the labeled cases, the N, then the
                                other unlabeled cases; train on it with --labelnum L+N once
                                the N are labeled
    suggested_<N>.csv           every ranked case: rank, score, chosen or not

An unreadable case is one line on stderr and the others are still ranked (exit status 1).
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataloaders.case_split import training_split
from dataloaders.datasets import data_folder
from dataloaders.la_heart import check_root
from dataloaders.resampling import differs, prediction_tolerance
from evaluation.predictor import Predictor, check_window_settings, default_window, network_strides
from selection.features import bottleneck_features
from selection.ranking import next_training_list, rank_by_score, spread_selection
from utils.checkpoint import load_checkpoint, trained_settings
from utils.device import select_device
from utils.errors import ArgumentParser, UserError, report_user_errors


def parse_args():
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint of the training scripts (iter_N.pth)")
    p.add_argument("-n", "--number", type=int, default=5, help="how many cases to suggest")
    p.add_argument("--spread", type=int, default=1, choices=(0, 1),
                   help="1: do not choose near-identical scans together; 0: the N most uncertain")
    p.add_argument("--out", default=None, help="the list file to write (default: <run folder>/suggested_<N>.list)")
    data = p.add_argument_group("the training cases (each flag not given: the checkpoint's run's)")
    data.add_argument("--root_path", default=None, help="the training folder")
    data.add_argument("--train_list", default=None, help="its training list (default: every case of the folder)")
    data.add_argument("--labelnum", type=int, default=None,
                      help="the first N listed cases are labeled (default: the cases with label files)")
    data.add_argument("--unlabeled_dir", action="append", default=[], help="more folders of unlabeled images (MSD)")
    sw = p.add_argument_group("prediction")
    sw.add_argument("--teacher", action="store_true", help="the EMA teacher's weights instead of the student's")
    sw.add_argument("--stride_xy", type=int, default=None,
                    help="window step along X and Y (default: the run's); half the patch is about 2x faster than LA's")
    sw.add_argument("--stride_z", type=int, default=None, help="window step along Z (default: the run's)")
    sw.add_argument("--sw_batch", type=int, default=8, help="windows per forward pass")
    sw.add_argument("--gpu", default="0", help="GPU index (the CPU where there is none, or with -1)")
    return p.parse_args()


def cases_to_rank(args, checkpoint: dict) -> tuple:
    """(data folder, labeled IDs, unlabeled IDs, where they come from, --labelnum or None): the
    training split of the data flags, each flag not given being the checkpoint's run's."""
    settings = trained_settings(checkpoint)
    run = checkpoint.get("args") or {}
    root = args.root_path or run.get("root_path")
    train_list = args.train_list or run.get("train_list")
    # a run without --labelnum took the cases with label files as labeled (its stored labelnum is their count)
    labelnum = args.labelnum if args.labelnum is not None else (None if run.get("labels_from_files")
                                                                else run.get("labelnum"))
    extra = args.unlabeled_dir or run.get("unlabeled_dir") or []
    if not root:
        raise UserError("the checkpoint does not say which folder it was trained on; pass --root_path")
    data = data_folder(check_root(root), settings.normalize, unlabeled_dirs=tuple(extra),
                       intensity=settings.intensity)
    if train_list:
        train_list = str(data.list_file(train_list))
    split = training_split(data, train_list, labelnum)
    source = f"{train_list or data.root}" + (f", the first {labelnum} labeled" if labelnum is not None else "")
    return data, split.labeled, split.unlabeled, source, labelnum


def check_fits(checkpoint: dict, data, path: Path) -> None:
    """A checkpoint whose network has other classes or input channels than the data: one line."""
    network = checkpoint.get("network") or {}
    classes, channels = network.get("n_classes"), network.get("n_channels", 1)
    if classes is not None and classes != data.num_classes:
        raise UserError(f"{path} predicts {classes} classes (background included) but {data.root} has "
                        f"{data.num_classes}; rank with a checkpoint trained on this kind of data")
    if (data.channels or 1) != channels:
        raise UserError(f"{path} takes {channels} image channel(s) but {data.root} has {data.channels}; rank with "
                        "a checkpoint trained on this kind of data")


def output_paths(args, checkpoint_path: Path) -> tuple[Path, Path, Path]:
    """(list, next training list, ranking table)."""
    out = Path(args.out) if args.out else checkpoint_path.parent / f"suggested_{args.number}.list"
    return out, out.with_name(f"{out.stem}_train.list"), out.with_suffix(".csv")


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all (a temporary file renamed); a full disk or a
    folder without write permission is one line."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None


@report_user_errors
def main():
    args = parse_args()
    if args.number < 1:
        raise UserError(f"-n must be at least 1, got {args.number}")
    path = Path(args.checkpoint)
    checkpoint = load_checkpoint(path, map_location="cpu")
    data, labeled, unlabeled, source, labelnum = cases_to_rank(args, checkpoint)
    check_fits(checkpoint, data, path)
    if not unlabeled:
        raise UserError(f"no unlabeled case among the {len(labeled)} training cases of {source}; add unlabeled images "
                        "or lower --labelnum")
    if args.number > len(unlabeled):
        raise UserError(f"-n {args.number}: there are only {len(unlabeled)} unlabeled cases in {source}")
    window = default_window(checkpoint, None, args.stride_xy, args.stride_z)
    check_window_settings(*window, args.sw_batch, network_strides(checkpoint))
    device = select_device(args.gpu)
    predictor = Predictor(checkpoint, path, device=device, teacher=args.teacher, num_classes=data.num_classes,
                          patch_size=window[0], stride_xy=window[1], stride_z=window[2], sw_batch=args.sw_batch)
    settings = trained_settings(checkpoint)
    trained_at = settings.spacing if data.has_spacing else None
    tolerance = prediction_tolerance(settings.resampled)
    del checkpoint
    out, train_out, table_out = output_paths(args, path)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"ranking {len(unlabeled)} unlabeled cases of {source} ({len(labeled)} labeled) with {path}: "
          f"{predictor.describe()}")

    cases, scores, features, failed = [], [], [], 0
    for case in tqdm(unlabeled, desc="cases", dynamic_ncols=True, disable=None):
        try:
            image = data.read_image(case)
            own = data.spacing(case) if trained_at else None
            resampled = bool(own and differs(own, trained_at, tolerance))
            with bottleneck_features(predictor.model) as seen:
                _, _, uncertainty = predictor.predict_with_uncertainty(image, own if resampled else None,
                                                                       trained_at if resampled else None)
        except (UserError, OSError, ValueError) as err:  # this case only; the others are still ranked
            failed += 1
            tqdm.write(f"error: {case}: {err}" if case not in str(err) else f"error: {err}", file=sys.stderr)
            continue
        cases.append(case)
        scores.append(uncertainty.score)
        features.append(seen.vector())
    if len(cases) < args.number:
        raise UserError(f"only {len(cases)} of the {len(unlabeled)} unlabeled cases could be read; -n {args.number} "
                        "needs more (see the errors above)")

    chosen = (spread_selection(scores, np.stack(features), args.number) if args.spread
              else rank_by_score(scores)[:args.number])
    suggested = [cases[i] for i in chosen]
    table = [["rank", "case", "score", "suggested"]] + [
        [rank, cases[i], f"{scores[i]:.6f}", "yes" if i in chosen else "no"]
        for rank, i in enumerate(rank_by_score(scores), start=1)]
    write_text(out, "".join(f"{case}\n" for case in suggested))
    write_text(train_out, "".join(f"{case}\n" for case in next_training_list(labeled, suggested, unlabeled)))
    write_text(table_out, "".join(",".join(map(str, row)) + "\n" for row in table))
    ranks = {i: r for r, i in enumerate(rank_by_score(scores), start=1)}
    print(f"suggested {args.number} of {len(cases)} ranked cases"
          + (" (spread over the 3N most uncertain)" if args.spread else " (the most uncertain)") + ":")
    for i in chosen:
        print(f"  {cases[i]}  score {scores[i]:.4f}  rank {ranks[i]}")
    print(f"written {out}, {train_out}, {table_out}; once they are labeled, train again "
          + ("as before (the cases with label files are the labeled ones)" if labelnum is None else
             f"with --train_list {train_out} --labelnum {len(labeled) + args.number}")
          + (f"; {failed} case(s) could not be read" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
