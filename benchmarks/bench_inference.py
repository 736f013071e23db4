"""Time whole-volume evaluation the plain way against ours, on the same weights and cases.

plain: the original UA-MT ``test_single_case`` (one window at a time, fp32, softmax copied to
       the host and accumulated in numpy), then medpy's dc, jc, hd95 and asd per class, as the
       original LA evaluation calls them;
ours:  ``utils.sliding_window.sliding_window_predict`` (``--sw_batch`` windows per forward
       pass, accumulation on the device, bf16/fp16 autocast on CUDA and bf16 on CPUs with bf16
       units, channels_last_3d), then
       ``utils.metrics.multiclass_metrics``.

Prints seconds per case for the windows and for the metrics, the speed-ups, and the largest
Dice difference between the two predictions. medpy is imported only here and only if present:
without it the plain metrics are not timed.

    python benchmarks/bench_inference.py --root_path "data/LA/2018LA_Seg_Training Set" \\
        --test_list /tmp/three.list --cases 3 --checkpoint model/LA_vnet_16_labeled/MT/iter_6000.pth
    # quick CPU run: a small window, coarse strides
    python benchmarks/bench_inference.py --root_path ... --test_list ... --cases 2 \\
        --patch_size 64 64 48 --stride_xy 32 --stride_z 16

Without ``--checkpoint`` the network is a VNet initialised with ``--seed``: the timings are
valid, the Dice values are not.
"""
import argparse
import copy
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataloaders.case_lists import read_case_list  # noqa: E402
from inference import resolve_data  # noqa: E402
from networks.vnet import VNet  # noqa: E402
from utils.checkpoint import load_checkpoint, load_network  # noqa: E402
from utils.device import amp_dtype, memory_format_for, memory_format_text, precision_text, select_device  # noqa: E402
from utils.errors import report_user_errors  # noqa: E402
from utils.metrics import multiclass_metrics  # noqa: E402
from utils.sliding_window import sliding_window_predict  # noqa: E402

KEYS = ("dice", "jaccard", "hd95", "asd")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_name", default="LA", help="for the default root, patch and strides")
    p.add_argument("--root_path", default=None, help="case folders (h5) or an MSD folder")
    p.add_argument("--test_list", default=None, help="case IDs (default: the folder's test.list)")
    p.add_argument("--cases", type=int, default=3, help="the first N cases of the list")
    p.add_argument("--checkpoint", default=None, help="weights to use (default: a VNet initialised with --seed)")
    p.add_argument("--teacher", action="store_true", help="the checkpoint's teacher instead of its student")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch_size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"))
    p.add_argument("--stride_xy", type=int, default=None, help="default: the dataset's (LA: 18)")
    p.add_argument("--stride_z", type=int, default=None, help="default: the dataset's (LA: 4)")
    p.add_argument("--sw_batch", type=int, default=8, help="windows per forward pass (ours)")
    p.add_argument("--amp", type=int, default=1, help="autocast on CUDA and on CPUs with bf16 units (ours)")
    p.add_argument("--channels_last", type=int, default=1, help="channels_last_3d layout (ours)")
    p.add_argument("--gpu", default="0")
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


@torch.no_grad()
def plain_predict(model, image, patch_size, stride_xy, stride_z, num_classes, device) -> tuple:
    """The original UA-MT ``test_single_case``: (labels (X, Y, Z) int64, probabilities
    (C, X, Y, Z) float32) numpy arrays. Also the reference of tests/test_sliding_window.py."""
    w, h, d = image.shape
    pads = [max(p - s, 0) for s, p in zip(image.shape, patch_size)]
    if any(pads):
        image = np.pad(image, [(p // 2, p - p // 2) for p in pads], mode="constant", constant_values=0)
    ww, hh, dd = image.shape
    sx = math.ceil((ww - patch_size[0]) / stride_xy) + 1
    sy = math.ceil((hh - patch_size[1]) / stride_xy) + 1
    sz = math.ceil((dd - patch_size[2]) / stride_z) + 1
    score_map = np.zeros((num_classes,) + image.shape, np.float32)
    cnt = np.zeros(image.shape, np.float32)
    for x in range(sx):
        xs = min(stride_xy * x, ww - patch_size[0])
        for y in range(sy):
            ys = min(stride_xy * y, hh - patch_size[1])
            for z in range(sz):
                zs = min(stride_z * z, dd - patch_size[2])
                region = (slice(xs, xs + patch_size[0]), slice(ys, ys + patch_size[1]), slice(zs, zs + patch_size[2]))
                window = torch.from_numpy(np.ascontiguousarray(image[region])[None, None]).to(device)
                probs = torch.softmax(model(window), dim=1).cpu().numpy()[0]
                score_map[(slice(None), *region)] += probs
                cnt[region] += 1
    score_map = score_map / cnt[None]
    label_map = np.argmax(score_map, axis=0)
    if any(pads):
        crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(pads, (w, h, d)))
        label_map, score_map = label_map[crop], score_map[(slice(None), *crop)]
    return label_map, score_map


def medpy_metrics(metric, pred, gt, num_classes) -> list[dict]:
    """medpy's dc, jc, hd95 and asd per foreground class (NaN where medpy cannot measure)."""
    out = []
    for c in range(1, num_classes):
        p, g = pred == c, gt == c
        row = {"dice": metric.dc(p, g), "jaccard": metric.jc(p, g)}
        both = p.any() and g.any()
        row["hd95"] = metric.hd95(p, g) if both else math.nan
        row["asd"] = metric.asd(p, g) if both else math.nan
        out.append(row)
    return out


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


@report_user_errors
def main():
    args = parse_args()
    # without a checkpoint, the named dataset's window and its images as stored
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else {"args": {"dataset_name": args.dataset_name}}
    patch_size, data = resolve_data(args, checkpoint)  # the images as the network saw them
    num_classes = data.num_classes
    case_ids = read_case_list(args.test_list or data.lists_dir / "test.list")[:args.cases]
    device = select_device(args.gpu)
    if args.checkpoint:
        model = load_network(checkpoint, Path(args.checkpoint), teacher=args.teacher, num_classes=num_classes,
                             device=device)
        weights = f"{args.checkpoint} ({'teacher' if args.teacher else 'student'})"
    else:
        torch.manual_seed(args.seed)
        model = VNet(n_channels=1, n_classes=num_classes, n_filters=16, normalization="batchnorm",
                     has_dropout=True).to(device).eval()
        weights = f"random VNet, seed {args.seed} (Dice values are meaningless)"
    try:
        from medpy.metric import binary as medpy_binary
    except ImportError:
        medpy_binary = None
    autocast = amp_dtype(device, bool(args.amp))
    memory_format = memory_format_for(device, bool(args.channels_last))
    our_model = copy.deepcopy(model).to(memory_format=memory_format)  # the plain predictor keeps NCDHW
    print(f"{datetime.date.today()}  {hardware(device)}  torch {torch.__version__}")
    print(f"weights {weights}; {len(case_ids)} cases; patch {patch_size}, strides {args.stride_xy}/{args.stride_z}")
    print(f"plain: 1 window per pass, fp32, numpy accumulation, "
          f"{'medpy metrics' if medpy_binary else 'medpy not installed: plain metrics not timed'}")
    print(f"ours:  {args.sw_batch} windows per pass, {precision_text(device, bool(args.amp))}, "
          f"{memory_format_text(memory_format)}, accumulation on {device.type}, "
          "utils.metrics")

    def ours_predict(image):
        _, labels = sliding_window_predict(our_model, image, patch_size=patch_size, stride_xy=args.stride_xy,
                                           stride_z=args.stride_z, num_classes=num_classes, device=device,
                                           sw_batch=args.sw_batch, amp_dtype=autocast)
        return labels.cpu().numpy().astype(np.uint8)

    times = {k: [] for k in ("plain_windows", "plain_metrics", "ours_windows", "ours_metrics")}
    dice_diff, metric_diff = 0.0, {k: 0.0 for k in KEYS}
    for number, case_id in enumerate(case_ids):
        image, label = data.read(case_id)
        if number == 0:  # warm-up (cuDNN algorithm choice, allocator) on a corner of the volume
            corner = image[:patch_size[0], :patch_size[1], :patch_size[2]]  # one window
            plain_predict(model, corner, patch_size, patch_size[0], patch_size[2], num_classes, device)
            ours_predict(corner)
        t_plain, plain = timed(lambda: plain_predict(model, image, patch_size, args.stride_xy, args.stride_z,
                                                     num_classes, device)[0].astype(np.uint8), device)
        t_ours, ours = timed(lambda: ours_predict(image), device)
        t_ours_m, ours_rows = timed(lambda: multiclass_metrics(ours, label, num_classes), device)
        times["plain_windows"].append(t_plain)
        times["ours_windows"].append(t_ours)
        times["ours_metrics"].append(t_ours_m)
        line = f"{case_id} {image.shape}: windows plain {t_plain:.2f} s, ours {t_ours:.2f} s; metrics "
        if medpy_binary is not None:
            t_plain_m, plain_rows = timed(lambda: medpy_metrics(medpy_binary, plain, label, num_classes), device)
            times["plain_metrics"].append(t_plain_m)
            line += f"medpy {t_plain_m:.3f} s, "
            # the metrics alone, on the same prediction
            for ref, got in zip(plain_rows, multiclass_metrics(plain, label, num_classes)):
                for k in KEYS:
                    if not (math.isnan(ref[k]) and math.isnan(got[k])):
                        metric_diff[k] = max(metric_diff[k], abs(float(ref[k]) - float(got[k])))
            plain_dice = [r["dice"] for r in plain_rows]
        else:
            plain_dice = [r["dice"] for r in multiclass_metrics(plain, label, num_classes)]
        ours_dice = [r["dice"] for r in ours_rows]
        case_diff = max(abs(a - b) for a, b in zip(plain_dice, ours_dice))
        dice_diff = max(dice_diff, case_diff)
        print(line + f"ours {t_ours_m:.3f} s; Dice plain {plain_dice[0]:.4f}, ours {ours_dice[0]:.4f}, "
              f"voxels differing {np.count_nonzero(plain != ours)}")

    mean = {k: float(np.mean(v)) if v else math.nan for k, v in times.items()}
    print(f"\n{'s/case':>14} {'plain':>9} {'ours':>9} {'speed-up':>9}")
    p_total, o_total = mean["plain_windows"] + mean["plain_metrics"], mean["ours_windows"] + mean["ours_metrics"]
    for part, p, o in (("windows", mean["plain_windows"], mean["ours_windows"]),
                       ("metrics", mean["plain_metrics"], mean["ours_metrics"]), ("total", p_total, o_total)):
        ratio = f"{p / o:8.1f}x" if math.isfinite(p) else "     n/a"
        print(f"{part:>14} {p:9.3f} {o:9.3f} {ratio}")
    print(f"largest Dice difference between plain and ours: {dice_diff:.2e}")
    if medpy_binary is not None:
        print("utils.metrics vs medpy on the same prediction, max |diff|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in metric_diff.items()))


if __name__ == "__main__":
    main()
