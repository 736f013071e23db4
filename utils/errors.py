"""Errors a user can fix, reported as one line instead of a traceback."""
import functools
import sys


class UserError(Exception):
    """Bad input (a path, a flag, a data file): the message says what is wrong and what to do."""


def report_user_errors(main):
    """Run ``main``; a ``UserError`` prints ``error: <message>`` on stderr and exits with status 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    return wrapper
