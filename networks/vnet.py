"""The VNet of the semi-supervised left-atrium literature (UA-MT, SSL4MIS).

Encoder stages of 1, 2, 3, 3, 3 conv blocks at 16, 32, 64, 128, 256 channels
(for ``n_filters=16``), stride-2 convolutions to go down, stride-2 transposed
convolutions to go up, *additive* skip connections, and a 1x1x1 output conv.
With ``n_channels=1, n_classes=2, normalization="batchnorm"`` it has
9,448,866 parameters, the number the published results were obtained with.

``strides`` gives each of the four down-sampling stages its factor per axis, 2 (halve) or 1
(keep), as LASeg's VNet keeps the depth in one stage: a volume of a few thick slices is pooled
in-plane first (``planning.planner`` chooses them from the data). The default halves every axis
four times, the published network; a stage's down and up convolutions have the stride as their
kernel, so the default's weights, and every checkpoint written before strides existed, are
unchanged.
"""
import torch
from torch import nn

NORM_LAYERS = ("batchnorm", "groupnorm", "instancenorm", "none")

STAGES = 4
# The published network: every axis halved in each of the four stages.
DEFAULT_STRIDES = ((2, 2, 2),) * STAGES


def check_strides(strides) -> tuple:
    """``strides`` as a tuple of ``STAGES`` (X, Y, Z) tuples of 1 or 2; a ``ValueError`` saying
    what is wrong otherwise."""
    try:
        strides = tuple(tuple(int(f) for f in stage) for stage in strides)
    except (TypeError, ValueError):
        raise ValueError(f"strides must be {STAGES} stages of three factors (1 or 2), got {strides!r}") from None
    if len(strides) != STAGES or any(len(stage) != 3 or any(f not in (1, 2) for f in stage) for stage in strides):
        raise ValueError(f"strides must be {STAGES} stages of three factors, each 1 (keep) or 2 (halve), "
                         f"got {strides!r}")
    return strides


def total_strides(strides=DEFAULT_STRIDES) -> tuple:
    """How many voxels of the input one bottleneck voxel spans per axis (X, Y, Z): the product
    of the stages' factors; each side of an input must be a multiple of it."""
    totals = [1, 1, 1]
    for stage in strides:
        totals = [t * f for t, f in zip(totals, stage)]
    return tuple(totals)


def patch_size_problem(patch_size, strides=DEFAULT_STRIDES) -> str | None:
    """Why the VNet with ``strides`` cannot take an input of ``patch_size`` (X, Y, Z) voxels, or
    None if it can."""
    for axis, size, multiple in zip("XYZ", patch_size, total_strides(strides)):
        if size < multiple or size % multiple:
            times = multiple.bit_length() - 1
            return (f"the sides must be positive multiples of {' x '.join(map(str, total_strides(strides)))}, "
                    f"the VNet's total stride per axis (it halves {axis} {times} times); "
                    f"{size} along {axis} is not a positive multiple of {multiple}")
    return None


def strides_text(strides) -> str:
    """``2,2,1 | 2,2,1 | 2,2,2 | 2,2,2``: the stages' factors, as ``--strides`` takes them."""
    return " ".join(",".join(map(str, stage)) for stage in strides)


def _norm(kind: str, channels: int) -> list:
    if kind == "batchnorm":
        return [nn.BatchNorm3d(channels)]
    if kind == "groupnorm":
        return [nn.GroupNorm(num_groups=16, num_channels=channels)]
    if kind == "instancenorm":
        return [nn.InstanceNorm3d(channels)]
    if kind == "none":
        return []
    raise ValueError(f"unknown normalization {kind!r}; choose one of {', '.join(NORM_LAYERS)}")


class Conv3x3x3(nn.Conv3d):
    """A 3x3x3 convolution (padding 1), computed in fp32 on a CPU under bf16 autocast when its
    input has an axis of 2 voxels or fewer. There, oneDNN's bf16 weight gradient now and then
    comes back with NaNs although everything going in is finite (torch 2.13, AMD EPYC with
    AVX512-BF16: 1 run in 5 of a 2x2x1 bottleneck; never in fp32, never at 3 voxels or more).
    Such inputs are the few voxels of a small patch's bottleneck, so fp32 there costs nothing."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and min(x.shape[2:]) <= 2:
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def conv_stage(n_convs: int, in_channels: int, out_channels: int, normalization: str) -> nn.Sequential:
    """``n_convs`` times (3x3x3 conv, norm, ReLU); the first conv changes the width."""
    layers = []
    for i in range(n_convs):
        layers.append(Conv3x3x3(in_channels if i == 0 else out_channels, out_channels))
        layers += _norm(normalization, out_channels)
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def down(in_channels: int, out_channels: int, normalization: str, stride=(2, 2, 2)) -> nn.Sequential:
    """Divide each spatial size by its ``stride`` (2 or 1 per axis) with a conv whose kernel is
    the stride (2x2x2 stride 2 by default) (+ norm + ReLU)."""
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, tuple(stride), stride=tuple(stride)),
                         *_norm(normalization, out_channels), nn.ReLU(inplace=True))


def up(in_channels: int, out_channels: int, normalization: str, stride=(2, 2, 2)) -> nn.Sequential:
    """Multiply each spatial size by its ``stride`` with a transposed conv whose kernel is the
    stride (+ norm + ReLU)."""
    return nn.Sequential(nn.ConvTranspose3d(in_channels, out_channels, tuple(stride), stride=tuple(stride)),
                         *_norm(normalization, out_channels), nn.ReLU(inplace=True))


class VNet(nn.Module):
    """VNet: ``(B, n_channels, X, Y, Z) -> (B, n_classes, X, Y, Z)`` logits.

    X, Y and Z must be multiples of ``total_strides(strides)`` (16 each for the default four
    halvings). ``has_dropout`` applies
    Dropout3d(0.5) to the bottleneck and before the output conv, active in
    training mode only (Mean Teacher relies on it as part of its noise).
    """

    def __init__(self, n_channels: int = 1, n_classes: int = 2, n_filters: int = 16,
                 normalization: str = "batchnorm", has_dropout: bool = False, strides=DEFAULT_STRIDES):
        super().__init__()
        f = n_filters
        s1, s2, s3, s4 = self.strides = check_strides(strides)
        self.has_dropout = has_dropout
        self.enc1 = conv_stage(1, n_channels, f, normalization)
        self.down1 = down(f, 2 * f, normalization, s1)
        self.enc2 = conv_stage(2, 2 * f, 2 * f, normalization)
        self.down2 = down(2 * f, 4 * f, normalization, s2)
        self.enc3 = conv_stage(3, 4 * f, 4 * f, normalization)
        self.down3 = down(4 * f, 8 * f, normalization, s3)
        self.enc4 = conv_stage(3, 8 * f, 8 * f, normalization)
        self.down4 = down(8 * f, 16 * f, normalization, s4)
        self.bottleneck = conv_stage(3, 16 * f, 16 * f, normalization)
        self.up4 = up(16 * f, 8 * f, normalization, s4)
        self.dec4 = conv_stage(3, 8 * f, 8 * f, normalization)
        self.up3 = up(8 * f, 4 * f, normalization, s3)
        self.dec3 = conv_stage(3, 4 * f, 4 * f, normalization)
        self.up2 = up(4 * f, 2 * f, normalization, s2)
        self.dec2 = conv_stage(2, 2 * f, 2 * f, normalization)
        self.up1 = up(2 * f, f, normalization, s1)
        self.dec1 = conv_stage(1, f, f, normalization)
        self.out_conv = nn.Conv3d(f, n_classes, 1)
        self.dropout = nn.Dropout3d(p=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.enc1(x)
        x2 = self.enc2(self.down1(x1))
        x3 = self.enc3(self.down2(x2))
        x4 = self.enc4(self.down3(x3))
        x5 = self.bottleneck(self.down4(x4))
        if self.has_dropout:
            x5 = self.dropout(x5)
        x = self.dec4(self.up4(x5) + x4)
        x = self.dec3(self.up3(x) + x3)
        x = self.dec2(self.up2(x) + x2)
        x = self.dec1(self.up1(x) + x1)
        if self.has_dropout:
            x = self.dropout(x)
        return self.out_conv(x)
