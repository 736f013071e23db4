"""The flags of the Mean Teacher family (Mean Teacher, UA-MT), shared by their scripts."""
import argparse

from training.arguments import require_finite_number
from utils.errors import UserError
from utils.losses import CONSISTENCY_LOSSES


def add_mean_teacher_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--ema_decay, --consistency_type, --consistency, --consistency_rampup, --noise_std, with
    the original scripts' defaults; returns the group, for a method's own flags."""
    mt = parser.add_argument_group("mean teacher")
    mt.add_argument("--ema_decay", type=float, default=0.99, help="teacher = ema_decay * teacher + (1 - ema_decay) * student")
    mt.add_argument("--consistency_type", default="mse", choices=sorted(CONSISTENCY_LOSSES))
    mt.add_argument("--consistency", type=float, default=0.1, help="final consistency weight")
    mt.add_argument("--consistency_rampup", type=float, default=40.0,
                    help="ramp-up length, in units of 150 iterations")
    mt.add_argument("--noise_std", type=float, default=0.1, help="std of the teacher's input noise, clipped at 2 std")
    return mt


def check_mean_teacher_flags(args: argparse.Namespace) -> argparse.Namespace:
    """One-line errors for values these methods cannot train with."""
    if args.labeled_bs >= args.batch_size:
        raise UserError(f"--labeled_bs ({args.labeled_bs}) must be smaller than --batch_size ({args.batch_size}): "
                        "the teacher needs unlabeled samples in every batch")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise UserError(f"--ema_decay must be between 0 and 1 (0.99 in the original), got {args.ema_decay}")
    for flag in ("consistency", "consistency_rampup", "noise_std"):
        require_finite_number(args, flag, allow_zero=True)
    return args
