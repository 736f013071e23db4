"""Labeled-only baseline: the VNet trained on the labeled cases alone, with the same
supervised loss, schedule and flags as train_mean_teacher.py. Comparing the two isolates
what the unlabeled cases add.

Each iteration takes ``labeled_bs`` labeled patches (the labeled part of a Mean Teacher
batch); ``--batch_size`` is accepted for command-line compatibility and not used.

    python train_sup.py --dataset_name LA --labelnum 16 --gpu 0
    torchrun --nproc_per_node 2 train_sup.py --dataset_name LA --labelnum 16 --gpu 0,1
"""
from training.arguments import report_data_if_asked, resolve_data_args, training_config, training_parser
from training.session import TrainingSession
from utils.errors import report_user_errors
from utils.losses import supervised_loss


def parse_args():
    return resolve_data_args(training_parser(__doc__, model_default="SUP").parse_args())


@report_user_errors
def main():
    args = parse_args()
    if report_data_if_asked(args):  # --check_data: the report alone, no training
        return
    labeled_part = training_config(args, batch_size=args.labeled_bs)  # the labeled part of a Mean Teacher batch
    session = TrainingSession(labeled_part, method="labeled only", with_teacher=False)

    # Data: the labeled training cases alone (the first --labelnum, or those with labels).
    labeled_ids, _ = session.split_cases()
    session.load_batches(labeled_ids, [])
    session.open_run(f"patch {args.patch_size}")

    model = session.network()
    model_forward = session.trainable(model)  # DistributedDataParallel under torchrun
    session.sgd(model)
    session.start({"student": model})  # resumes, or seeds each rank's dropout
    model.train()

    for iteration in session.iterations():
        image, label = session.next_batch()
        with session.autocast():
            loss = supervised_loss(model_forward(image), label)
        session.step(loss)
        session.average_buffers(model)  # equal BatchNorm statistics on every rank
        session.after(iteration, {"loss/total": loss, "loss/supervised": loss})
    session.close()


if __name__ == "__main__":
    main()
