"""Errors a user can fix, reported as one line instead of a traceback."""
import functools
import sys
from pathlib import Path


class UserError(Exception):
    """Bad input (a path, a flag, a data file): the message says what is wrong and what to do."""


def require_folder_or_nothing(path, flag: str = "--out") -> None:
    """An output folder may exist or not, but must not be a file (or below one)."""
    for place in (Path(path), *Path(path).parents):
        if place.exists():
            if not place.is_dir():
                raise UserError(f"{flag} {path}: {place} is a file; name a folder")
            return


def report_user_errors(main):
    """Run ``main``; a ``UserError`` prints ``error: <message>`` on stderr and exits with status 2,
    Ctrl-C one line and status 130 (checkpoints are written atomically, so none is broken)."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("\ninterrupted; a training run continues from its last saved checkpoint with --resume",
                  file=sys.stderr)
            sys.exit(130)
    return wrapper
