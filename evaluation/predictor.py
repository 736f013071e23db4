"""One trained network as a whole-volume predictor: the checkpoint's VNet, its window and
strides, precision and memory layout, and the optional largest-component clean-up, decided once.
``inference.py`` (scoring test cases) and ``predict.py`` (segmenting new scans) both predict
through it.

    predictor = Predictor(checkpoint, path, device=device, lcc=True)
    labels, probabilities = predictor.predict(image, with_probabilities=True)

``image`` is one (X, Y, Z) float32 volume already normalised as the network was trained.
"""
import numpy as np
import torch

from dataloaders.datasets import DATASETS, DataFolder, data_folder
from dataloaders.resampling import resample
from networks.vnet import DEFAULT_STRIDES, patch_size_problem
from evaluation.uncertainty import FLIP_AXES, ScanUncertainty, UncertaintyAccumulator, flip_sets
from utils.checkpoint import TrainedSettings, load_network, trained_settings
from utils.device import amp_dtype, memory_format_for, memory_format_text, precision_text
from utils.errors import UserError
from utils.metrics import keep_largest_component_per_class
from utils.sliding_window import sliding_window_predict


def check_window_settings(patch_size, stride_xy: int, stride_z: int, sw_batch: int,
                          strides=DEFAULT_STRIDES) -> None:
    """A window that the VNet (with its stages' ``strides``) cannot take, strides that would
    skip voxels or no window per pass: a one-line ``UserError`` naming the flag."""
    problem = patch_size_problem(patch_size, strides)
    if problem:
        raise UserError(f"--patch_size {' '.join(map(str, patch_size))}: {problem}")
    for name, stride, size in (("--stride_xy", stride_xy, min(patch_size[:2])),
                               ("--stride_z", stride_z, patch_size[2])):
        if not 1 <= stride <= size:
            raise UserError(f"{name} must be between 1 and the patch size {size}, got {stride}")
    if sw_batch < 1:
        raise UserError(f"--sw_batch must be at least 1, got {sw_batch}")


def network_strides(checkpoint: dict) -> tuple:
    """The VNet stages' strides of ``checkpoint`` (the published ones for checkpoints from
    before strides were stored)."""
    network = trained_settings(checkpoint).network or {}
    return tuple(tuple(stage) for stage in network.get("strides") or DEFAULT_STRIDES)


def default_window(checkpoint: dict, patch_size=None, stride_xy=None, stride_z=None) -> tuple:
    """(patch_size, stride_xy, stride_z) where the arguments leave them open (None): the patch
    the checkpoint was trained on, else its dataset's; the steps its run chose (the plan's or
    its dataset's, at most the patch), else those of its dataset
    (``dataloaders.datasets.DATASETS``), else half the patch (nnU-Net's overlap)."""
    settings = trained_settings(checkpoint)
    dataset = DATASETS.get(settings.dataset_name)
    if patch_size is None:
        patch_size = settings.patch_size or (dataset.patch_size if dataset else None)
    if patch_size is None:
        raise UserError("the checkpoint does not say which patch it was trained on; pass --patch_size X Y Z")
    patch_size = tuple(int(p) for p in patch_size)
    xy, z = min(patch_size[:2]), patch_size[2]
    window = settings.window or ((dataset.stride_xy, dataset.stride_z) if dataset else None)
    if stride_xy is None:
        stride_xy = min(window[0], xy) if window else max(xy // 2, 1)
    if stride_z is None:
        stride_z = min(window[1], z) if window else max(z // 2, 1)
    return patch_size, stride_xy, stride_z


def trained_data(settings: TrainedSettings, root) -> DataFolder:
    """The data folder at ``root`` reading its images as the checkpoint's run did (per-case
    z-score or as stored for h5, the plan's normalisation for NIfTI)."""
    return data_folder(root, settings.normalize, intensity=settings.intensity)


class Predictor:
    """The network of ``checkpoint`` (loaded from ``path``, named in messages) predicting whole
    volumes by sliding windows on ``device``.

    Args:
        teacher: the EMA teacher's weights instead of the student's.
        num_classes: the classes the data has (checked against the checkpoint); None: the
            checkpoint's.
        patch_size, stride_xy, stride_z: window and steps in voxels; None: ``default_window``.
        sw_batch: windows per forward pass.
        amp: autocast as ``utils.device.amp_dtype`` reads it (None: on for CUDA, off on a CPU).
        channels_last: channels_last_3d weights and windows.
        lcc: keep the largest connected component of each foreground class.
        sliding_window: the window function, ``utils.sliding_window.sliding_window_predict``
            (a caller passes its own name for it, so its tests can watch what reaches it).
    The checkpoint itself is not kept (its optimizer state can be large).
    """

    def __init__(self, checkpoint: dict, path, *, device: torch.device, teacher: bool = False,
                 num_classes: int | None = None, patch_size=None, stride_xy: int | None = None,
                 stride_z: int | None = None, sw_batch: int = 8, amp=None, channels_last: bool = True,
                 lcc: bool = False, sliding_window=sliding_window_predict):
        if not isinstance(checkpoint, dict):
            raise UserError(f"{path} is not a checkpoint of this repository's training scripts")
        self.patch_size, self.stride_xy, self.stride_z = default_window(checkpoint, patch_size, stride_xy, stride_z)
        check_window_settings(self.patch_size, self.stride_xy, self.stride_z, sw_batch, network_strides(checkpoint))
        if num_classes is None:
            num_classes = (checkpoint.get("network") or {}).get("n_classes")
        self.memory_format = memory_format_for(device, bool(channels_last))
        self.model = load_network(checkpoint, path, teacher=teacher, num_classes=num_classes, device=device,
                                  memory_format=self.memory_format)
        self.num_classes, self.device, self.teacher = num_classes, device, teacher
        self.sw_batch, self.lcc, self.amp = sw_batch, lcc, amp
        self.amp_dtype = amp_dtype(device, amp)
        self.sliding_window = sliding_window

    def predict(self, image, *, with_probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The label map of one (X, Y, Z) float32 image: (labels (X, Y, Z) uint8, the argmax of
        the window-averaged softmax, ties to the lower class, cut to the largest component of
        each class with ``lcc``; probabilities (C, X, Y, Z) float32 on the CPU, before ``lcc``,
        or None unless ``with_probabilities``)."""
        probabilities, labels = self.sliding_window(self.model, image, patch_size=self.patch_size,
                                                    stride_xy=self.stride_xy, stride_z=self.stride_z,
                                                    num_classes=self.num_classes, device=self.device,
                                                    sw_batch=self.sw_batch, amp_dtype=self.amp_dtype)
        labels = labels.cpu().numpy().astype(np.uint8)  # waits for the device
        if self.lcc:
            labels = keep_largest_component_per_class(labels, self.num_classes)
        return labels, probabilities.cpu().numpy() if with_probabilities else None

    def predict_at_spacing(self, image, spacing, target) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) as ``predict`` gives them, of an (X, Y, Z) image of voxel
        size ``spacing`` (mm) predicted at the voxel size ``target`` the network was trained at:
        the image resampled to it (linear), the probabilities resampled back onto the image's
        own grid (linear, the border value past the last voxel centre), then ``labels``."""
        back = self.probabilities_on_grid(image, spacing, target)
        return self.labels(back), back

    def probabilities_on_grid(self, image, spacing=None, target=None, flip: tuple = ()) -> np.ndarray:
        """The window-averaged softmax (C, X, Y, Z) float32 of an (X, Y, Z) image on its own
        grid: predicted at the voxel size ``target`` where given (the image resampled there from
        ``spacing``, the probabilities back, as ``predict_at_spacing``), of the image mirrored
        along the axes ``flip`` and mirrored back."""
        moved = image if target is None else resample(image, spacing, target, is_label=False)
        if flip:
            moved = np.ascontiguousarray(np.flip(moved, axis=flip))
        probabilities = self._probabilities(moved)
        if flip:
            probabilities = np.ascontiguousarray(np.flip(probabilities, axis=tuple(a + 1 for a in flip)))
        if target is None:
            return probabilities
        return np.stack([resample(p, target, spacing, is_label=False, shape=np.shape(image)) for p in probabilities])

    def predict_with_uncertainty(self, image, spacing=None, target=None,
                                 flip_axes=FLIP_AXES) -> tuple[np.ndarray, np.ndarray, ScanUncertainty]:
        """(labels, probabilities, uncertainty) of an (X, Y, Z) image: the labels and
        probabilities of the unflipped pass, as ``predict`` (or, with ``target``,
        ``predict_at_spacing``) gives them, so that asking for the uncertainty never changes a
        segmentation; then one pass per mirroring over ``flip_axes`` for the uncertainty
        (``evaluation.uncertainty``)."""
        passes = UncertaintyAccumulator()
        probabilities = labels = None
        for flip in flip_sets(flip_axes):
            current = self.probabilities_on_grid(image, spacing, target, flip)
            current_labels = self.labels(current)  # with lcc, as the delivered segmentation
            passes.add(current, current_labels)
            if probabilities is None:
                probabilities, labels = current, current_labels
        return labels, probabilities, passes.result(labels)

    def _probabilities(self, image) -> np.ndarray:
        """The window-averaged softmax (C, X, Y, Z) float32 on the CPU."""
        probabilities, _ = self.sliding_window(self.model, image, patch_size=self.patch_size,
                                               stride_xy=self.stride_xy, stride_z=self.stride_z,
                                               num_classes=self.num_classes, device=self.device,
                                               sw_batch=self.sw_batch, amp_dtype=self.amp_dtype)
        return probabilities.cpu().numpy()

    def labels(self, probabilities: np.ndarray) -> np.ndarray:
        """The label map of (C, X, Y, Z) probabilities computed elsewhere (e.g. resampled to a
        scan's own grid): argmax, ties to the lower class, then ``lcc`` as ``predict`` does."""
        labels = np.argmax(probabilities, axis=0).astype(np.uint8)
        return keep_largest_component_per_class(labels, self.num_classes) if self.lcc else labels

    def describe(self) -> str:
        """The settings for a log line: weights, precision, layout, window, strides, lcc."""
        return (f"{'teacher' if self.teacher else 'student'} weights, {self.num_classes} classes, "
                f"device {self.device}, {precision_text(self.device, self.amp)}, "
                f"{memory_format_text(self.memory_format)}, patch {self.patch_size}, strides {self.stride_xy}/{self.stride_z}, sw_batch {self.sw_batch}, "
                f"lcc {'on' if self.lcc else 'off'}")
