"""``cifake build --out DIR``: CIFAR-10 as REAL, Stable Diffusion images as FAKE."""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="build a CIFAKE dataset: REAL from CIFAR-10, FAKE generated with Stable Diffusion",
        description=(
            "Generates FAKE images with the paper's prompts (Euler Ancestral, 50 steps, 512 px "
            "renders resized to 32 px) and writes REAL and FAKE into a dataset folder. Resumes "
            "when run again; spreads over processes under torchrun / accelerate launch."
        ),
    )
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument(
        "--generator",
        default="CompVis/stable-diffusion-v1-4",
        help="SD-family model id or local folder, or 'tiny' (random weights, offline)",
    )
    p.add_argument(
        "--real",
        default="hub:uoft-cs/cifar10",
        help="REAL source: hub:ID, cifar-tar:PATH or dir:PATH",
    )
    p.add_argument("--per-class-train", type=int, default=5_000)
    p.add_argument("--per-class-test", type=int, default=1_000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cuda[:N], mps or cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance-scale", type=float, default=7.5)
    p.add_argument("--render-size", type=int, default=0, help="0: 512 (64 for tiny)")
    p.add_argument("--unit-size", type=int, default=100, help="FAKE images per checkpoint")
    p.add_argument(
        "--num-shards", type=int, default=None, help="processes in all (default: torchrun's)"
    )
    p.add_argument(
        "--shard-index", type=int, default=None, help="this process (default: torchrun's rank)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a finished dataset in --out")
    p.set_defaults(func=run)


def _rank_and_world(args: argparse.Namespace) -> tuple[int, int]:
    if args.num_shards is not None:
        return args.shard_index or 0, args.num_shards
    # torchrun and accelerate launch both export these; no process group is needed, since
    # processes share work through the unit files only.
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run(args: argparse.Namespace) -> int:
    from cifake_hub.builders.cifake import BuildConfig, build_dataset, units
    from cifake_hub.generate import GeneratorConfig
    from cifake_hub.progress import console, progress_bar

    rank, world = _rank_and_world(args)
    gen_config = GeneratorConfig(
        model_id=args.generator,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        render_size=args.render_size,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
    )
    config = BuildConfig(
        out=args.out,
        real=args.real,
        per_class_train=args.per_class_train,
        per_class_test=args.per_class_test,
        unit_size=args.unit_size,
        num_shards=world,
        shard_index=rank,
    )
    todo = sum(len(jobs) for i, (_, jobs) in enumerate(units(config)) if i % world == rank)
    with progress_bar(f"FAKE images (shard {rank + 1}/{world})", total=todo) as bar:
        outcome = build_dataset(
            config,
            gen_config,
            overwrite=args.overwrite,
            progress=lambda n: bar.advance(0, n),  # type: ignore[arg-type]
        )
    console.print(
        f"shard {rank + 1}/{world}: made {outcome.made} images ({outcome.todo - outcome.made} "
        f"were already done); {outcome.blacked_out} blacked-out renders made again"
    )
    if outcome.rows is None:
        return 0
    console.print(
        f"wrote {args.out}: " + ", ".join(f"{k} {v:,} rows" for k, v in outcome.rows.items())
    )
    print(args.out)
    return 0
