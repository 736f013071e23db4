"""evaluation/predictor.py: the shared whole-volume predictor gives the sliding window's result
as a uint8 label map (and CPU probabilities), takes its window from the checkpoint, applies the
largest-component rule, and refuses what cannot work in one line."""
import numpy as np
import pytest
import torch

from evaluation.predictor import Predictor, default_window
from networks.vnet import VNet
from utils.checkpoint import VNET_CONFIG
from utils.errors import UserError
from utils.metrics import keep_largest_component_per_class
from utils.sliding_window import sliding_window_predict

CPU = torch.device("cpu")


def checkpoint(num_classes=2, teacher=True, **args):
    """A checkpoint as the training scripts write it (the parts a predictor reads), with a
    randomly initialised narrow VNet."""
    torch.manual_seed(0)
    config = {**VNET_CONFIG, "n_filters": 4, "n_classes": num_classes}
    weights = VNet(**config).state_dict()
    return {"network": config, "student": weights, "teacher": weights if teacher else None,
            "args": {"dataset_name": "Synthetic", "patch_size": [32, 32, 16], **args}}


def image(shape=(40, 36, 20)):
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def test_the_label_map_and_probabilities_are_the_sliding_windows():
    predictor = Predictor(checkpoint(num_classes=3), "c.pth", device=CPU, channels_last=False)
    volume = image()
    labels, probabilities = predictor.predict(volume, with_probabilities=True)
    expected_probs, expected_labels = sliding_window_predict(predictor.model, volume, patch_size=(32, 32, 16),
                                                             stride_xy=16, stride_z=8, num_classes=3, device=CPU,
                                                             sw_batch=8)
    assert labels.dtype == np.uint8 and labels.shape == volume.shape
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, *volume.shape)
    np.testing.assert_array_equal(labels, expected_labels.numpy())
    np.testing.assert_array_equal(probabilities, expected_probs.numpy())
    np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(predictor.labels(probabilities), labels)
    assert predictor.predict(volume)[1] is None  # no copy of the probabilities unless asked


def test_the_window_comes_from_the_checkpoint_and_its_dataset():
    assert default_window(checkpoint()) == ((32, 32, 16), 16, 8)  # the training patch, Synthetic's strides
    assert default_window(checkpoint(patch_size=None)) == ((48, 48, 32), 16, 8)  # the dataset's patch
    assert default_window(checkpoint(dataset_name="Prostate", patch_size=[64, 48, 32])) == ((64, 48, 32), 24, 16)
    assert default_window(checkpoint(dataset_name="LA"), patch_size=(16, 16, 16)) == ((16, 16, 16), 16, 4)
    assert default_window(checkpoint(), stride_xy=4, stride_z=2) == ((32, 32, 16), 4, 2)
    with pytest.raises(UserError, match="pass --patch_size"):
        default_window(checkpoint(dataset_name="Prostate", patch_size=None))
    predictor = Predictor(checkpoint(), "c.pth", device=CPU, sw_batch=2)
    window = (predictor.patch_size, predictor.stride_xy, predictor.stride_z, predictor.sw_batch)
    assert window == ((32, 32, 16), 16, 8, 2)
    assert predictor.memory_format == torch.channels_last_3d and predictor.amp_dtype is None  # fp32 on a CPU
    assert predictor.model.enc2[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not predictor.model.training
    assert "student weights, 2 classes, device cpu, fp32, channels_last_3d, patch (32, 32, 16), strides 16/8" \
        in predictor.describe()


def test_teacher_weights_are_the_teachers():
    ckpt = checkpoint()
    ckpt["teacher"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["student"].items()}
    teacher = Predictor(ckpt, "c.pth", device=CPU, teacher=True)
    assert torch.equal(teacher.model.out_conv.weight, ckpt["teacher"]["out_conv.weight"])
    assert "teacher weights" in teacher.describe()


def test_lcc_keeps_the_largest_component_of_each_class():
    ckpt = checkpoint()
    volume = image()
    plain, probabilities = Predictor(ckpt, "c.pth", device=CPU).predict(volume, with_probabilities=True)
    with_lcc = Predictor(ckpt, "c.pth", device=CPU, lcc=True)
    labels, lcc_probabilities = with_lcc.predict(volume, with_probabilities=True)
    np.testing.assert_array_equal(labels, keep_largest_component_per_class(plain, 2))
    np.testing.assert_array_equal(lcc_probabilities, probabilities)  # before the clean-up
    two_blobs = np.zeros((2, 12, 12, 12), np.float32)
    two_blobs[0] = 1
    two_blobs[:, 1:5, 1:5, 1:5] = [[[[0.2]]], [[[0.8]]]]
    two_blobs[:, 8:10, 8:10, 8:10] = [[[[0.3]]], [[[0.7]]]]
    kept = with_lcc.labels(two_blobs)
    assert kept.dtype == np.uint8 and kept.sum() == 4 ** 3 and kept[1:5, 1:5, 1:5].all()


@pytest.mark.parametrize("make, expected", [
    (lambda: Predictor(checkpoint(teacher=False), "sup.pth", device=CPU, teacher=True),
     "sup.pth has no teacher (a labeled-only run of train_sup.py); drop --teacher"),
    (lambda: Predictor(checkpoint(), "c.pth", device=CPU, num_classes=3), "predicts 2 classes but the dataset has 3"),
    (lambda: Predictor(checkpoint(), "c.pth", device=CPU, stride_xy=33),
     "--stride_xy must be between 1 and the patch size 32"),
    (lambda: Predictor(checkpoint(), "c.pth", device=CPU, stride_z=0),
     "--stride_z must be between 1 and the patch size 16"),
    (lambda: Predictor(checkpoint(), "c.pth", device=CPU, patch_size=(32, 30, 16)), "multiple of 16"),
    (lambda: Predictor(checkpoint(), "c.pth", device=CPU, sw_batch=0), "--sw_batch must be at least 1"),
    (lambda: Predictor([1, 2], "list.pth", device=CPU), "list.pth is not a checkpoint"),
])
def test_what_cannot_work_is_one_line(make, expected):
    with pytest.raises(UserError) as err:
        make()
    assert expected in str(err.value) and "\n" not in str(err.value)
