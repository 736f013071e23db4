"""Run a training script under torchrun and record, per rank, what a test cannot see from
outside: the samples each rank drew and its final student and teacher.

    torchrun --nproc_per_node 2 tests/helpers/torchrun_probe.py OUT_DIR SCRIPT [script flags]

writes OUT_DIR/rank{R}_batches.json ({batch number: [case indices]}), OUT_DIR/rank{R}.pt
(the state ``checkpoint_state`` builds at the last iteration) and OUT_DIR/rank{R}_losses.json
({iteration (1-based): {loss name: this rank's value}}).
"""
import json
import os
import runpy
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dataloaders import samplers  # noqa: E402
from training import schedule  # noqa: E402

out, script, flags = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
rank = int(os.environ["RANK"])
drawn = {}
losses = {}

original_batch = samplers.RankSlice.positioned_batch


def recording_batch(self, n):
    items = original_batch(self, n)
    drawn[n] = [index for index, _ in items]
    return items


original_after = schedule.Periodic.after


def recording_after(self, iteration, scalars, checkpoint, model):
    losses[iteration + 1] = {k: float(v) for k, v in scalars.items() if k.startswith("loss")}
    original_after(self, iteration, scalars, checkpoint, model)
    if iteration + 1 == self.max_iterations:
        torch.save(checkpoint(), out / f"rank{rank}.pt")
        (out / f"rank{rank}_batches.json").write_text(json.dumps(drawn))
        (out / f"rank{rank}_losses.json").write_text(json.dumps(losses))


samplers.RankSlice.positioned_batch = recording_batch
schedule.Periodic.after = recording_after
sys.argv = [script, *flags]
runpy.run_path(str(REPO / script), run_name="__main__")
