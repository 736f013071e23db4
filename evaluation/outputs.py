"""What an evaluation writes besides its numbers: the log, JSON without NaN (NIfTI volumes:
``dataloaders.msd.save_nifti``)."""
import math
from pathlib import Path

from tqdm import tqdm


def json_ready(value):
    """NaN becomes null (JSON has no NaN); paths and other objects become strings."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Log:
    """Lines on the console (through tqdm, so the progress bar stays intact) and in ``log.txt``;
    with ``writes=False`` (torchrun ranks other than 0) the lines are only kept, for rank 0."""

    def __init__(self, path: Path, writes: bool = True):
        self.file = open(path, "w") if writes else None
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        self.lines.append(line)
        if self.file:
            tqdm.write(line)
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
