"""``cifake card dataset DIR`` and ``cifake card model RUN_DIR``: render the cards to README.md."""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_config_options, config_from_args

NAME = "card"
HELP = "render the dataset card or the model card (README.md)"


def register(sub: Any) -> None:
    from cifake_hub.cards.common import DatasetCardConfig, ModelCardConfig

    p = sub.add_parser(NAME, help=HELP)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    d = kinds.add_parser("dataset", help="write DIR/README.md, keeping the YAML load_dataset needs")
    add_config_options(d, DatasetCardConfig)
    d.set_defaults(func=run_dataset)
    m = kinds.add_parser("model", help="write RUN_DIR/README.md from the run's results")
    add_config_options(m, ModelCardConfig)
    m.set_defaults(func=run_model)


def run_dataset(args: argparse.Namespace) -> int:
    from cifake_hub.cards.common import DatasetCardConfig
    from cifake_hub.cards.dataset_card import write_dataset_card

    cfg = config_from_args(DatasetCardConfig, args)
    print(write_dataset_card(cfg.dir, repo_id=cfg.repo_id, model_repo=cfg.model_repo,
                             pretty_name=cfg.pretty_name))  # fmt: skip
    return 0


def run_model(args: argparse.Namespace) -> int:
    from cifake_hub.cards.common import ModelCardConfig
    from cifake_hub.cards.model_card import write_model_card

    cfg = config_from_args(ModelCardConfig, args)
    print(write_model_card(cfg.run_dir, repo_id=cfg.repo_id, dataset_repo=cfg.dataset_repo))
    return 0
