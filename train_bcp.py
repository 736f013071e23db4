"""BCP: bidirectional copy-paste for semi-supervised 3D segmentation (Bai et al., CVPR 2023),
with the VNet of the left-atrium scripts, in two stages.

1. Pre-training (the first --pretrain_iterations): on labeled patches alone, a cube of 2/3 of
   the patch from one labeled patch is pasted into another, and the network learns the pasted
   label, (cross-entropy + Dice) / 2.
2. Self-training (the rest, from the pre-trained network's last weights, never a checkpoint
   chosen on validation cases): an EMA teacher (a copy of the pre-trained network) labels the
   unlabeled patches (foreground where its softmax is at least 0.5, the largest component
   kept). The student learns from two mixed patches, a labeled patch with an unlabeled cube
   pasted in and an unlabeled patch with a labeled cube, each voxel's loss weighted 1 where its
   target is a ground-truth label and --u_weight (0.5) where it is a pseudo-label.

BCP's own defaults differ from Mean Teacher's: --batch_size 8 with --labeled_bs 4 (4 labeled +
4 unlabeled, not 2 + 2), --max_iterations 17000 (2000 pre-training + 15000 self-training, not
6000), the learning rate constant while pre-training and x0.1 every --lr_decay_every (2500)
iterations of self-training, counted from its start; the teacher's decay is a constant
--ema_decay (0.99), without Mean Teacher's warm-up.

    python train_bcp.py --dataset_name LA --labelnum 8 --gpu 0
"""
import torch

from training.arguments import report_data_if_asked, require_finite_number, resolve_data_args, training_config, training_parser
from training.schedule import lr_at
from training.session import TrainingSession
from utils.copy_paste import EmptyPseudoLabelWatch, copy_paste_loss, cube_mask, paste, pseudo_labels, whole_patch_loss
from utils.ema import make_teacher, update_teacher
from utils.errors import UserError, report_user_errors

PSEUDO_LABEL_WATCH = 50  # self-training iterations over which the pseudo-labels' foreground is watched


def parse_args():
    parser = training_parser(__doc__, model_default="BCP")
    parser.set_defaults(batch_size=8, labeled_bs=4, max_iterations=17000)
    bcp = parser.add_argument_group("bidirectional copy-paste")
    bcp.add_argument("--pretrain_iterations", type=int, default=2000,
                     help="iterations of the first stage, copy-paste between labeled patches alone")
    bcp.add_argument("--mask_ratio", type=float, default=2 / 3, help="side of the pasted cube, as a fraction of the patch")
    bcp.add_argument("--u_weight", type=float, default=0.5, help="loss weight of a pseudo-labeled voxel (1 for a labeled one)")
    bcp.add_argument("--ema_decay", type=float, default=0.99, help="teacher = ema_decay * teacher + (1 - ema_decay) * student")
    args = resolve_data_args(parser.parse_args())
    if args.labeled_bs % 2 or args.batch_size != 2 * args.labeled_bs:
        raise UserError(f"BCP pairs labeled with unlabeled patches: --labeled_bs must be even and --batch_size twice "
                        f"it (4 and 8 in BCP), got {args.labeled_bs} and {args.batch_size}")
    if not 0 <= args.pretrain_iterations <= args.max_iterations:  # equal: stop after pre-training, --resume later
        raise UserError(f"--pretrain_iterations must be between 0 and --max_iterations ({args.max_iterations}), "
                        f"got {args.pretrain_iterations}")
    if not 0 < args.mask_ratio < 1:
        raise UserError(f"--mask_ratio must be between 0 and 1 (2/3 in BCP), got {args.mask_ratio}")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise UserError(f"--ema_decay must be between 0 and 1 (0.99 in BCP), got {args.ema_decay}")
    require_finite_number(args, "u_weight", allow_zero=True)
    return args


@report_user_errors
def main():
    args = parse_args()
    if report_data_if_asked(args):  # --check_data: the report alone, no training
        return
    session = TrainingSession(training_config(args, batch_size=args.batch_size), method="BCP", with_teacher=True)

    # Data: the first --labelnum training cases are labeled (or, without it, those with labels), the rest unlabeled.
    labeled_ids, unlabeled_ids = session.split_cases(needs_unlabeled=True)
    session.load_batches(labeled_ids, unlabeled_ids)
    session.open_run(f"patch {args.patch_size}; "
                     f"pre-training for {args.pretrain_iterations} iterations, then self-training")

    student = session.network()
    teacher = make_teacher(student, session.network())  # becomes the pre-trained network's copy in stage 2
    student_forward = session.trainable(student)
    session.sgd(student)
    session.start({"student": student, "teacher": teacher})
    student.train()
    teacher.train()  # as in BCP: the pseudo-labels come from the teacher in train mode

    pretraining = args.pretrain_iterations
    half = args.labeled_bs // 2
    empty_pseudo_labels = EmptyPseudoLabelWatch(window=PSEUDO_LABEL_WATCH)

    def stage_lr(iteration):  # constant while pre-training, then step decay from the stage's start
        return args.base_lr if iteration < pretraining else lr_at(iteration - pretraining, args.base_lr,
                                                                  args.lr_decay_every)

    for iteration in session.iterations(lr_at=stage_lr):
        if iteration == pretraining:
            # Stage 2 starts from stage 1's last weights: the teacher becomes their copy, and
            # the optimizer starts afresh, as BCP's self-training does.
            make_teacher(student, teacher)
            session.sgd(student)
            session.info(f"self-training from the pre-trained network of iteration {pretraining}")
        image, label = session.next_batch()
        labeled_a, labeled_b = image[:half], image[half:args.labeled_bs]
        label_a, label_b = label[:half], label[half:args.labeled_bs]
        cube = cube_mask(args.patch_size, args.mask_ratio, session.device)  # 0 inside the cube, 1 outside

        if iteration < pretraining:
            # Stage 1: labeled patch a around a cube of labeled patch b.
            with session.autocast():
                logits = student_forward(paste(labeled_a, labeled_b, cube))
            loss = whole_patch_loss(logits, paste(label_a, label_b, cube))
            scalars = {"loss/total": loss, "loss/supervised": loss}
        else:
            # Stage 2: pseudo-labels for the unlabeled patches, then both directions of the paste.
            unlabeled_a, unlabeled_b = image[args.labeled_bs:args.labeled_bs + half], image[args.labeled_bs + half:]
            with session.autocast():
                with torch.no_grad():
                    pseudo_a, pseudo_b = pseudo_labels(teacher(unlabeled_a)), pseudo_labels(teacher(unlabeled_b))
                # One forward pass of both mixed batches (the official code makes two).
                mixed = torch.cat([paste(labeled_a, unlabeled_a, cube), paste(unlabeled_b, labeled_b, cube)])
                logits_labeled_outside, logits_unlabeled_outside = student_forward(mixed).split(half)
            pseudo_foreground = torch.cat([pseudo_a, pseudo_b]).ne(0).float().mean()
            if empty_pseudo_labels.update(pseudo_foreground, label[:args.labeled_bs].ne(0).float().mean()):
                pseudo_share, labeled_share = empty_pseudo_labels.shares()
                session.info(f"WARNING: over {PSEUDO_LABEL_WATCH} self-training iterations the pseudo-labels mark "
                             f"{100 * pseudo_share:.3g} % of the unlabeled voxels foreground, the labels "
                             f"{100 * labeled_share:.3g} % of the labeled ones: the pre-trained network finds almost "
                             f"no foreground, so the unlabeled voxels teach background until it does; if "
                             f"train/pseudo_foreground stays near 0, pre-train longer (--pretrain_iterations, "
                             f"now {pretraining}) and validate the first stage (--val_every)")
            loss_labeled_outside = copy_paste_loss(logits_labeled_outside, label_a, pseudo_a, cube,
                                                   outside_weight=1.0, inside_weight=args.u_weight)
            loss_unlabeled_outside = copy_paste_loss(logits_unlabeled_outside, pseudo_b, label_b, cube,
                                                     outside_weight=args.u_weight, inside_weight=1.0)
            loss = loss_labeled_outside + loss_unlabeled_outside
            scalars = {"loss/total": loss, "loss/labeled_outside": loss_labeled_outside,
                       "loss/unlabeled_outside": loss_unlabeled_outside, "train/pseudo_foreground": pseudo_foreground}

        session.step(loss)
        if iteration >= pretraining:
            update_teacher(teacher, student, args.ema_decay, foreach=bool(args.foreach))
        session.average_buffers(student, teacher)
        session.after(iteration, scalars)
    session.close()


if __name__ == "__main__":
    main()
