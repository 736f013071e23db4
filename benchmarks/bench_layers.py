"""Where the VNet's time goes, block by block, and what equivalent ways of computing some
blocks would cost: the next step of the speed issue once the fast path is GPU-bound.

Part 1 times the forward and the forward+backward of every block of the VNet on the student's
batch, with the fast path's autocast and memory layout, then the whole student step and the
teacher's forward, so the blocks that matter stand out.
Part 2 times rewrites that compute the same thing in another way, each checked against the
layer it replaces (largest absolute difference, printed):

  pad8         the first conv (1 input channel) with input and weight zero-padded to 8
               channels, so that cuDNN can pick tensor-core kernels;
  matmul-up    a 2x2x2 stride-2 transposed conv as one matrix product and a reshuffle
               (each input voxel writes its own 2x2x2 block);
  matmul-down  a 2x2x2 stride-2 conv as a reshuffle and one matrix product;
  compiled     a conv stage (conv, batch norm, ReLU) under torch.compile, which fuses the
               batch norm and the ReLU into fewer passes over memory.

    python benchmarks/bench_layers.py                                    # GPU: batch 4 of 112x112x80
    python benchmarks/bench_layers.py --patch_size 32 32 16 --reps 2 --compile_blocks ""   # quick CPU check

Times are milliseconds per call after ``--warmup`` untimed calls (cuDNN autotuning with
``cudnn.benchmark``), with the device synchronised around each timed loop.
"""
import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from networks.vnet import VNet, patch_size_problem  # noqa: E402
from utils.device import amp_dtype, memory_format_for, memory_format_text, runtime_versions  # noqa: E402
from utils.errors import UserError, report_user_errors  # noqa: E402

BLOCKS = ("enc1", "down1", "enc2", "down2", "enc3", "down3", "enc4", "down4", "bottleneck",
          "up4", "dec4", "up3", "dec3", "up2", "dec2", "up1", "dec1", "out_conv")
PRECISIONS = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch_size", type=int, default=4, help="the student's batch")
    p.add_argument("--labeled_bs", type=int, default=2, help="the teacher sees batch_size - labeled_bs")
    p.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80], metavar=("X", "Y", "Z"))
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="auto",
                   help="autocast dtype; auto: as training's --amp 1 (bf16 where the GPU or CPU has it, "
                        "fp16 on older GPUs, fp32 on other CPUs)")
    p.add_argument("--channels_last", type=int, default=1, help="channels_last_3d (0: NCDHW)")
    p.add_argument("--reps", type=int, default=20, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement")
    p.add_argument("--compile_blocks", default="enc1,enc2,dec2,dec1",
                   help="comma-separated conv stages to time under torch.compile too ('' for none)")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even where CUDA is available")
    args = p.parse_args(argv)
    problem = patch_size_problem(args.patch_size)
    if problem:
        raise UserError(f"--patch_size {' '.join(map(str, args.patch_size))}: {problem}")
    if not 0 < args.labeled_bs < args.batch_size:
        raise UserError(f"--labeled_bs {args.labeled_bs} must be between 1 and --batch_size - 1 ({args.batch_size - 1})")
    if args.reps < 1 or args.warmup < 0:
        raise UserError("--reps must be at least 1 and --warmup at least 0")
    unknown = [b for b in filter(None, args.compile_blocks.split(",")) if b not in BLOCKS]
    if unknown:
        raise UserError(f"--compile_blocks: unknown block(s) {', '.join(unknown)}; choose from {', '.join(BLOCKS)}")
    return args


# ---- the rewrites: the same function as the layer they replace -----------------------------

def conv_with_padded_channels(conv: nn.Conv3d, x: torch.Tensor, channels: int = 8) -> torch.Tensor:
    """``conv(x)`` with input and weight zero-padded from ``x.shape[1]`` to ``channels``
    input channels. The padded weights are zeros made on the fly, so gradients reach only
    the real ones."""
    extra = channels - x.shape[1]
    pad = (0, 0, 0, 0, 0, 0, 0, extra)  # F.pad counts from the last dim: this pads dim 1
    return F.conv3d(F.pad(x, pad), F.pad(conv.weight, pad), conv.bias, conv.stride, conv.padding)


def transposed_conv_as_matmul(up: nn.ConvTranspose3d, x: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose3d with kernel 2 and stride 2 as a matrix product: each input voxel's
    channels times the (Cin, Cout*2*2*2) weight give its 2x2x2 output block. Returns a
    channels-last ``(B, Cout, 2X, 2Y, 2Z)`` tensor."""
    b, cin, nx, ny, nz = x.shape
    cout = up.out_channels
    voxels = x.permute(0, 2, 3, 4, 1).reshape(-1, cin)                       # (B*X*Y*Z, Cin)
    blocks = F.linear(voxels, up.weight.reshape(cin, cout * 8).t(), up.bias.repeat_interleave(8))
    out = blocks.view(b, nx, ny, nz, cout, 2, 2, 2).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return out.reshape(b, 2 * nx, 2 * ny, 2 * nz, cout).permute(0, 4, 1, 2, 3)


def strided_conv_as_matmul(down: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A Conv3d with kernel 2 and stride 2 as a matrix product: each 2x2x2 input block,
    flattened as (Cin, 2, 2, 2), times the (Cin*8, Cout) weight. Returns a channels-last
    ``(B, Cout, X/2, Y/2, Z/2)`` tensor."""
    b, cin, nx, ny, nz = x.shape
    cout = down.out_channels
    blocks = x.permute(0, 2, 3, 4, 1).reshape(b, nx // 2, 2, ny // 2, 2, nz // 2, 2, cin)
    blocks = blocks.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(-1, cin * 8)      # (B*X*Y*Z/8, Cin*8)
    out = F.linear(blocks, down.weight.reshape(cout, cin * 8), down.bias)
    return out.view(b, nx // 2, ny // 2, nz // 2, cout).permute(0, 4, 1, 2, 3)


# ---- timing ---------------------------------------------------------------------------------

def timed_ms(fn, device: torch.device, reps: int, warmup: int) -> float:
    """Milliseconds per call of ``fn`` after ``warmup`` calls, the device synchronised."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / reps


class Bench:
    """Times forward and forward+backward of callables on given inputs, under one autocast."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None, reps: int, warmup: int):
        self.device, self.dtype, self.reps, self.warmup = device, dtype, reps, warmup

    def autocast(self):
        enabled = self.dtype is not None and self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=enabled)

    def forward_ms(self, fn, x: torch.Tensor) -> float:
        def run():
            with self.autocast():
                fn(x)
        return timed_ms(run, self.device, self.reps, self.warmup)

    def step_ms(self, fn, x: torch.Tensor) -> float:
        """Forward and backward, the output's gradient a fixed random tensor."""
        with self.autocast():
            grad = torch.randn_like(fn(x))

        def run():
            with self.autocast():
                y = fn(x)
            y.backward(grad)
        return timed_ms(run, self.device, self.reps, self.warmup)


def block_inputs(model: VNet, image: torch.Tensor) -> dict:
    """The input each block receives in a forward pass of ``image``: name -> tensor."""
    seen = {}
    hooks = [getattr(model, name).register_forward_pre_hook(lambda _m, inp, name=name: seen.__setitem__(name, inp[0]))
             for name in BLOCKS]
    with torch.no_grad():
        model(image)
    for h in hooks:
        h.remove()
    return seen


def leaf_like(x: torch.Tensor, requires_grad: bool = True) -> torch.Tensor:
    return x.detach().clone().requires_grad_(requires_grad)


def max_difference(reference, rewrite, x: torch.Tensor) -> float:
    """Largest |reference(x) - rewrite(x)| in fp32 on the CPU, where both are exact."""
    x = x.detach().float().cpu().contiguous()
    with torch.no_grad():
        return (reference(x) - rewrite(x)).abs().max().item()


@report_user_errors
def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    dtype = PRECISIONS[args.precision] if args.precision != "auto" else amp_dtype(device, True)
    memory_format = memory_format_for(device, bool(args.channels_last))
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    print(f"runtime: {runtime_versions()}; precision {dtype or torch.float32}; "
          f"layout {memory_format_text(memory_format)}; "
          f"batch {args.batch_size} of {tuple(args.patch_size)}")

    model = VNet(n_classes=2, has_dropout=True).to(device, memory_format=memory_format).train()
    image = torch.randn(args.batch_size, 1, *args.patch_size, device=device).contiguous(memory_format=memory_format)
    inputs = block_inputs(model, image)
    bench = Bench(device, dtype, args.reps, args.warmup)

    print(f"\n{'block':<12}{'input (B, C, X, Y, Z)':<28}{'forward ms':>11}{'fwd+bwd ms':>12}{'share':>8}")
    rows = []
    for name in BLOCKS:
        x = leaf_like(inputs[name], requires_grad=name != "enc1")  # the image needs no gradient
        block = getattr(model, name)
        rows.append((name, tuple(x.shape), bench.forward_ms(block, x), bench.step_ms(block, x)))
    total = sum(r[3] for r in rows)
    for name, shape, fwd, step in rows:
        print(f"{name:<12}{str(shape):<28}{fwd:11.2f}{step:12.2f}{100 * step / total:7.1f}%")
    print(f"{'blocks':<40}{sum(r[2] for r in rows):11.2f}{total:12.2f}")
    student = bench.step_ms(model, leaf_like(image, requires_grad=False))
    unlabeled = leaf_like(image[args.labeled_bs:], requires_grad=False)
    with torch.no_grad():
        teacher = bench.forward_ms(model, unlabeled)
    print(f"whole student step (fwd+bwd, batch {args.batch_size}): {student:.2f} ms; "
          f"teacher forward (batch {args.batch_size - args.labeled_bs}, no grad): {teacher:.2f} ms")

    print(f"\n{'rewrite':<22}{'layer':<12}{'layer ms':>10}{'rewrite ms':>12}{'max |diff|':>12}  (fwd+bwd)")

    def compare(kind: str, name: str, layer, rewrite, requires_grad: bool = True):
        x = leaf_like(inputs[name], requires_grad=requires_grad)
        reference = copy.deepcopy(layer).float().cpu()
        diff = max_difference(reference, lambda t: rewrite(reference, t), x)
        ms_layer = bench.step_ms(layer, x)
        ms_rewrite = bench.step_ms(lambda t: rewrite(layer, t), x)
        print(f"{kind:<22}{name:<12}{ms_layer:10.2f}{ms_rewrite:12.2f}{diff:12.1e}")

    compare("pad8 (first conv)", "enc1", model.enc1[0], conv_with_padded_channels, requires_grad=False)
    for name in ("down1", "down2", "down3", "down4"):
        compare("matmul-down", name, getattr(model, name)[0], strided_conv_as_matmul)
    for name in ("up4", "up3", "up2", "up1"):
        compare("matmul-up", name, getattr(model, name)[0], transposed_conv_as_matmul)
    for name in filter(None, args.compile_blocks.split(",")):
        block = getattr(model, name)
        x = leaf_like(inputs[name], requires_grad=name != "enc1")
        started = time.perf_counter()
        compiled = torch.compile(block)
        bench.step_ms(compiled, x)  # the first calls compile
        compile_s = time.perf_counter() - started
        print(f"{'compiled':<22}{name:<12}{bench.step_ms(block, x):10.2f}{bench.step_ms(compiled, x):12.2f}"
              f"{'':>12}  (compiling: {compile_s:.0f} s)")


if __name__ == "__main__":
    main()
