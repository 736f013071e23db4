"""Mean Teacher for semi-supervised 3D segmentation (Tarvainen & Valpola, NeurIPS 2017),
with the VNet and schedule of the left-atrium literature (UA-MT, Yu et al., MICCAI 2019).

Each iteration: the student sees labeled and unlabeled patches; a supervised loss on the
labeled ones; the teacher, an exponential moving average of the student, predicts the
unlabeled patches under input noise; the student is pulled towards those predictions by a
consistency loss whose weight ramps up; then the teacher follows the student.

    python train_mean_teacher.py --dataset_name LA --labelnum 16 --gpu 0
    torchrun --nproc_per_node 2 train_mean_teacher.py --dataset_name LA --labelnum 16 --gpu 0,1
"""
import torch
from tqdm import tqdm

from dataloaders.batches import make_training_batches
from dataloaders.case_lists import read_case_list, split_labeled
from utils.arguments import require_finite_number, resolve_data_args, training_parser
from utils.ema import ema_decay_at, make_teacher, update_teacher
from utils.device import memory_layout
from utils.errors import UserError, report_user_errors
from utils.losses import CONSISTENCY_LOSSES, supervised_loss
from utils.ramps import sigmoid_rampup
from utils.training import (MixedPrecision, Periodic, build_vnet, checkpoint_state, lr_at, make_validator, open_run,
                            print_data_report, restore, set_lr, sgd, setup)


def parse_args():
    parser = training_parser(__doc__, model_default="MT")
    mt = parser.add_argument_group("mean teacher")
    mt.add_argument("--ema_decay", type=float, default=0.99, help="teacher = ema_decay * teacher + (1 - ema_decay) * student")
    mt.add_argument("--consistency_type", default="mse", choices=sorted(CONSISTENCY_LOSSES))
    mt.add_argument("--consistency", type=float, default=0.1, help="final consistency weight")
    mt.add_argument("--consistency_rampup", type=float, default=40.0,
                    help="ramp-up length, in units of 150 iterations")
    mt.add_argument("--noise_std", type=float, default=0.1, help="std of the teacher's input noise, clipped at 2 std")
    args = resolve_data_args(parser.parse_args())
    if args.labeled_bs >= args.batch_size:
        raise UserError(f"--labeled_bs ({args.labeled_bs}) must be smaller than --batch_size ({args.batch_size}): "
                        "Mean Teacher needs unlabeled samples in every batch")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise UserError(f"--ema_decay must be between 0 and 1 (0.99 in the original), got {args.ema_decay}")
    for flag in ("consistency", "consistency_rampup", "noise_std"):
        require_finite_number(args, flag, allow_zero=True)
    return args


@report_user_errors
def main():
    args = parse_args()
    if args.check_data:
        return print_data_report(args)
    device, resume_from, ranks = setup(args, with_teacher=True)  # ranks: this process under torchrun (0 of 1 without)
    start = resume_from["iteration"] if resume_from else 0

    # Data: the first labelnum training cases are labeled, the rest unlabeled.
    labeled_ids, unlabeled_ids = split_labeled(read_case_list(args.train_list), args.labelnum, args.max_samples)
    if not unlabeled_ids:
        raise UserError(f"all {len(labeled_ids)} training cases are labeled, so Mean Teacher has no unlabeled data; "
                        "lower --labelnum or use train_sup.py")
    batches = make_training_batches(args.root_path, labeled_ids, unlabeled_ids, args.batch_size, args.labeled_bs,
                                    args.patch_size, args.num_classes, args.seed, device, bool(args.data_on_device),
                                    args.num_workers, start_batch=start, rank=ranks.rank, world_size=ranks.world_size,
                                    normalize=args.normalize, crop_margin=args.crop_margin, crop_fill=args.crop_fill)
    validator = make_validator(args, device, ranks)
    run = open_run(args, device, ranks)
    run.info(f"{len(labeled_ids)} labeled and {len(unlabeled_ids)} unlabeled cases, patch {args.patch_size}")

    # Models: the student learns; the teacher is its moving average and gets no gradients.
    # Under torchrun the student trains as DistributedDataParallel and each rank keeps a copy
    # of the teacher, updated from the same synchronised student.
    layout = memory_layout(device, bool(args.channels_last))
    student = ranks.sync_batchnorm(build_vnet(args.num_classes, device, layout), device)
    teacher = make_teacher(student, ranks.sync_batchnorm(build_vnet(args.num_classes, device, layout), device))
    student_forward = ranks.wrap(student, device)
    student_forward = torch.compile(student_forward) if args.compile else student_forward
    optimizer = sgd(student, args.base_lr, foreach=bool(args.foreach))
    precision = MixedPrecision(device, args.amp)
    consistency_loss_fn = CONSISTENCY_LOSSES[args.consistency_type]
    if resume_from:
        restore(resume_from, {"student": student, "teacher": teacher}, optimizer, precision.scaler, ranks)
        run.info(f"resumed after iteration {start}")
    else:
        ranks.reseed(args.seed)  # each rank its own noise and dropout, the same initial weights
    student.train()
    teacher.train()  # as in the original: batch statistics and dropout are part of the teacher's noise

    periodic = Periodic(run, args.max_iterations, args.log_every, args.save_every, args.snapshot_every,
                        args.val_every, validator, device=device, batches=batches, start=start,
                        best_score=resume_from.get("best_val_dice", -1.0) if resume_from else -1.0, ranks=ranks)
    labeled_bs = args.labeled_bs
    progress = tqdm(range(start, args.max_iterations), desc="Mean Teacher", initial=start, total=args.max_iterations,
                    dynamic_ncols=True, disable=None if ranks.is_main else True)  # no bar when piped
    for iteration in progress:
        lr = lr_at(iteration, args.base_lr, args.lr_decay_every)
        set_lr(optimizer, lr)
        image, label = next(batches)
        image = image.contiguous(memory_format=layout)
        unlabeled = image[labeled_bs:]

        with precision.autocast():
            # Student on the whole batch; supervised loss on its labeled part.
            student_logits = student_forward(image)
            loss_sup = supervised_loss(student_logits[:labeled_bs], label[:labeled_bs])

            # Teacher on the unlabeled part, under small clipped Gaussian input noise.
            noise = torch.clamp(torch.randn_like(unlabeled) * args.noise_std, -2 * args.noise_std, 2 * args.noise_std)
            with torch.no_grad():
                teacher_logits = teacher(unlabeled + noise)

        # Consistency between student and teacher on unlabeled data, ramped up over training.
        consistency_weight = args.consistency * sigmoid_rampup(iteration // 150, args.consistency_rampup)
        loss_consistency = consistency_loss_fn(student_logits[labeled_bs:], teacher_logits)
        loss = loss_sup + consistency_weight * loss_consistency

        precision.step(loss, optimizer)
        update_teacher(teacher, student, ema_decay_at(iteration, args.ema_decay), foreach=bool(args.foreach))
        ranks.average_buffers(student, teacher)  # equal BatchNorm statistics on every rank

        periodic.after(iteration, {"loss/total": loss, "loss/supervised": loss_sup,
                                   "loss/consistency": loss_consistency, "train/consistency_weight": consistency_weight,
                                   "train/lr": lr},
                       lambda: checkpoint_state(iteration, args, student, teacher, optimizer, precision.scaler),
                       student)
        if periodic.last:
            progress.set_postfix(loss=f"{periodic.last['loss/total']:.4f}", refresh=False)
    run.close()
    ranks.close()


if __name__ == "__main__":
    main()
