"""Command-line flags shared by the training scripts, named as in the original LA scripts, and
the settings built from them, in one place: only this module and the scripts read ``args``."""
import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from dataloaders.batches import BatchSettings
from dataloaders.case_split import training_split
from dataloaders.check_data import print_data_report
from dataloaders.datasets import (DATASETS, INTENSITY_NORMALIZATIONS, at_training_spacing, data_folder, dataset_label,
                                  is_own_data, root_or_default)
from networks.vnet import DEFAULT_STRIDES, check_strides, patch_size_problem, strides_text, total_strides
from planning.fingerprint import data_fingerprint, describe
from planning.planner import DEFAULT_BUDGET, make_plan
from training.planned_settings import PLAN, resolve_settings, settings_text
from training.run_folder import run_folder_path
from training.schedule import Schedule
from utils.errors import ArgumentParser, UserError


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the script's docstring (with its example commands) as written."""


def training_parser(description: str, model_default: str) -> argparse.ArgumentParser:
    p = ArgumentParser(description=description, formatter_class=_HelpFormatter)  # errors in one line
    data = p.add_argument_group("data")
    data.add_argument("--dataset_name", default=None, choices=sorted(DATASETS),
                      help="a named dataset and its published settings (default: LA, or for an MSD folder of your "
                           "own given by --root_path, settings planned from its data)")
    data.add_argument("--root_path", default=None,
                      help="folder of case sub-folders (default: the dataset's, e.g. data/LA/2018LA_Seg_Training Set)")
    data.add_argument("--train_list", default=None,
                      help="training case IDs, labeled and unlabeled (default: train.list beside the case folder, or "
                           "inside an MSD folder; without one, every case of the folder)")
    data.add_argument("--unlabeled_dir", nargs="+", default=[], metavar="FOLDER",
                      help="more folders of unlabeled NIfTI images (MSD layout; imagesTs/ is one already)")
    data.add_argument("--val_list", default=None,
                      help="validation case IDs: the student is scored every --val_every iterations and the "
                           "best kept as best_model.pth (never the test list)")
    data.add_argument("--labelnum", type=int, default=None,
                      help="the first LABELNUM training cases are labeled, the rest unlabeled even where they have "
                           "labels (the benchmark protocol; default: the cases that have labels are labeled)")
    data.add_argument("--max_samples", type=int, default=None,
                      help="use at most this many training cases (labeled + unlabeled); default all")
    data.add_argument("--normalize", default=None, choices=INTENSITY_NORMALIZATIONS,
                      help="case (the default): z-score each image on its own, as MSD images are unless the plan "
                           "says CT (then 'case' given here overrides it); none: the h5 values as stored (UA-MT's "
                           "whole-scan z-score, which leaves some LA crops dark)")
    data.add_argument("--target_spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                      help="MSD: train at this voxel size (mm), resampling the cases at another (default: the "
                           "cases' median where their spacings differ by more than 10 %%, else none is resampled)")
    data.add_argument("--patch_size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                      help="training patch in voxels (default: the plan's, or the named dataset's, 112 112 80 for LA)")
    data.add_argument("--plan", default=None, choices=["auto", "dataset"],
                      help="auto: plan voxel size, patch, VNet strides and normalisation from the data (docs/"
                           "planning.md); dataset: the named dataset's published settings (default: auto for an "
                           "MSD folder given without --dataset_name, else dataset)")
    data.add_argument("--patch_budget", type=int, default=DEFAULT_BUDGET,
                      help="the most voxels a planned patch may hold (default: the LA patch, 112 x 112 x 80 at "
                           "batch 2 + 2); lower it for a CPU")
    data.add_argument("--strides", nargs=4, default=None, metavar="SX,SY,SZ",
                      help="the VNet's down-sampling per stage and axis, 1 or 2, e.g. 2,2,1 2,2,1 2,2,2 2,2,2 "
                           "(default: the plan's, or 2,2,2 in every stage)")
    data.add_argument("--crop_margin", type=int, nargs=3, default=[0, 0, 0], metavar=("X", "Y", "Z"),
                      help="let random training crops reach this many voxels beyond each side of the volume "
                           "(filled as --crop_fill says, less than the patch), for more positions of the anatomy; "
                           "0 0 0 is the original crop")
    data.add_argument("--crop_fill", default="zero", choices=["zero", "mirror"],
                      help="what fills a --crop_margin beyond the volume: zero intensity with background label, "
                           "or the volume mirrored about its end voxel, image and label alike")
    run = p.add_argument_group("run")
    run.add_argument("--exp", default="vnet", help="experiment name, part of the run folder")
    run.add_argument("--model", default=model_default, help="method name, the run folder's last part")
    run.add_argument("--max_iterations", type=int, default=6000)
    run.add_argument("--batch_size", type=int, default=4, help="samples per iteration, labeled + unlabeled")
    run.add_argument("--labeled_bs", type=int, default=2, help="labeled samples per iteration")
    run.add_argument("--base_lr", type=float, default=0.01,
                     help="learning rate at the start; a --resume may lower it (after a divergence), not raise it")
    run.add_argument("--lr_decay_every", type=int, default=2500,
                     help="multiply the learning rate by 0.1 every this many iterations (0: constant)")
    run.add_argument("--deterministic", type=int, default=1,
                     help="1: deterministic cuDNN kernels; 0: cudnn.benchmark (faster)")
    run.add_argument("--seed", type=int, default=1337)
    run.add_argument("--gpu", type=str, default="0", help="visible GPU(s), sets CUDA_VISIBLE_DEVICES (-1: the CPU)")
    run.add_argument("--val_every", type=int, default=500, help="iterations between validations (with --val_list)")
    run.add_argument("--save_every", type=int, default=500, help="iterations between saves of latest.pth (for --resume)")
    run.add_argument("--snapshot_every", type=int, default=1000, help="iterations between iter_N.pth snapshots")
    run.add_argument("--resume", nargs="?", const="latest", default=None, metavar="PATH",
                     help="continue the run from its latest.pth (or from PATH): weights, optimizer, "
                          "schedule, random states and data position")
    run.add_argument("--check_data", action="store_true",
                     help="only check the training (and validation) cases and print a short report")
    run.add_argument("--log_every", type=int, default=20, help="iterations between log lines")
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh in a run folder that already holds a run's files (checkpoints, log, "
                          "evaluations), deleting them")
    speed = p.add_argument_group("speed (each 0 gives the original, plain path)")
    speed.add_argument("--data_on_device", type=int, default=1,
                       help="1: read every volume once into device memory, augment there; "
                            "0: DataLoader workers read and augment each sample (original)")
    speed.add_argument("--num_workers", type=int, default=2, help="DataLoader workers when --data_on_device 0")
    speed.add_argument("--amp", type=int, default=None,
                       help="1: bf16 autocast (fp16 + grad scaling on older GPUs; on a CPU only where it has bf16 "
                            "units); 0: fp32 (default: 1 on a GPU, 0 on a CPU)")
    speed.add_argument("--channels_last", type=int, default=1, help="channels_last_3d memory layout (0: NCDHW)")
    speed.add_argument("--foreach", type=int, default=1, help="multi-tensor EMA update and optimizer step")
    speed.add_argument("--compile", type=int, default=0, help="torch.compile the student (slow start, faster steps)")
    return p


def resolve_data_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill dataset defaults, check the flags against each other, make paths absolute, and
    settle the data-dependent settings (the plan's, the dataset's or the flags')."""
    own_data = is_own_data(args.dataset_name, args.root_path)
    args.dataset_name = dataset_label(args.dataset_name, args.root_path)
    args.plan = args.plan or ("auto" if own_data else "dataset")
    # an explicit --normalize case overrides a planned CT normalisation
    args.zscore_requested, args.normalize = args.normalize == "case", args.normalize or "case"
    defaults = None if own_data else DATASETS[args.dataset_name]
    if args.plan == "dataset" and defaults is None:
        raise UserError(f"--plan dataset needs a --dataset_name ({', '.join(DATASETS)}) whose settings to take; "
                        f"{args.root_path} is your own data: leave --plan out to plan from it")
    args.root_path = root_or_default(args.dataset_name, args.root_path)
    root = Path(args.root_path).resolve()
    args.root_path = str(root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root} (pass --root_path; README.md says how to get the "
                        f"{args.dataset_name} data, or try --dataset_name Synthetic)")
    args.unlabeled_dir = [str(Path(d).resolve()) for d in args.unlabeled_dir]
    data = data_folder(root, args.normalize, args.unlabeled_dir)
    args.data_format, args.num_classes = data.kind, data.num_classes
    if args.target_spacing is not None:
        if data.kind != "msd":
            raise UserError("--target_spacing is for NIfTI data (the MSD layout): the h5 files store no voxel size")
        if not all(math.isfinite(v) and v > 0 for v in args.target_spacing):
            raise UserError(f"--target_spacing must be three positive numbers (mm), got {args.target_spacing}")
    default_list = data.lists_dir / "train.list"
    if args.train_list:
        args.train_list = str(data.list_file(args.train_list))
    else:  # without a list, every case of the folder
        args.train_list = str(default_list.resolve()) if default_list.is_file() else None
    args.val_list = str(data.list_file(args.val_list)) if args.val_list else None
    if args.labeled_bs < 1 or args.batch_size < 1:
        raise UserError(f"--batch_size and --labeled_bs must be at least 1, got {args.batch_size} and "
                        f"{args.labeled_bs}")
    if not 0 <= args.seed < 2 ** 32:
        raise UserError(f"--seed must be between 0 and 2**32 - 1, got {args.seed}")
    if args.num_workers < 0:
        raise UserError(f"--num_workers must be 0 (load in the main process) or more, got {args.num_workers}")
    args.crop_margin = tuple(args.crop_margin)
    for flag in ("save_every", "snapshot_every", "log_every", "val_every"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.max_iterations < 1:
        raise UserError(f"--max_iterations must be at least 1, got {args.max_iterations}")
    if args.max_samples is not None and args.max_samples < 1:
        raise UserError(f"--max_samples must be at least 1 (leave it out to use every case), got {args.max_samples}")
    if args.lr_decay_every < 0:
        raise UserError(f"--lr_decay_every must be 0 (a constant rate) or more iterations, got {args.lr_decay_every}")
    require_finite_number(args, "base_lr")
    # Without --labelnum the cases that have labels are the labeled ones; their number names the
    # run folder, as --labelnum does.
    args.labels_from_files = args.labelnum is None
    split = training_split(data, args.train_list, None if args.labels_from_files else args.labelnum,
                           args.max_samples)
    if args.labels_from_files:
        args.labelnum = len(split.labeled)
    settle_data_settings(args, data, split, defaults)
    if any(not 0 <= m < p for m, p in zip(args.crop_margin, args.patch_size)):
        raise UserError(f"--crop_margin values must be 0 or more voxels and less than the patch "
                        f"({' '.join(map(str, args.patch_size))}), got {' '.join(map(str, args.crop_margin))}")
    return args


def parse_strides(values) -> tuple | None:
    """``--strides 2,2,1 2,2,1 2,2,2 2,2,2`` as four (X, Y, Z) tuples, None when not given."""
    if values is None:
        return None
    try:
        return check_strides([[int(f) for f in value.split(",")] for value in values])
    except ValueError:
        raise UserError(f"--strides takes four stages of three factors, each 1 or 2, such as 2,2,1 2,2,1 2,2,2 "
                        f"2,2,2; got {' '.join(values)}") from None


def settle_data_settings(args: argparse.Namespace, data, split, defaults) -> None:
    """Voxel size, patch, VNet strides, sliding-window steps and intensity normalisation: a flag
    as given, else the plan made from the fingerprint of the training cases (``--plan auto``),
    else the named dataset's. Written back into ``args`` (so into config.json and every
    checkpoint): ``patch_size``, ``strides``, ``target_spacing`` (NIfTI only), ``intensity``,
    ``window`` and ``setting_sources``; ``plan_notes`` says why."""
    strides_flag = parse_strides(args.strides)
    if args.patch_budget < 1:
        raise UserError(f"--patch_budget must be at least 1 voxel, got {args.patch_budget}")
    plan, args.plan_notes = None, []
    if args.plan == "auto":
        fingerprint, notes = data_fingerprint(data, [*split.labeled, *split.unlabeled], split.labeled)
        plan = make_plan(fingerprint, args.patch_budget)
        args.plan_notes = notes + list(plan.notes)
        args.fingerprint_text = describe(fingerprint)
    settings = resolve_settings(plan, dataset_patch=defaults and defaults.patch_size,
                                dataset_window=defaults and (defaults.stride_xy, defaults.stride_z),
                                patch_flag=args.patch_size, strides_flag=strides_flag,
                                spacing_flag=args.target_spacing, zscore_flag=args.zscore_requested)
    args.patch_size = settings.patch_size
    problem = patch_size_problem(args.patch_size, settings.strides)
    if problem:
        source = "--patch_size" if settings.sources["patch_size"] != PLAN else "the planned patch"
        raise UserError(f"{source} {' '.join(map(str, args.patch_size))} with VNet strides "
                        f"{strides_text(settings.strides)}: {problem}")
    args.strides = [list(stage) for stage in settings.strides]
    if data.kind == "msd" and settings.spacing is not None:
        args.target_spacing = list(settings.spacing)
    args.intensity = settings.intensity if data.kind == "msd" else None
    args.window = list(settings.window)
    args.setting_sources = settings.sources
    args.settings_text = settings_text(settings, as_stored=data.kind == "h5" and args.normalize == "none")


def report_data_if_asked(args: argparse.Namespace) -> bool:
    """With --check_data: check the training and validation cases (and that the patch fits),
    print a short report, and return True: the script then stops without training."""
    if args.check_data:
        data = data_folder(args.root_path, args.normalize, args.unlabeled_dir, args.intensity)
        split = training_split(data, args.train_list, None if args.labels_from_files else args.labelnum,
                               args.max_samples)
        data, _, spacing_note = at_training_spacing(data, [*split.labeled, *split.unlabeled], args.target_spacing,
                                                    source="--target_spacing" if args.setting_sources["spacing"] == "flag" else "the plan")
        print(split.describe() + (f"; {spacing_note}" if spacing_note else ""))
        for line in [*getattr(args, "fingerprint_text", []), *args.plan_notes, args.settings_text]:
            print(line)
        print_data_report(data, training=(args.train_list or f"the cases of {data.root}", split.labeled, split.unlabeled),
                          val_list=args.val_list, patch_size=args.patch_size,
                          patch_multiple=total_strides(args.strides))
    return bool(args.check_data)


def require_finite_number(args: argparse.Namespace, flag: str, allow_zero: bool = False) -> None:
    """A one-line error unless the float flag is finite and positive (or zero, where ``allow_zero``)."""
    value = getattr(args, flag)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"--{flag} must be a {'non-negative' if allow_zero else 'positive'} number, got {value}")


@dataclass(frozen=True)
class DataSettings:
    """Where the training cases are and which of them are labeled."""
    root_path: str
    normalize: str
    train_list: str | None      # None: every case of the folder
    val_list: str | None
    labelnum: int | None        # None: the cases with labels are the labeled ones
    max_samples: int | None
    patch_size: tuple
    unlabeled_dirs: tuple = ()  # more folders of unlabeled images (MSD)
    target_spacing: tuple | None = None  # MSD: --target_spacing or the plan's (None: the median, where spacings differ)
    spacing_source: str = "--target_spacing"  # who chose target_spacing, for the header
    intensity: dict | None = None  # MSD: how images are normalised (None: z-scored per case)
    strides: tuple = DEFAULT_STRIDES  # the VNet's per stage
    settings_text: str = ""  # the header line: each data-dependent setting and its source


@dataclass(frozen=True)
class SpeedSettings:
    """How the steps run; none of it changes what is computed beyond rounding."""
    gpu: str
    deterministic: bool
    amp: bool | None
    channels_last: bool
    foreach: bool
    compile: bool


@dataclass(frozen=True)
class RunSettings:
    """The run folder and how to treat what it holds."""
    folder: Path
    resume: str | None
    overwrite: bool
    seed: int
    flags: dict   # every flag, as written to config.json and into every checkpoint


@dataclass(frozen=True)
class TrainingConfig:
    data: DataSettings
    batches: BatchSettings
    schedule: Schedule
    speed: SpeedSettings
    run: RunSettings


def training_config(args: argparse.Namespace, *, batch_size: int) -> TrainingConfig:
    """The settings of a training script's run from its resolved flags; ``batch_size`` is the
    patches per iteration (labeled-only training takes ``--labeled_bs`` of them)."""
    return TrainingConfig(
        data=DataSettings(root_path=args.root_path, normalize=args.normalize, train_list=args.train_list,
                          val_list=args.val_list, labelnum=None if args.labels_from_files else args.labelnum,
                          max_samples=args.max_samples, patch_size=tuple(args.patch_size),
                          unlabeled_dirs=tuple(args.unlabeled_dir),
                          target_spacing=tuple(args.target_spacing) if args.target_spacing else None,
                          spacing_source="--target_spacing" if args.setting_sources["spacing"] == "flag" else "the plan",
                          intensity=args.intensity, strides=tuple(map(tuple, args.strides)),
                          settings_text="\n".join([*args.plan_notes, args.settings_text])),
        batches=BatchSettings(batch_size=batch_size, labeled_bs=args.labeled_bs, patch_size=tuple(args.patch_size),
                              seed=args.seed, on_device=bool(args.data_on_device), num_workers=args.num_workers,
                              crop_margin=tuple(args.crop_margin), crop_fill=args.crop_fill,
                              patch_multiple=total_strides(args.strides)),
        schedule=Schedule(max_iterations=args.max_iterations, base_lr=args.base_lr,
                          lr_decay_every=args.lr_decay_every, log_every=args.log_every, val_every=args.val_every,
                          save_every=args.save_every, snapshot_every=args.snapshot_every),
        speed=SpeedSettings(gpu=args.gpu, deterministic=bool(args.deterministic), amp=args.amp,
                            channels_last=bool(args.channels_last), foreach=bool(args.foreach),
                            compile=bool(args.compile)),
        run=RunSettings(folder=run_folder_path(args.dataset_name, args.exp, args.labelnum, args.model),
                        resume=args.resume, overwrite=args.overwrite, seed=args.seed, flags=vars(args)))
