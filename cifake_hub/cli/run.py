"""Running a parsed command the same way for every entry point (`cifake`, `cifake-publish`):
known errors become one line on stderr and exit code 1."""

from __future__ import annotations

import argparse
import os
import sys

from cifake_hub.errors import USER_ERRNOS, CifakeError

DEBUG_VARIABLE = "CIFAKE_DEBUG"


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command, turning known errors into one line on stderr and exit code 1."""
    try:
        return int(args.func(args) or 0)
    except CifakeError as exc:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # The system refused a write (permissions, a read-only or full disk): the user's to
        # fix, so one line; any other OSError is a bug and keeps its traceback.
        if os.environ.get(DEBUG_VARIABLE) or exc.errno not in USER_ERRNOS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"error: {exc.strerror}{where}; check the folder's permissions and free space",
            file=sys.stderr,
        )
        return 1
