"""``cifake train DATASET --out RUN_DIR --recipe NAME``: train one detector by a recipe
(architecture, optimizer, schedule, augmentation as data; `--list-recipes` shows them).

The paper's 36-topology grid is `cifake search`; a recipe trains one model into the same
kind of run folder (validation slice of train, model.keras, test scored once), so explain,
evaluate, cards, predict and publish work on it unchanged. A stopped run resumes from its
last finished epoch when run again with the same options.
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "train"


def register(sub: Any) -> None:
    from cifake_hub.training.train import TrainConfig

    p = add_command(sub, NAME, __doc__, run, TrainConfig)
    p.add_argument("dataset", nargs="?", help="dataset folder or Hub dataset id")
    p.add_argument("--out", help="run folder (created; resumed if it exists)")
    p.add_argument(
        "--list-recipes", action="store_true", help="list the recipes and their settings, then exit"
    )


def run(args: argparse.Namespace) -> int:
    from cifake_hub.cli.display import EpochDisplay
    from cifake_hub.errors import ConfigError
    from cifake_hub.progress import console, info_bars
    from cifake_hub.training.train import TrainConfig, recipe_table, run_training

    if args.list_recipes:
        print(recipe_table())
        return 0
    if not args.dataset or not args.out:
        raise ConfigError("give DATASET and --out RUN_DIR (or --list-recipes)")
    config = config_from_args(TrainConfig, args)
    bars = info_bars()
    log = console.print

    with bars:
        outcome = run_training(args.dataset, args.out, config, EpochDisplay(bars), say=log)
    result = outcome.result
    v = result.validation
    log(
        f"{result.recipe}: kept epoch {result.best_epoch}/{result.epochs_run}, validation "
        f"accuracy {v['accuracy']:.2%} AUC {v['roc_auc']:.4f}; "
        f"{result.train_images_per_second:,.0f} images/s, {result.train_seconds:,.0f} s"
    )
    final = outcome.test.final
    if final is not None:
        log(f"test: accuracy {final.metrics['accuracy']:.2%} AUC {final.metrics['roc_auc']:.4f}")
    log(outcome.test.selection_sentence)
    if result.selection is not None:
        log(result.selection["why"])
    log(f"run folder: {outcome.run.path}")
    return 0
