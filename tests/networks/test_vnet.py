"""networks/vnet.py: shapes, the published parameter count, normalizations, dropout, strides."""
import pytest
import torch

from networks.vnet import (DEFAULT_STRIDES, NORM_LAYERS, Conv3x3x3, VNet, check_strides, patch_size_problem,
                           total_strides)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", [(16, 16, 16), (32, 16, 48)])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_output_shape(size, n_classes):
    torch.manual_seed(0)
    model = VNet(n_channels=1, n_classes=n_classes, n_filters=4, normalization="none").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, n_classes, *size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_output_shape_default_width_batchnorm():
    model = VNet(n_channels=1, n_classes=2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 16, 32, 16))
    assert out.shape == (1, 2, 16, 32, 16)


@pytest.mark.parametrize("has_dropout", [True, False])
def test_published_parameter_count(has_dropout):
    model = VNet(n_channels=1, n_classes=2, normalization="batchnorm", has_dropout=has_dropout)
    assert n_params(model) == 9_448_866


def test_parameter_count_by_hand_for_tiny_width():
    """Count every conv/norm by hand for n_filters=2, batchnorm, 1 -> 2 classes."""
    f, cin, ncls = 2, 1, 2

    def conv(i, o, k):
        return i * o * k ** 3 + o

    def bn(c):
        return 2 * c

    def stage(n, i, o):
        return sum(conv(i if j == 0 else o, o, 3) + bn(o) for j in range(n))

    expected = (stage(1, cin, f) + conv(f, 2 * f, 2) + bn(2 * f)
                + stage(2, 2 * f, 2 * f) + conv(2 * f, 4 * f, 2) + bn(4 * f)
                + stage(3, 4 * f, 4 * f) + conv(4 * f, 8 * f, 2) + bn(8 * f)
                + stage(3, 8 * f, 8 * f) + conv(8 * f, 16 * f, 2) + bn(16 * f)
                + stage(3, 16 * f, 16 * f)
                + conv(16 * f, 8 * f, 2) + bn(8 * f) + stage(3, 8 * f, 8 * f)    # transposed convs count alike
                + conv(8 * f, 4 * f, 2) + bn(4 * f) + stage(3, 4 * f, 4 * f)
                + conv(4 * f, 2 * f, 2) + bn(2 * f) + stage(2, 2 * f, 2 * f)
                + conv(2 * f, f, 2) + bn(f) + stage(1, f, f)
                + conv(f, ncls, 1))
    assert n_params(VNet(cin, ncls, n_filters=f)) == expected


@pytest.mark.parametrize("normalization", ["groupnorm", "instancenorm", "none"])
def test_each_normalization_builds_and_runs(normalization):
    torch.manual_seed(0)
    model = VNet(n_classes=2, normalization=normalization).train()
    x = torch.randn(2, 1, 32, 16, 16)  # instance norm needs > 1 voxel at the 1/16 bottleneck
    out = model(x)
    assert out.shape == (2, 2, 32, 16, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    kinds = {type(m).__name__ for m in model.modules()}
    expected = {"groupnorm": "GroupNorm", "instancenorm": "InstanceNorm3d", "none": None}[normalization]
    if expected:
        assert expected in kinds and "BatchNorm3d" not in kinds
    else:
        assert not kinds & {"BatchNorm3d", "GroupNorm", "InstanceNorm3d"}


def test_normalizations_constant_lists_all_options():
    assert set(NORM_LAYERS) == {"batchnorm", "groupnorm", "instancenorm", "none"}


@pytest.mark.parametrize("bad", ["layernorm", "BatchNorm", ""])
def test_unknown_normalization_raises(bad):
    with pytest.raises(ValueError, match="normalization"):
        VNet(normalization=bad)


def test_dropout_active_only_in_train_mode():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16, 16)
    model = VNet(n_classes=2, n_filters=4, normalization="none", has_dropout=True)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b), "eval output must be deterministic"
    model.train()
    with torch.no_grad():
        c, d = model(x), model(x)
    assert not torch.equal(c, d), "dropout must change the output in train mode"
    assert not torch.equal(c, a)


def test_no_dropout_train_mode_is_deterministic():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 16, 16, 16)
    model = VNet(n_classes=2, n_filters=4, normalization="none", has_dropout=False).train()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        eval_out = model.eval()(x)
    model.train()
    with torch.no_grad():
        assert torch.equal(model(x), eval_out)  # no dropout, no batch statistics: modes agree


def test_default_strides_keep_the_published_weights():
    """Strides are values of the network: the default is the published network, its weight
    names and shapes unchanged, so every checkpoint written before strides existed loads."""
    published, explicit = VNet(has_dropout=True), VNet(has_dropout=True, strides=DEFAULT_STRIDES)
    assert {k: v.shape for k, v in published.state_dict().items()} == \
           {k: v.shape for k, v in explicit.state_dict().items()}
    explicit.load_state_dict(published.state_dict())


def test_in_plane_strides_keep_the_depth():
    strides = ((2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2))
    net = VNet(n_classes=3, strides=strides).eval()
    assert total_strides(strides) == (16, 16, 4)
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 32, 48, 8))
    assert out.shape == (1, 3, 32, 48, 8)
    assert net.down1[0].kernel_size == (2, 2, 1) and net.up1[0].stride == (2, 2, 1)
    assert patch_size_problem((32, 48, 8), strides) is None
    assert "multiple of 4" in patch_size_problem((32, 48, 10), strides)
    assert "multiple of 16" in patch_size_problem((32, 48, 8), DEFAULT_STRIDES)


@pytest.mark.parametrize("bad", [((2, 2, 2),) * 3, ((2, 2, 3),) * 4, ((2, 2),) * 4, "2222"])
def test_bad_strides_raise(bad):
    with pytest.raises(ValueError, match="strides"):
        check_strides(bad)


def test_tiny_inputs_are_convolved_in_fp32_under_cpu_bf16_autocast():
    """An input with an axis of 2 voxels (a small patch's bottleneck) skips bf16, where oneDNN's
    weight gradient sometimes has NaNs; 3 voxels or more keep bf16."""
    conv = Conv3x3x3(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(2, 4, 2, 4, 4)).dtype == torch.float32
        assert conv(torch.randn(2, 4, 4, 4, 1)).dtype == torch.float32
        assert conv(torch.randn(2, 4, 3, 3, 3)).dtype == torch.bfloat16
    assert conv(torch.randn(2, 4, 2, 4, 4)).dtype == torch.float32  # no autocast: as nn.Conv3d


def test_bf16_training_steps_on_a_tiny_patch_keep_gradients_finite():
    """Thirty fresh networks, one step each, under CPU bf16 autocast with a 32x32x16 patch (a
    2x2x1 bottleneck): before Conv3x3x3, about 1 in 5 had NaNs in a bottleneck weight's gradient."""
    for trial in range(30):
        torch.manual_seed(trial)
        net = VNet(n_classes=2)
        x = torch.randn(2, 1, 32, 32, 16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(x).float().square().mean()
        loss.backward()
        broken = [name for name, p in net.named_parameters() if not torch.isfinite(p.grad).all()]
        assert not broken, f"trial {trial}: non-finite gradients in {broken}"
