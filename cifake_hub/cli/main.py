"""The ``cifake`` command. Subcommands live in their own modules and import heavy
libraries only when they run, so ``cifake --help`` answers at once."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cifake_hub import __version__
from cifake_hub.cli import (
    build,
    card,
    demo,
    evaluate,
    explain,
    import_kaggle,
    predict,
    publish,
    search,
)
from cifake_hub.errors import CifakeError

COMMANDS = (demo, import_kaggle, build, search, evaluate, explain, card, publish, predict)
DEBUG_VARIABLE = "CIFAKE_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cifake",
        description="Build, train, explain and publish CIFAKE-style real-vs-fake datasets.",
        epilog=f"Known errors print one line; set {DEBUG_VARIABLE}=1 for a traceback.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
