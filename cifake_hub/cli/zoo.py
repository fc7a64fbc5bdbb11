"""``cifake zoo train FAMILY DATASET --out GEN_DIR``: train a small generator of a family
(dcgan, upconv-gan, vae, ddpm) on the REAL train rows of a dataset, for CIFAKE-style FAKE
images made offline (`cifake build --generator GEN_DIR` or ``aligned:GEN_DIR``).

Checkpointed every epoch: run the same command again after any stop to resume. The folder
gets the weights, a sample grid per epoch, the quality figure (SWD) and a model card.
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_config_options, summary

NAME = "zoo"
HELP = "train generator families of your own (dcgan, upconv-gan, vae, ddpm) on REAL images"


def register(sub: Any) -> None:
    from cifake_hub.zoo.config import ZooConfig

    p = sub.add_parser(NAME, help=HELP)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser("train", help=summary(__doc__), description=" ".join(
        __doc__.split("\n\n", 1)[1].split()))  # fmt: skip
    add_config_options(t, ZooConfig)
    t.add_argument("dataset", help="dataset folder or Hub dataset id (its REAL train rows)")
    t.add_argument("--out", required=True, help="generator folder (created; resumed if it exists)")
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from cifake_hub.cards.generator_card import write_generator_card
    from cifake_hub.cli.options import config_from_args
    from cifake_hub.progress import console, info_bars
    from cifake_hub.zoo.config import ZooConfig
    from cifake_hub.zoo.train import train_generator

    config = config_from_args(ZooConfig, args)
    bars = info_bars()
    task = bars.add_task(config.family, total=None, info="")
    log = console.print

    def progress(epoch: int, batch: int, batches: int, losses: dict[str, float]) -> None:
        info = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
        bars.update(task, total=batches, completed=batch,
                    description=f"{config.family} epoch {epoch}/{config.epochs}",
                    info=info)  # fmt: skip
        if batch == batches and not console.is_terminal:
            log(f"epoch {epoch}/{config.epochs}: {info}")

    with bars:
        outcome = train_generator(args.dataset, args.out, config, progress, say=log)
    card = write_generator_card(outcome.folder.path)
    t = outcome.training
    q = t.get("quality") or {}
    if outcome.epochs_run == 0:
        log(f"{outcome.folder.path} already holds the trained {config.family}; card rewritten")
    log(
        f"{config.family}: {t['epochs_done']} epochs on {t['train_images']:,} REAL images, "
        f"{t['train_seconds']:,.0f} s; SWD {q.get('swd')} "
        f"(real vs real {q.get('swd_real_vs_real')})"
    )
    log(f"generator folder: {outcome.folder.path} (card: {card})")
    return 0
