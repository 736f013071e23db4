"""Labeled-only baseline: the VNet trained on the labeled cases alone, with the same
supervised loss, schedule and flags as train_mean_teacher.py. Comparing the two isolates
what the unlabeled cases add.

Each iteration takes ``labeled_bs`` labeled patches (the labeled part of a Mean Teacher
batch); ``--batch_size`` is accepted for command-line compatibility and not used.

    python train_sup.py --dataset_name LA --labelnum 16 --gpu 0
    torchrun --nproc_per_node 2 train_sup.py --dataset_name LA --labelnum 16 --gpu 0,1
"""
import torch
from tqdm import tqdm

from dataloaders.batches import make_training_batches
from dataloaders.case_lists import read_case_list, split_labeled
from utils.arguments import resolve_data_args, training_parser
from utils.device import memory_layout
from utils.errors import report_user_errors
from utils.losses import supervised_loss
from utils.training import (MixedPrecision, Periodic, build_vnet, checkpoint_state, lr_at, make_validator, open_run,
                            print_data_report, restore, set_lr, sgd, setup)


def parse_args():
    return resolve_data_args(training_parser(__doc__, model_default="SUP").parse_args())


@report_user_errors
def main():
    args = parse_args()
    if args.check_data:
        return print_data_report(args)
    device, resume_from, ranks = setup(args, with_teacher=False)  # ranks: this process under torchrun (0 of 1 without)
    start = resume_from["iteration"] if resume_from else 0

    # Data: only the first labelnum training cases, all labeled.
    labeled_ids, _ = split_labeled(read_case_list(args.train_list), args.labelnum, args.max_samples)
    batches = make_training_batches(args.root_path, labeled_ids, [], args.labeled_bs, args.labeled_bs,
                                    args.patch_size, args.num_classes, args.seed, device, bool(args.data_on_device),
                                    args.num_workers, start_batch=start, rank=ranks.rank, world_size=ranks.world_size,
                                    normalize=args.normalize, crop_margin=args.crop_margin, crop_fill=args.crop_fill)
    validator = make_validator(args, device, ranks)
    run = open_run(args, device, ranks)
    run.info(f"{len(labeled_ids)} labeled cases, patch {args.patch_size}")

    layout = memory_layout(device, bool(args.channels_last))
    model = ranks.sync_batchnorm(build_vnet(args.num_classes, device, layout), device)
    model_forward = ranks.wrap(model, device)  # DistributedDataParallel under torchrun
    model_forward = torch.compile(model_forward) if args.compile else model_forward
    optimizer = sgd(model, args.base_lr, foreach=bool(args.foreach))
    precision = MixedPrecision(device, args.amp)
    if resume_from:
        restore(resume_from, {"student": model}, optimizer, precision.scaler, ranks)
        run.info(f"resumed after iteration {start}")
    else:
        ranks.reseed(args.seed)  # each rank its own dropout, the same initial weights
    model.train()

    periodic = Periodic(run, args.max_iterations, args.log_every, args.save_every, args.snapshot_every,
                        args.val_every, validator, device=device, batches=batches, start=start,
                        best_score=resume_from.get("best_val_dice", -1.0) if resume_from else -1.0, ranks=ranks)
    progress = tqdm(range(start, args.max_iterations), desc="labeled only", initial=start, total=args.max_iterations,
                    dynamic_ncols=True, disable=None if ranks.is_main else True)  # no bar when piped
    for iteration in progress:
        lr = lr_at(iteration, args.base_lr, args.lr_decay_every)
        set_lr(optimizer, lr)
        image, label = next(batches)
        image = image.contiguous(memory_format=layout)

        with precision.autocast():
            loss = supervised_loss(model_forward(image), label)
        precision.step(loss, optimizer)
        ranks.average_buffers(model)  # equal BatchNorm statistics on every rank

        periodic.after(iteration, {"loss/total": loss, "loss/supervised": loss, "train/lr": lr},
                       lambda: checkpoint_state(iteration, args, model, None, optimizer, precision.scaler), model)
        if periodic.last:
            progress.set_postfix(loss=f"{periodic.last['loss/total']:.4f}", refresh=False)
    run.close()
    ranks.close()


if __name__ == "__main__":
    main()
