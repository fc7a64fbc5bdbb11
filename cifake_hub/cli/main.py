"""The ``cifake`` command. Subcommands live in their own modules; only the command given
gets its options built (which imports its config's module), and stages import heavy
libraries only when they run, so ``cifake --help`` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

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
from cifake_hub.cli.run import DEBUG_VARIABLE, run_command

# A command is a module with NAME, register(subparsers) and (optionally) HELP; adding one is
# register_command(module).
COMMANDS = [
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
]


def register_command(module: ModuleType) -> ModuleType:
    COMMANDS.append(module)
    return module


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
