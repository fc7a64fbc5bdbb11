"""``cifake predict PATH... [--model NAME|RUN_DIR|MODEL_FILE|REPO_ID]``: label image files
REAL or FAKE with a trained model.

Without --model the shipped ``robust`` detector is used; ``--model strong|robust|paper``
picks a shipped one (their cards: cifake_hub/detectors/NAME/README.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "predict"


def register(sub: Any) -> None:
    from cifake_hub.predict import PredictConfig

    p = add_command(sub, NAME, __doc__, run, PredictConfig)
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from cifake_hub.predict import RESIZE_NOTE, PredictConfig, predict_paths
    from cifake_hub.progress import console
    from cifake_hub.shipped import DEFAULT_DETECTOR

    config = config_from_args(PredictConfig, args)
    if config.model == DEFAULT_DETECTOR and not Path(config.model).exists():
        console.print(f"model: the shipped {DEFAULT_DETECTOR!r} detector (choose with --model)")
    with console.status("predicting"):
        outcome = predict_paths(args.paths, config)
    results = outcome.results
    table = Table(title=f"{len(results)} files")
    for col in ("path", "label", "P(REAL)"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.path,
            r.label or f"[red]{r.error}",
            "" if r.probability_real is None else f"{r.probability_real:.3f}",
        )
    console.print(table)
    if outcome.errors:
        console.print(
            f"[red]{len(outcome.errors)} of {len(results)} file(s) could not be read as images; "
            "each is listed above with the reason"
        )
    if outcome.seen:
        console.print(
            f"[yellow]warning: {len(outcome.seen)} of {len(results)} image(s) are in this "
            "detector's training data (column in_training of --output): its answers on them "
            "say nothing about new images"
        )
    if any(r.resized for r in results):
        console.print(RESIZE_NOTE)
    if outcome.gradcam:
        console.print(f"Grad-CAM overlays: {outcome.gradcam}")
    if outcome.output:
        console.print(f"predictions: {outcome.output}")
    return 0
