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

from training.arguments import report_data_if_asked, resolve_data_args, training_config, training_parser
from training.method_flags import add_mean_teacher_flags, check_mean_teacher_flags
from training.session import TrainingSession
from utils.ema import clipped_noise, ema_decay_at, make_teacher, update_teacher
from utils.errors import report_user_errors
from utils.losses import CONSISTENCY_LOSSES, supervised_loss
from utils.ramps import sigmoid_rampup


def parse_args():
    parser = training_parser(__doc__, model_default="MT")
    add_mean_teacher_flags(parser)
    return check_mean_teacher_flags(resolve_data_args(parser.parse_args()))


@report_user_errors
def main():
    args = parse_args()
    if report_data_if_asked(args):  # --check_data: the report alone, no training
        return
    session = TrainingSession(training_config(args, batch_size=args.batch_size), method="Mean Teacher",
                              with_teacher=True)

    # Data: the first --labelnum training cases are labeled (or, without it, those with labels), the rest unlabeled.
    labeled_ids, unlabeled_ids = session.split_cases(needs_unlabeled=True)
    session.load_batches(labeled_ids, unlabeled_ids)
    session.open_run(f"patch {args.patch_size}")

    # Models: the student learns; the teacher is its moving average and gets no gradients.
    # Under torchrun the student trains as DistributedDataParallel and each rank keeps a copy
    # of the teacher, updated from the same synchronised student.
    student = session.network()
    teacher = make_teacher(student, session.network())
    student_forward = session.trainable(student)
    session.sgd(student)
    session.start({"student": student, "teacher": teacher})  # resumes, or seeds each rank's noise
    student.train()
    teacher.train()  # as in the original: batch statistics and dropout are part of the teacher's noise

    consistency_loss_fn = CONSISTENCY_LOSSES[args.consistency_type]
    labeled_bs = args.labeled_bs
    for iteration in session.iterations():
        image, label = session.next_batch()
        unlabeled = image[labeled_bs:]

        with session.autocast():
            # Student on the whole batch; supervised loss on its labeled part.
            student_logits = student_forward(image)
            loss_sup = supervised_loss(student_logits[:labeled_bs], label[:labeled_bs])

            # Teacher on the unlabeled part, under small clipped Gaussian input noise.
            with torch.no_grad():
                teacher_logits = teacher(unlabeled + clipped_noise(unlabeled, args.noise_std))

        # Consistency between student and teacher on unlabeled data, ramped up over training.
        consistency_weight = args.consistency * sigmoid_rampup(iteration // 150, args.consistency_rampup)
        loss_consistency = consistency_loss_fn(student_logits[labeled_bs:], teacher_logits)
        loss = loss_sup + consistency_weight * loss_consistency

        session.step(loss)
        update_teacher(teacher, student, ema_decay_at(iteration, args.ema_decay), foreach=bool(args.foreach))
        session.average_buffers(student, teacher)  # equal BatchNorm statistics on every rank

        session.after(iteration, {"loss/total": loss, "loss/supervised": loss_sup,
                                  "loss/consistency": loss_consistency, "train/consistency_weight": consistency_weight})
    session.close()


if __name__ == "__main__":
    main()
