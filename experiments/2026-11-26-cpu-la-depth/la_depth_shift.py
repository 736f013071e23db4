"""Does a trained network depend on where the atrium lies along Z? Moves each case's volume
by a few slices along Z, predicts it, moves the prediction back and prints the Dice per shift.

A shift of +s puts s copies of the first slice below the volume and drops its top s slices,
so the anatomy sits s slices higher; -s does the opposite. Dice is computed on the slices that
stayed inside. With ``--train_list`` it also prints the range of the atrium's first and last
slice over the training cases, to compare each case's own range with.

    python experiments/2026-11-26-cpu-la-depth/la_depth_shift.py --root_path /tmp/LAhalf/"2018LA_Seg_Training Set" \\
        --checkpoint model/LA_half_case_13_labeled/SUP/iter_1500.pth --cases UZUZZT2W9IUSHL6ASOX3 \\
        --patch_size 64 64 32 --stride_xy 9 --stride_z 2 --train_list /tmp/LAhalf/dev_train.list
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository
from dataloaders.case_lists import read_case_list  # noqa: E402
from dataloaders.datasets import data_folder  # noqa: E402
from utils.checkpoint import load_checkpoint, load_network, trained_normalization  # noqa: E402
from utils.device import select_device  # noqa: E402
from utils.errors import UserError, report_user_errors  # noqa: E402
from utils.metrics import dice  # noqa: E402
from utils.sliding_window import sliding_window_predict  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root_path", required=True, help="the LA case folder (h5 layout)")
    p.add_argument("--checkpoint", nargs="+", required=True,
                   help="checkpoints of train_sup.py or train_mean_teacher.py, each tested in turn")
    p.add_argument("--teacher", action="store_true", help="the Mean Teacher's teacher instead of the student")
    p.add_argument("--cases", nargs="+", required=True, help="case IDs to shift")
    p.add_argument("--shifts", type=int, nargs="+", default=[-4, 0, 4, 8, 12], help="slices along Z (+: up)")
    p.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80], metavar=("X", "Y", "Z"))
    p.add_argument("--stride_xy", type=int, default=18)
    p.add_argument("--stride_z", type=int, default=4)
    p.add_argument("--train_list", default=None, help="training cases, for the atrium's usual Z range")
    p.add_argument("--gpu", default="0", help="visible GPU(s); the CPU where CUDA is unavailable")
    return p.parse_args(argv)


def shift_along_z(image: np.ndarray, s: int) -> np.ndarray:
    """(X, Y, Z) image moved ``s`` slices up (edge slices repeated where it was moved away from)."""
    depth = image.shape[2]
    if abs(s) >= depth:
        raise UserError(f"shift {s} is not smaller than the volume's {depth} slices")
    if s >= 0:
        return np.concatenate([np.repeat(image[:, :, :1], s, axis=2), image[:, :, :depth - s]], axis=2)
    return np.concatenate([image[:, :, -s:], np.repeat(image[:, :, -1:], -s, axis=2)], axis=2)


def z_range(label: np.ndarray) -> tuple[int, int]:
    """First and last slice holding foreground."""
    slices = np.flatnonzero(label.any(axis=(0, 1)))
    if slices.size == 0:
        raise UserError("a case has no foreground; pick cases with a labeled atrium")
    return int(slices[0]), int(slices[-1])


@report_user_errors
def main(argv=None):
    args = parse_args(argv)
    device = select_device(args.gpu)
    root = Path(args.root_path)
    for number, path in enumerate(args.checkpoint):
        checkpoint = load_checkpoint(path)
        data = data_folder(root, trained_normalization(checkpoint))
        net = load_network(checkpoint, Path(path), teacher=args.teacher, num_classes=2, device=device)
        if number == 0 and args.train_list:
            ranges = np.array([z_range(data.read(case)[1]) for case in read_case_list(args.train_list)])
            print(f"training cases ({len(ranges)}): atrium's first slice {ranges[:, 0].min()}-{ranges[:, 0].max()}, "
                  f"last slice {ranges[:, 1].min()}-{ranges[:, 1].max()}")
        print(f"== {path} ({'teacher' if args.teacher else 'student'})")
        print("case      depth  atrium  " + "".join(f"{f'shift {s:+d}':>10}" for s in args.shifts) + "   (Dice)")
        for case in args.cases:
            image, label = data.read(case)
            first, last = z_range(label)
            print(f"{case[:8]}  {image.shape[2]:5d}  {first:2d}-{last:<3d} "
                  + "".join(f"{d:10.3f}" for d in shifted_dice(net, image, label, args, device)), flush=True)


def shifted_dice(net, image: np.ndarray, label: np.ndarray, args, device) -> list[float]:
    """Dice of the prediction at each shift, moved back, on the slices that stayed inside."""
    depth = image.shape[2]
    scores = []
    for s in args.shifts:
        _, pred = sliding_window_predict(net, shift_along_z(image, s), patch_size=tuple(args.patch_size),
                                         stride_xy=args.stride_xy, stride_z=args.stride_z, num_classes=2,
                                         device=device)
        pred = pred.cpu().numpy()
        inside = slice(0, depth - s) if s >= 0 else slice(-s, depth)  # original slices still in the volume
        moved = slice(s, depth) if s >= 0 else slice(0, depth + s)
        scores.append(dice(pred[:, :, moved] == 1, label[:, :, inside] == 1))
    return scores


if __name__ == "__main__":
    main()
