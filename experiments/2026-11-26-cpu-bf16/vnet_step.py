"""Seconds per VNet training step (batch 4 of 64x64x32, SGD) on the CPU, fp32 and bf16 autocast,
in NCDHW and channels_last_3d.

    PYTHONPATH=. python experiments/2026-11-26-cpu-bf16/vnet_step.py THREADS AMPS
    # AMPS: 0,1 for both precisions, 0 for fp32 only
"""
import sys
import time

import torch

from networks.vnet import VNet

torch.set_num_threads(int(sys.argv[1]))
precisions = [flag == "1" for flag in sys.argv[2].split(",")]
torch.manual_seed(0)
for layout in (torch.contiguous_format, torch.channels_last_3d):
    for bf16 in precisions:
        model = VNet(n_classes=2, has_dropout=True).to(memory_format=layout)
        x = torch.randn(4, 1, 64, 64, 32).contiguous(memory_format=layout)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(x).float().square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        for _ in range(2):
            step()
        start = time.perf_counter()
        for _ in range(5):
            step()
        print(layout, "bf16" if bf16 else "fp32", f"{(time.perf_counter() - start) / 5:.3f} s/step", flush=True)
