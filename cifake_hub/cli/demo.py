"""``cifake demo``: the main job (import, search, Grad-CAM, cards, publish) in one command."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: import, search, Grad-CAM, cards and publish (embedded sample "
        "and a dry run by default)",
    )
    p.add_argument("--out", default="cifake-demo", help="output folder (default: ./cifake-demo)")
    p.add_argument(
        "--src",
        default=None,
        help="Kaggle CIFAKE zip or folder, or a dataset folder (default: the embedded sample)",
    )
    p.add_argument(
        "--search",
        choices=("quick", "full"),
        default="quick",
        help="quick: the paper's final topology only; full: all 36 (default quick)",
    )
    p.add_argument("--epochs", type=int, default=8, help="epochs of the quick preset")
    p.add_argument("--dataset-repo", default=None, metavar="NS/NAME", help="publish the dataset")
    p.add_argument("--model-repo", default=None, metavar="NS/NAME", help="publish the model")
    p.add_argument("--endpoint", default=None, help="Hub URL (default huggingface.co)")
    p.add_argument("--private", action="store_true", help="create new repos private")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.demo import JobConfig, run_job
    from cifake_hub.progress import console

    cfg = JobConfig(
        src=args.src,
        search=args.search,
        epochs=args.epochs,
        dataset_repo=args.dataset_repo,
        model_repo=args.model_repo,
        endpoint=args.endpoint,
        private=args.private,
    )
    result = run_job(args.out, cfg, status=console.print)
    print(
        f"dataset card: {result.dataset_card}\nmodel card:   {result.model_card}\n"
        f"Figure 6:     {result.figure6}\nmodel:        {result.model}\n"
        f"published:    {result.published}"
    )
    return 0
