"""``cifake build --out DIR``: build a CIFAKE dataset: REAL from CIFAR-10, FAKE generated with
Stable Diffusion 1.4 or other diffusers text-to-image models.

Generates FAKE images with the paper's prompts (for SD 1.4: Euler Ancestral, 50 steps, 512 px
renders resized to 32 px; other models: their family's settings) and writes REAL and FAKE
into a dataset folder; repeat --generator to split each class's FAKE images between models
(a `generator` column says which). Resumes when run again; spreads over processes under
torchrun / accelerate launch.
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import (
    add_command,
    config_from_args,
)

NAME = "build"


def register(sub: Any) -> None:
    from cifake_hub.builders.generate import GeneratorConfig
    from cifake_hub.builders.units import BuildConfig

    add_command(sub, NAME, __doc__, run, BuildConfig, GeneratorConfig, overwrite=True)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.builders.cifake import build_dataset
    from cifake_hub.builders.generate import GeneratorConfig
    from cifake_hub.builders.units import BuildConfig, shard_images
    from cifake_hub.progress import console, progress_bar

    config = config_from_args(BuildConfig, args)
    gen_config = config_from_args(GeneratorConfig, args)
    shard = f"shard {config.rank + 1}/{config.world}"
    with progress_bar(f"FAKE images ({shard})", total=shard_images(config)) as bar:
        outcome = build_dataset(
            config,
            gen_config,
            overwrite=args.overwrite,
            progress=lambda n: bar.advance(0, n),  # type: ignore[arg-type]
        )
    console.print(
        f"{shard}: made {outcome.made} images ({outcome.todo - outcome.made} were already "
        f"done); {outcome.blacked_out} blacked-out renders made again"
    )
    if outcome.rows is None:
        return 0
    console.print(
        f"wrote {config.out}: " + ", ".join(f"{k} {v:,} rows" for k, v in outcome.rows.items())
    )
    report = outcome.report or {}
    for src in report.get("sources", []):
        taken = ", ".join(f"{k} {v:,}" for k, v in src["taken"].items()) or "none"
        console.print(
            f"{src['name']} ({src['label']}): {src['found']:,} found, taken {taken}; "
            f"{len(src['skipped'])} skipped, {src['left_out_by_cap']} left out by the cap, "
            f"{src['without_class']} without a class, {src['resized']} resized"
        )
    dup = report.get("duplicates", {})
    if dup.get("groups"):
        console.print(
            f"{dup['extra_copies']} exact duplicate copies in {dup['groups']} groups "
            f"({dup['groups_across_sources']} across sources, {dup['groups_across_splits']} "
            "across splits), kept"
        )
    if report.get("sources"):
        console.print(f"details: {config.out}/build_report.json")
    print(config.out)
    return 0
