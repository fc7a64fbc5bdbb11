"""``cifake-publish`` (also ``cifake publish``): the dataset and the model to the Hub."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

HELP = "publish the dataset (and a run's model) to the Hub, then verify them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--dataset-repo", required=True, metavar="NS/NAME", help="dataset repo id")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="run folder of `cifake search`")
    p.add_argument("--model-repo", default=None, metavar="NS/NAME", help="model repo id")
    p.add_argument(
        "--private", action="store_true", help="create new repos private (existing keep theirs)"
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument("--revision", default=None, help="push to this branch (made if missing)")
    target.add_argument("--create-pr", action="store_true", help="open pull requests instead")
    p.add_argument(
        "--endpoint", default=None, help="Hub URL (default $HF_ENDPOINT or huggingface.co)"
    )
    p.add_argument(
        "--dry-run",
        nargs="?",
        const="publish-dry-run",
        default=None,
        metavar="OUT",
        help="write both repos' files under OUT (default publish-dry-run/) and upload nothing",
    )
    p.add_argument("--retries", type=int, default=3, help="repeats of a failed step (default 3)")
    p.add_argument("--no-verify", action="store_true", help="skip loading everything back")
    p.set_defaults(func=run)


def register(sub: Any) -> None:
    add_arguments(sub.add_parser("publish", help=HELP))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from cifake_hub.progress import console
    from cifake_hub.publish import PublishConfig, dry_run, publish

    cfg = PublishConfig(
        dataset=args.dataset,
        dataset_repo=args.dataset_repo,
        run=args.run,
        model_repo=args.model_repo,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        endpoint=args.endpoint,
        retries=args.retries,
        verify=not args.no_verify,
    )
    if args.dry_run is not None:
        out = Path(args.dry_run)
        with console.status("staging both repos"):
            trees = dry_run(cfg, out)
        repos = {"dataset": cfg.dataset_repo, "model": cfg.model_repo}
        for kind, files in trees.items():
            table = Table(title=f"{kind} repo {repos[kind]}: {len(files)} files (dry run)")
            table.add_column("path")
            table.add_column("bytes", justify="right")
            for path, (size, _) in files.items():
                table.add_row(path, f"{size:,}")
            console.print(table)
        print(f"dry run: nothing uploaded; the files are in {out}/dataset and {out}/model")
        return 0

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    results, checks = publish(cfg, say)
    table = Table(title="published")
    table.add_column("repo", no_wrap=True)
    for col in ("revision", "new commits", "files", "verified"):
        table.add_column(col)
    for p in results:
        verified = "skipped"
        if checks is not None:
            c = checks[p.kind]
            verified = (
                f"{sum(c['rows'].values()):,} rows, {c['sampled_images']} images equal"
                if p.kind == "dataset"
                else f"{c['files']} hashes, {c['images_predicted']} predictions equal"
            )
        table.add_row(p.url, p.revision, str(len(p.commits)), str(p.files), verified)
    # The result goes to stdout at full width: whole URLs matter more than a narrow terminal.
    stdout = Console(width=max(console.width, 150))
    stdout.print(table)
    if checks is not None:
        stdout.print(f"verification took {checks['seconds']:.1f} s (fresh process, empty cache)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from cifake_hub.cli.main import run_command

    parser = argparse.ArgumentParser(prog="cifake-publish", description=HELP[0].upper() + HELP[1:])
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
