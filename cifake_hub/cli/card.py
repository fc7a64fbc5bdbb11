"""``cifake card dataset DIR`` and ``cifake card model RUN_DIR``: render the cards to README.md."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "card"
HELP = "render the dataset card or the model card (README.md)"


def register(sub: Any) -> None:
    p = sub.add_parser(NAME, help=HELP)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    d = kinds.add_parser("dataset", help="write DIR/README.md, keeping the YAML load_dataset needs")
    d.add_argument("dir", help="dataset folder")
    d.add_argument(
        "--repo-id", default=None, help="the dataset's Hub repo id, for the loading example"
    )
    d.add_argument("--model-repo", default=None, help="a model repo to link to")
    d.add_argument("--pretty-name", default="CIFAKE")
    d.set_defaults(func=run_dataset)
    m = kinds.add_parser("model", help="write RUN_DIR/README.md from the run's results")
    m.add_argument("run_dir", help="run folder made by `cifake search`")
    m.add_argument("--repo-id", default=None, help="the model's Hub repo id, for the usage example")
    m.add_argument("--dataset-repo", default=None, help="the dataset's Hub repo id, to link to")
    m.set_defaults(func=run_model)


def run_dataset(args: argparse.Namespace) -> int:
    from cifake_hub.cards.dataset_card import write_dataset_card

    path = write_dataset_card(
        args.dir, repo_id=args.repo_id, model_repo=args.model_repo, pretty_name=args.pretty_name
    )
    print(path)
    return 0


def run_model(args: argparse.Namespace) -> int:
    from cifake_hub.cards.model_card import write_model_card

    path = write_model_card(args.run_dir, repo_id=args.repo_id, dataset_repo=args.dataset_repo)
    print(path)
    return 0
