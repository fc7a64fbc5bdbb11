"""``cifake-publish`` (also ``cifake publish``): the dataset and the model to the Hub."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from cifake_hub.cli.options import add_config_options, config_from_args
from cifake_hub.cli.run import run_command

NAME = "publish"
HELP = "publish the dataset (and a run's model) to the Hub, then verify them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cifake_hub.hub.session import PublishConfig

    add_config_options(p, PublishConfig)
    p.add_argument(
        "--dry-run",
        nargs="?",
        const="publish-dry-run",
        default=None,
        metavar="OUT",
        help="write every repo's files under OUT (default publish-dry-run/) and upload nothing",
    )
    p.set_defaults(func=run)


def register(sub: Any) -> None:
    add_arguments(sub.add_parser(NAME, help=HELP))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from cifake_hub.hub.publish import configure_endpoint, default_targets, dry_run, publish
    from cifake_hub.hub.session import PublishConfig
    from cifake_hub.progress import console

    # Before anything imports huggingface_hub, which reads the endpoint once.
    configure_endpoint(args.endpoint)
    cfg = config_from_args(PublishConfig, args)
    targets = default_targets(cfg)
    if args.dry_run is not None:
        out = Path(args.dry_run)
        with console.status("staging the repos"):
            trees = dry_run(cfg, out, targets)
        for target in targets:
            files = trees[target.kind]
            table = Table(
                title=f"{target.kind} repo {target.repo_id}: {len(files)} files (dry run)"
            )
            table.add_column("path")
            table.add_column("bytes", justify="right")
            for path, (size, _) in files.items():
                table.add_row(path, f"{size:,}")
            console.print(table)
        where = " and ".join(f"{out}/{t.kind}" for t in targets)
        print(f"dry run: nothing uploaded; the files are in {where}")
        return 0

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    _, checks = publish(cfg, targets, say)
    table = Table(title="published")
    table.add_column("repo", no_wrap=True)
    for col in ("revision", "new commits", "files", "verified"):
        table.add_column(col)
    for target in targets:
        p = target.pushed
        verified = "skipped" if checks is None else target.verified(checks[target.kind])
        table.add_row(p.url, p.revision, str(len(p.commits)), str(p.files), verified)
    # The result goes to stdout at full width: whole URLs matter more than a narrow terminal.
    stdout = Console(width=max(console.width, 150))
    stdout.print(table)
    if checks is not None:
        stdout.print(f"verification took {checks['seconds']:.1f} s (fresh process, empty cache)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cifake-publish", description=HELP[0].upper() + HELP[1:])
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
