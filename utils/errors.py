"""Errors a user can fix, reported as one line instead of a traceback."""
import argparse
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors (an unknown flag, a missing value, a bad choice) are one
    line and a pointer to ``--help``, instead of the whole usage before the error."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def report_user_errors(main):
    """Run ``main``; a ``UserError`` prints ``error: <message>`` on stderr and exits with status 2,
    Ctrl-C one line and status 130 (checkpoints are written atomically, so none is broken): the
    interruption's own message where it has one (``KeyboardInterrupt("...")``, e.g. during a save)."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as interrupt:
            message = str(interrupt) or ("interrupted; a training run continues from its last saved checkpoint "
                                         "with --resume")
            print(f"\n{message}", file=sys.stderr)
            sys.exit(130)
    return wrapper
