"""AD-MT: alternate diverse teaching for semi-supervised 3D segmentation (Zhao et al., ECCV
2024), with the VNet of the left-atrium scripts.

A student and two EMA teachers. The teachers take turns: only one follows the student at a
time, for a random number of iterations (1 to --switch_period), and each turn also decides the
student's strong view of the unlabeled patches: teacher A's turns an intensity change
(brightness, contrast, noise), teacher B's a 3D CutMix of the unlabeled batch. Each iteration:

1. the teachers label the weak view (the patches as the batch stream augments them): the
   entropy-weighted ensemble of their softmax, each voxel's class and confidence;
2. the strong view is made, the pseudo-labels and confidences moved with it under CutMix;
3. the student sees labeled, weak and strong patches in one pass; where the teachers disagree
   and the student's weak prediction is another class with a higher confidence, the student's
   class replaces the ensemble's;
4. loss = (cross-entropy + Dice over every class, background included) / 2 on the labeled
   patches + a ramped-up weight (--consistency, 2.0) x cross-entropy on the strong view's
   confident voxels: confidence at least --conf_threshold (0.8) times the share of the best
   class's reach that the voxel's class reaches (--threshold_rule reach, the default: a class
   the network cannot push to 0.8 still teaches; utils/class_thresholds.py says why), or at
   least --conf_threshold itself (--threshold_rule fixed, as the official code);
5. SGD step (poly learning-rate decay), then the teacher whose turn it is follows the student.

--teachers 1 keeps one teacher, always following: the weak-to-strong core alone (confident
pseudo-labels, alternating intensity and CutMix views), to see what the second teacher adds.
AD-MT's defaults differ from Mean Teacher's: 15000 iterations, poly decay (--lr_schedule poly),
--consistency 2.0. docs/methods.md lists where this script departs from the official code.

    python train_admt.py --dataset_name LA --labelnum 8 --gpu 0
    python train_admt.py --dataset_name LA --labelnum 8 --teachers 1 --exp w2s --gpu 0
"""
import torch

from training.arguments import report_data_if_asked, require_finite_number, resolve_data_args, training_config, training_parser
from training.schedule import poly_lr_at
from training.session import TrainingSession
from utils.class_thresholds import ReachRelativeThresholds
from utils.cutmix import random_boxes
from utils.dual_teachers import TeacherTurns, settle_with_student, teachers_ensemble, teachers_pseudo_labels
from utils.ema import ema_decay_at, make_teacher, update_teacher
from utils.errors import UserError, report_user_errors
from utils.intensity_perturbation import strong_intensity_view
from utils.losses import confident_cross_entropy, supervised_loss
from utils.ramps import sigmoid_rampup


def parse_args():
    parser = training_parser(__doc__, model_default="ADMT")
    parser.set_defaults(max_iterations=15000)
    admt = parser.add_argument_group("alternate diverse teaching")
    admt.add_argument("--teachers", type=int, default=2, choices=[1, 2],
                      help="2: AD-MT's alternating pair; 1: one teacher, always following (the weak-to-strong core)")
    admt.add_argument("--switch_period", type=int, default=19,
                      help="a teacher's turn lasts a random 1 to this many iterations")
    admt.add_argument("--conf_threshold", type=float, default=0.8,
                      help="voxels whose pseudo-label confidence is below this teach nothing")
    admt.add_argument("--threshold_rule", default="reach", choices=["reach", "fixed"],
                      help="reach: each class's threshold is --conf_threshold scaled by how high that class's "
                           "probability gets, relative to the best class (a class capped below the threshold "
                           "still teaches); fixed: --conf_threshold for every class (the official code)")
    admt.add_argument("--consistency", type=float, default=2.0, help="final weight of the unlabeled loss")
    admt.add_argument("--consistency_rampup", type=float, default=40.0,
                      help="ramp-up length of that weight, in units of 150 iterations")
    admt.add_argument("--ema_decay", type=float, default=0.99,
                      help="teacher = ema_decay * teacher + (1 - ema_decay) * student, in the teacher's turns")
    admt.add_argument("--lr_schedule", default="poly", choices=["poly", "step"],
                      help="poly: base_lr * (1 - iteration / max_iterations)^0.9 (AD-MT); step: x0.1 every "
                           "--lr_decay_every")
    args = resolve_data_args(parser.parse_args())
    if args.labeled_bs >= args.batch_size:
        raise UserError(f"--labeled_bs ({args.labeled_bs}) must be smaller than --batch_size ({args.batch_size}): "
                        "the teachers need unlabeled samples in every batch")
    if not 0.0 <= args.conf_threshold <= 1.0:
        raise UserError(f"--conf_threshold is a softmax probability, between 0 and 1 (0.8 in AD-MT), "
                        f"got {args.conf_threshold}")
    if args.switch_period < 1:
        raise UserError(f"--switch_period must be at least 1 iteration (19 in AD-MT), got {args.switch_period}")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise UserError(f"--ema_decay must be between 0 and 1 (0.99 in AD-MT), got {args.ema_decay}")
    for flag in ("consistency", "consistency_rampup"):
        require_finite_number(args, flag, allow_zero=True)
    return args


@report_user_errors
def main():
    args = parse_args()
    if report_data_if_asked(args):  # --check_data: the report alone, no training
        return
    session = TrainingSession(training_config(args, batch_size=args.batch_size), method="AD-MT", with_teacher=True)
    if args.threshold_rule == "reach" and session.resume_from and "class_reach" not in session.resume_from:
        raise UserError(f"{args.resume} was trained with one fixed confidence threshold (before --threshold_rule "
                        f"existed); resume it with --threshold_rule fixed")

    # Data: the first --labelnum training cases are labeled (or, without it, those with labels), the rest unlabeled.
    labeled_ids, unlabeled_ids = session.split_cases(needs_unlabeled=True)
    session.load_batches(labeled_ids, unlabeled_ids)
    session.open_run(f"patch {args.patch_size}; {args.teachers} teacher(s), turns of 1 to {args.switch_period} "
                     f"iterations, confidence threshold {args.conf_threshold} ({args.threshold_rule})")

    # Models: the student learns; each teacher is a moving average of it over its own turns.
    student = session.network()
    teachers = [make_teacher(student, session.network()) for _ in range(args.teachers)]
    student_forward = session.trainable(student)
    session.sgd(student)
    # Each class's confidence threshold, from the highest probability the teachers give it.
    thresholds = (ReachRelativeThresholds(session.data.num_classes, args.conf_threshold).to(session.device)
                  if args.threshold_rule == "reach" else None)
    session.start({"student": student, "teacher": teachers[0],
                   **({"teacher_b": teachers[1]} if args.teachers == 2 else {}),
                   **({"class_reach": thresholds} if thresholds is not None else {})})
    student.train()
    turns = TeacherTurns(args.switch_period, args.seed)  # a function of the seed: nothing to save

    def learning_rate(iteration):
        return (poly_lr_at(iteration, args.base_lr, args.max_iterations) if args.lr_schedule == "poly"
                else session.config.schedule.lr_at(iteration))

    labeled_bs = args.labeled_bs
    for iteration in session.iterations(lr_at=learning_rate):
        image, label = session.next_batch()
        weak = image[labeled_bs:]
        turn = turns.turn(iteration)  # 0: teacher A's turn and the intensity view; 1: teacher B's and CutMix
        following = teachers[min(turn, args.teachers - 1)]  # one teacher follows in every turn

        with session.autocast():
            # 1. The teachers label the weak view; the one following the student predicts in
            # train mode, the resting one in eval mode, as in the official code.
            with torch.no_grad():
                probs = []
                for teacher in teachers:
                    teacher.train(teacher is following)
                    probs.append(torch.softmax(teacher(weak).float(), dim=1))
                ensemble = teachers_ensemble(*probs)
                pseudo = teachers_pseudo_labels(*probs, ensemble=ensemble)
                if thresholds is not None:  # this batch counts from the next iteration on
                    class_thresholds = thresholds.per_class()
                    thresholds.update(ensemble)

            # 2. The strong view: an intensity change in teacher A's turns, a CutMix of the
            # unlabeled patches (pseudo-labels moved alike) in teacher B's.
            if turn == 0:
                strong, move = strong_intensity_view(weak), (lambda voxels: voxels)
            else:
                move = random_boxes(weak.shape[0], weak.shape[2:]).apply
                strong = move(weak)
                pseudo = pseudo.moved(move)

            # 3. The student on labeled, weak and strong patches in one pass.
            logits = student_forward(torch.cat([image, strong]).contiguous(memory_format=session.memory_format))
            logits_labeled, logits_weak, logits_strong = logits.split([labeled_bs, weak.shape[0], weak.shape[0]])
            with torch.no_grad():
                student_confidence, student_labels = torch.softmax(logits_weak.float(), dim=1).max(dim=1)
            pseudo, from_student = settle_with_student(pseudo, move(student_labels), move(student_confidence))

        # 4. Supervised loss, and the confident voxels of the strong view, ramped up.
        loss_sup = supervised_loss(logits_labeled, label[:labeled_bs], with_background=True)  # as AD-MT's DiceLoss
        voxel_thresholds = args.conf_threshold if thresholds is None else class_thresholds[pseudo.labels]
        loss_unsup, confident_share = confident_cross_entropy(logits_strong, pseudo.labels, pseudo.confidence,
                                                              voxel_thresholds)
        weight = args.consistency * sigmoid_rampup(iteration // 150, args.consistency_rampup)
        loss = loss_sup + weight * loss_unsup

        # 5. Step, then the teacher of this turn follows the student (BatchNorm statistics too:
        # the resting teacher predicts with them).
        session.step(loss)
        update_teacher(following, student, ema_decay_at(iteration // 2, args.ema_decay), foreach=bool(args.foreach),
                       buffers=True)
        session.average_buffers(student, *teachers, *([thresholds] if thresholds is not None else []))

        session.after(iteration, {"loss/total": loss, "loss/supervised": loss_sup, "loss/unsupervised": loss_unsup,
                                  "train/consistency_weight": weight, "train/confident_share": confident_share,
                                  "train/teacher_conflict": pseudo.conflict.float().mean(),
                                  "train/from_student": from_student.float().mean(), "train/turn": turn,
                                  **({f"train/threshold_class{c}": class_thresholds[c] for c in range(len(class_thresholds))}
                                     if thresholds is not None else {})})
    session.close()


if __name__ == "__main__":
    main()
