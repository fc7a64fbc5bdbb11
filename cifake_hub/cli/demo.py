"""``cifake demo --out DIR``: the whole chain, offline, on the embedded sample."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run import, training, Grad-CAM and cards on the embedded sample"
    )
    p.add_argument("--out", default="cifake-demo", help="output folder (default: ./cifake-demo)")
    p.add_argument("--epochs", type=int, default=8)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.demo import run_demo
    from cifake_hub.progress import console

    result = run_demo(args.out, status=console.print, epochs=args.epochs)
    console.print(
        f"dataset card: {result.dataset_card}\nmodel card:   {result.model_card}\n"
        f"Figure 6:     {result.figure6}\nmodel:        {result.model}"
    )
    return 0
