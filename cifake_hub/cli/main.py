"""The ``cifake`` command. Subcommands live in their own modules; only the command given
gets its options built (which imports its config's module), and stages import heavy
libraries only when they run, so ``cifake --help`` answers at once."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

from cifake_hub import __version__
from cifake_hub.cli import (
    app,
    build,
    card,
    demo,
    evaluate,
    explain,
    import_kaggle,
    predict,
    publish,
    search,
    study,
    train,
    zoo,
)
from cifake_hub.cli.options import summary
from cifake_hub.errors import CifakeError

COMMANDS = (
    demo,
    import_kaggle,
    build,
    search,
    train,
    zoo,
    study,
    evaluate,
    explain,
    card,
    publish,
    predict,
    app,
)
DEBUG_VARIABLE = "CIFAKE_DEBUG"
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s options are built (its config modules are imported),
    the other commands are listed with their help, so ``cifake --help`` stays instant."""
    parser = argparse.ArgumentParser(
        prog="cifake",
        description="Build, train, explain and publish CIFAKE-style real-vs-fake datasets.",
        epilog=f"Known errors print one line; set {DEBUG_VARIABLE}=1 for a traceback.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        if command == module.NAME:
            module.register(sub)
        else:
            sub.add_parser(
                module.NAME, help=getattr(module, "HELP", None) or summary(module.__doc__)
            )
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
