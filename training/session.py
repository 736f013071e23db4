"""The training session: the plumbing every method script needs, one call each, so that a
script shows only its method. In the order a script calls it:

    session = TrainingSession(config, method="Mean Teacher", with_teacher=True)  # device, seeds, resume check
    labeled_ids, unlabeled_ids = session.split_cases()        # --labelnum, or the cases with labels
    session.load_batches(labeled_ids, unlabeled_ids)          # every case read and checked
    session.open_run("...")                                   # validation cases, run folder, header
    student = session.network()                               # the VNet, once per model
    forward = session.trainable(student)                      # DDP under torchrun, torch.compile
    session.sgd(student)
    session.start({"student": student, ...})                  # resume, or fresh per-rank seeds
    for iteration in session.iterations():                    # sets the learning rate
        image, label = session.next_batch()
        with session.autocast(): ...
        session.step(loss)
        session.after(iteration, {"loss/total": loss, ...})   # log, validate, save
    session.close()
"""
import torch
from torch import nn
from tqdm import tqdm

from dataloaders.batches import make_training_batches
from dataloaders.case_lists import check_validation_cases, read_case_list
from dataloaders.case_split import training_split
from dataloaders.check_data import check_cases
from dataloaders.datasets import at_training_spacing, data_folder
from training.arguments import TrainingConfig
from training.optimization import MixedPrecision, set_lr, sgd
from training.resume import base_lr_changes, check_resumable, check_same_data, restore, resume_path
from training.run_folder import RunFolder, check_free, hold_run_folder
from training.schedule import Periodic
from training.validation import Validator
from utils.checkpoint import build_vnet, checkpoint_state, load_checkpoint
from utils.device import (amp_dtype, memory_format_for, memory_format_text, precision_text, runtime_versions,
                          seed_everything, select_device, warn_known_bad_runtime)
from utils.distributed import ranks_from_environment
from utils.errors import UserError


class TrainingSession:
    """One training run of a method script, from its ``TrainingConfig``.

    Creating it chooses the device and seeds everything, places this process under torchrun
    (rank 0 of 1 without), and loads the checkpoint to continue from with ``--resume``
    (checked to be a ``with_teacher`` run with the same settings); it fails early if another
    run holds the run folder (its lock is held until this process ends) or if the run would
    overwrite another run's files. ``method`` names the progress bar."""

    def __init__(self, config: TrainingConfig, *, method: str, with_teacher: bool):
        self.config, self.method = config, method
        run = config.run
        self.ranks = ranks_from_environment()
        # held until the process ends; under torchrun rank 0 holds it for all (the others write nothing)
        self.lock = hold_run_folder(run.folder) if self.ranks.is_main else None
        self.resume_from = None
        continues = False
        if run.resume:
            path = resume_path(run.resume, run.folder)
            if not path.is_file():
                raise UserError(f"nothing to resume: {path} does not exist (start without --resume, or pass the "
                                "checkpoint's path with --resume PATH)")
            self.resume_from = load_checkpoint(path)
            check_resumable(self.resume_from, path, flags=run.flags, with_teacher=with_teacher,
                            method=method)
            continues = path.resolve().parent == run.folder.resolve()
        if not continues:  # a fresh run, or another run's checkpoint continued in this folder
            check_free(run.folder, run.overwrite)
        self.continues = continues
        self.device = self.ranks.device(select_device(config.speed.gpu))
        self.ranks.start(self.device)
        seed_everything(run.seed, config.speed.deterministic)
        self.start_iteration = self.resume_from["iteration"] if self.resume_from else 0
        self.base_lr_changes = base_lr_changes(self.resume_from, config.schedule.base_lr) if self.resume_from else []
        self.data = data_folder(config.data.root_path, config.data.normalize, config.data.unlabeled_dirs,
                                config.data.intensity)
        self.memory_format = memory_format_for(self.device, config.speed.channels_last)
        self.precision = MixedPrecision(self.device, config.speed.amp)
        self.models: dict[str, nn.Module | None] = {}
        self.run = self.batches = self.optimizer = self.periodic = self.split = self.spacing_note = None
        self.cases: dict = {}  # the training cases and their fingerprints, once load_batches has them

    # --- data -----------------------------------------------------------------------------
    def split_cases(self, *, needs_unlabeled: bool = False) -> tuple[list[str], list[str]]:
        """(labeled, unlabeled) case IDs of the training list (or of the whole folder, without
        one; up to --max_samples in all): the first --labelnum and the rest, or without
        --labelnum the cases that have labels and those that have none
        (``dataloaders.case_split``). A one-line error where the method ``needs_unlabeled``
        cases and there are none. The run header says what was found."""
        data = self.config.data
        self.split = training_split(self.data, data.train_list, data.labelnum, data.max_samples)
        labeled_ids, unlabeled_ids = self.split.labeled, self.split.unlabeled
        if needs_unlabeled and not unlabeled_ids:
            fix = ("lower --labelnum" if data.labelnum is not None else
                   "add unlabeled images (imagesTr/ images without a label file, imagesTs/, --unlabeled_dir), or "
                   "pass --labelnum N to use only the first N listed cases as labeled")
            raise UserError(f"all {len(labeled_ids)} training cases are labeled, so {self.method} has no unlabeled "
                            f"data; {fix}, or use train_sup.py")
        return labeled_ids, unlabeled_ids

    def load_batches(self, labeled_ids: list[str], unlabeled_ids: list[str]) -> None:
        """Read and check every training case and set up the batch stream (at the resumed
        position); ``next_batch`` draws from it. A resumed run must have the cases, and case
        files, its checkpoint was trained on; validation cases (--val_list) must be neither
        training cases nor test cases."""
        # MSD cases of mixed voxel sizes are read at one (the validation cases too)
        self.data, spacing, self.spacing_note = at_training_spacing(self.data, [*labeled_ids, *unlabeled_ids],
                                                                    self.config.data.target_spacing,
                                                                    source=self.config.data.spacing_source)
        fingerprints = {**{case: self.data.fingerprint(case) for case in labeled_ids},
                        **{case: self.data.fingerprint(case, labeled=False) for case in unlabeled_ids}}
        if self.resume_from:
            check_same_data(self.resume_from, resume_path(self.config.run.resume, self.config.run.folder),
                            labeled_ids=labeled_ids, unlabeled_ids=unlabeled_ids, fingerprints=fingerprints)
        self.cases = {"labeled_ids": list(labeled_ids), "unlabeled_ids": list(unlabeled_ids),
                      "data_fingerprint": fingerprints}  # stored in every checkpoint, for --resume to compare
        val_list = self.config.data.val_list
        if val_list:  # before the long read of every case
            check_validation_cases(read_case_list(val_list), val_list, training_ids=[*labeled_ids, *unlabeled_ids],
                                   test_list=self.data.lists_dir / "test.list")
        self.batches = make_training_batches(self.data, labeled_ids, unlabeled_ids, self.config.batches,
                                             device=self.device, start_batch=self.start_iteration,
                                             rank=self.ranks.rank, world_size=self.ranks.world_size)
        # for inference.py and predict.py: the voxel size and layout the network learns from
        self.cases.update(spacing=list(spacing) if spacing else None, resampled=self.data.target_spacing is not None,
                          data_kind=self.data.kind, intensity=self.data.intensity)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (B, 1, X, Y, Z) in the session's memory format, label (B, X, Y, Z) int64)."""
        image, label = next(self.batches)
        return image.contiguous(memory_format=self.memory_format), label

    # --- the run folder -------------------------------------------------------------------
    def open_run(self, details: str) -> None:
        """Check the validation cases, then open the run folder (only now, after every data
        check passed) with config.json and the run header, ending with the training cases found
        and the method's ``details``. Under torchrun only rank 0 writes."""
        self.validator = self._validator()
        self.run = RunFolder(self.config.run.folder, overwrite=self.config.run.overwrite, continues=self.continues,
                             writes=self.ranks.is_main, average=self.ranks.average)
        for line in self._header():
            self.run.info(line)
        for line in filter(None, self.config.data.settings_text.splitlines()):
            self.run.info(line)
        cases = self.split.describe() + (f"; {self.spacing_note}" if self.spacing_note else "")
        if self.split.unlabeled and not self.cases["unlabeled_ids"]:
            cases += "; the unlabeled ones are not used (labeled-only training)"
        self.run.info(f"{cases}; {details}")

    def _validator(self) -> Validator | None:
        """The validator of --val_list (its cases checked first), or None; under torchrun each
        rank validates every N-th case and the scores are gathered."""
        val_list = self.config.data.val_list
        if not val_list:
            return None
        ranks = self.ranks
        case_ids = read_case_list(val_list)
        if ranks.distributed and len(case_ids) < ranks.world_size:
            raise UserError(f"{val_list} has {len(case_ids)} case(s), fewer than the {ranks.world_size} processes "
                            "that share the validation; list more cases or start fewer processes")
        volumes = check_cases(self.data, case_ids[ranks.rank::ranks.world_size])
        return Validator(volumes, patch_size=self.config.data.patch_size, num_classes=self.data.num_classes,
                         device=self.device,
                         amp_dtype=amp_dtype(self.device, self.config.speed.amp),  # autocast as inference.py
                         gather=ranks.gather if ranks.distributed else None)

    def _header(self) -> list[str]:
        """config.json, then the header lines: folder, runtime, device, precision, ranks."""
        versions = runtime_versions()
        self.run.write_config({"args": self.config.run.flags, "runtime": versions,
                               **({"base_lr_changes": self.base_lr_changes} if self.base_lr_changes else {})})
        lines = [f"run folder {self.run.path}"]
        if self.run.replaced:
            lines.append(f"removed the earlier run's files from the folder ({', '.join(self.run.replaced)})")
        if self.resume_from and len(self.base_lr_changes) > len(self.resume_from.get("base_lr_changes") or []):
            change = self.base_lr_changes[-1]
            lines.append(f"--base_lr lowered from the checkpoint's {change['from']:g} to {change['to']:g} after "
                         f"iteration {change['iteration']}")
        lines.append("runtime " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        device, ranks = self.device, self.ranks
        if device.type == "cpu":
            lines.append("CUDA is not available: training on the CPU")
        lines.append(f"{precision_text(device, self.config.speed.amp)}, {memory_format_text(self.memory_format)} "
                     "layout")
        if ranks.distributed:
            backend = "NCCL" if device.type == "cuda" else "gloo"
            lines.append(f"DistributedDataParallel over {ranks.world_size} processes ({backend}), "
                         f"{self.config.batches.batch_size} samples per process per iteration"
                         + ("" if device.type == "cuda" else
                            "; CPU processes keep per-process BatchNorm batch statistics"))
        warning = warn_known_bad_runtime()
        if warning:
            lines.append(f"WARNING: {warning}")
        return lines

    def info(self, message: str) -> None:
        self.run.info(message)

    # --- models and optimizer ---------------------------------------------------------------
    def network(self) -> nn.Module:
        """A fresh VNet on the device in the session's memory format (BatchNorm synchronised
        across ranks on GPUs under torchrun)."""
        return self.ranks.sync_batchnorm(build_vnet(self.data.num_classes, self.device, self.memory_format,
                                                    strides=self.config.data.strides),
                                         self.device)

    def trainable(self, model: nn.Module):
        """What the loop calls to run ``model`` forward: DistributedDataParallel under
        torchrun, compiled with --compile 1."""
        forward = self.ranks.wrap(model, self.device)
        return torch.compile(forward) if self.config.speed.compile else forward

    def sgd(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer ``step`` uses: SGD, momentum 0.9, weight decay 1e-4."""
        self.optimizer = sgd(model, self.config.schedule.base_lr, foreach=self.config.speed.foreach)
        return self.optimizer

    def start(self, models: dict[str, nn.Module | None]) -> None:
        """Register the models a checkpoint holds ({"student": ..., "teacher": ...}, and any
        other, such as AD-MT's "teacher_b", under its own key); restore them, the optimizer and
        the random states from the checkpoint being resumed, or give each rank its own noise
        and dropout from the same initial weights."""
        self.models = {"teacher": None, **models}
        if self.resume_from:
            restore(self.resume_from, {k: m for k, m in self.models.items() if m is not None},
                    optimizer=self.optimizer, scaler=self.precision.scaler, ranks=self.ranks)
            self.run.info(f"resumed after iteration {self.start_iteration}")
        else:
            self.ranks.reseed(self.config.run.seed)
        best = self.resume_from.get("best_val_dice", -1.0) if self.resume_from else -1.0
        self.periodic = Periodic(self.run, self.config.schedule, validator=self.validator, device=self.device,
                                 batches=self.batches, start=self.start_iteration, best_score=best, ranks=self.ranks)

    # --- the loop -----------------------------------------------------------------------------
    def iterations(self, lr_at=None):
        """The iterations still to run (0-based), each with its learning rate set (``lr_at(iteration)``,
        default the schedule's step decay), under a progress bar (none when piped, none on ranks
        other than 0)."""
        schedule = self.config.schedule
        lr_at = lr_at or schedule.lr_at
        progress = tqdm(range(self.start_iteration, schedule.max_iterations), desc=self.method,
                        initial=self.start_iteration, total=schedule.max_iterations, dynamic_ncols=True,
                        disable=None if self.ranks.is_main else True)
        for iteration in progress:
            self.lr = lr_at(iteration)
            set_lr(self.optimizer, self.lr)
            yield iteration
            if self.periodic.last:
                progress.set_postfix(loss=f"{self.periodic.last['loss/total']:.4f}", refresh=False)

    def autocast(self):
        return self.precision.autocast()

    def step(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step (with loss scaling for fp16)."""
        self.precision.step(loss, self.optimizer)

    def average_buffers(self, *models: nn.Module) -> None:
        """Equal BatchNorm statistics on every rank."""
        self.ranks.average_buffers(*models)

    def after(self, iteration: int, scalars: dict) -> None:
        """Log ``scalars`` (and the learning rate), validate the student, save checkpoints, as
        the schedule says."""
        def state():
            return {**checkpoint_state(iteration, flags=self.config.run.flags, num_classes=self.data.num_classes,
                                       student=self.models["student"], teacher=self.models["teacher"],
                                       optimizer=self.optimizer, scaler=self.precision.scaler, cases=self.cases,
                                       base_lr_changes=self.base_lr_changes, strides=self.config.data.strides),
                    **{key: model.state_dict() for key, model in self.models.items()
                       if key not in ("student", "teacher") and model is not None},
                    "method": self.method}  # --resume refuses another method's checkpoint

        self.periodic.after(iteration, {**scalars, "train/lr": self.lr}, state, self.models["student"])

    def close(self) -> None:
        self.run.close()
        self.ranks.close()
        if self.lock:
            self.lock.release()
