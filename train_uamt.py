"""UA-MT: uncertainty-aware Mean Teacher for semi-supervised 3D segmentation (Yu et al.,
MICCAI 2019), with the VNet and schedule of the left-atrium scripts.

Mean Teacher (train_mean_teacher.py) with one change: before the consistency loss, the teacher
predicts the unlabeled patches T more times (dropout on, fresh clipped noise each time); where
the entropy of the mean prediction is above a threshold, the voxel is left out of the
consistency loss. The threshold rises from 3/4 of the largest entropy (ln 2 for two classes) to
all of it over the run, so more voxels count as training goes on.

    python train_uamt.py --dataset_name LA --labelnum 16 --gpu 0
"""
import torch

from training.arguments import report_data_if_asked, resolve_data_args, training_config, training_parser
from training.method_flags import add_mean_teacher_flags, check_mean_teacher_flags
from training.session import TrainingSession
from utils.ema import clipped_noise, ema_decay_at, make_teacher, update_teacher
from utils.errors import UserError, report_user_errors
from utils.losses import supervised_loss
from utils.ramps import sigmoid_rampup
from utils.uncertainty import (masked_softmax_mse, mean_teacher_probabilities, predictive_entropy,
                               uncertainty_threshold)


def parse_args():
    parser = training_parser(__doc__, model_default="UAMT")
    uamt = add_mean_teacher_flags(parser)
    uamt.add_argument("--uncertainty_passes", type=int, default=8,
                      help="T, the stochastic teacher predictions whose mean gives the uncertainty (even)")
    uamt.add_argument("--threshold_start", type=float, default=0.75,
                      help="uncertainty threshold at the start, as a fraction of the largest entropy ln C")
    uamt.add_argument("--threshold_end", type=float, default=1.0, help="... and at the end of the run")
    args = check_mean_teacher_flags(resolve_data_args(parser.parse_args()))
    if args.consistency_type != "mse":
        raise UserError("UA-MT's masked consistency is the squared difference of the softmax outputs; "
                        "drop --consistency_type (or use train_mean_teacher.py for kl)")
    if args.uncertainty_passes < 2 or args.uncertainty_passes % 2:
        raise UserError(f"--uncertainty_passes must be an even number of at least 2 (8 in UA-MT), "
                        f"got {args.uncertainty_passes}")
    if not 0 <= args.threshold_start <= args.threshold_end <= 1:
        raise UserError(f"--threshold_start and --threshold_end must satisfy 0 <= start <= end <= 1 "
                        f"(UA-MT: 0.75 and 1), got {args.threshold_start} and {args.threshold_end}")
    return args


@report_user_errors
def main():
    args = parse_args()
    if report_data_if_asked(args):  # --check_data: the report alone, no training
        return
    session = TrainingSession(training_config(args, batch_size=args.batch_size), method="UA-MT", with_teacher=True)

    # Data: the first --labelnum training cases are labeled (or, without it, those with labels), the rest unlabeled.
    labeled_ids, unlabeled_ids = session.split_cases(needs_unlabeled=True)
    session.load_batches(labeled_ids, unlabeled_ids)
    session.open_run(f"patch {args.patch_size}, "
                     f"{args.uncertainty_passes} teacher passes for the uncertainty")

    # Models: the student learns; the teacher is its moving average.
    student = session.network()
    teacher = make_teacher(student, session.network())
    student_forward = session.trainable(student)
    session.sgd(student)
    session.start({"student": student, "teacher": teacher})
    student.train()
    teacher.train()  # dropout and batch statistics are what makes the T passes differ

    labeled_bs, num_classes = args.labeled_bs, session.data.num_classes
    for iteration in session.iterations():
        image, label = session.next_batch()
        with session.autocast():
            student_logits = student_forward(image)
            loss_sup = supervised_loss(student_logits[:labeled_bs], label[:labeled_bs])
            with torch.no_grad():
                unlabeled = image[labeled_bs:]
                teacher_logits = teacher(unlabeled + clipped_noise(unlabeled, args.noise_std))
                # Uncertainty: the entropy of the mean of T noisy teacher predictions.
                mean_probs = mean_teacher_probabilities(teacher, unlabeled, passes=args.uncertainty_passes,
                                                        noise_std=args.noise_std)

        threshold = uncertainty_threshold(iteration, args.max_iterations, num_classes,
                                          start=args.threshold_start, end=args.threshold_end)
        certain = predictive_entropy(mean_probs) < threshold
        consistency_weight = args.consistency * sigmoid_rampup(iteration // 150, args.consistency_rampup)
        loss_consistency = masked_softmax_mse(student_logits[labeled_bs:], teacher_logits, certain)
        loss = loss_sup + consistency_weight * loss_consistency

        session.step(loss)
        update_teacher(teacher, student, ema_decay_at(iteration, args.ema_decay), foreach=bool(args.foreach))
        session.average_buffers(student, teacher)

        session.after(iteration, {"loss/total": loss, "loss/supervised": loss_sup,
                                  "loss/consistency": loss_consistency, "train/consistency_weight": consistency_weight,
                                  "train/certain_fraction": certain.float().mean()})
    session.close()


if __name__ == "__main__":
    main()
