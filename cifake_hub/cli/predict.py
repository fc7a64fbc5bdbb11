"""``cifake predict PATH... --model RUN_DIR|MODEL_FILE|REPO_ID``: REAL/FAKE per image file."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="label image files REAL or FAKE with a trained model")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--model", required=True, help="run folder, .keras file or Hub model repo id")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="P(REAL) at or above which it is REAL"
    )
    p.add_argument("--gradcam", default=None, help="write Grad-CAM overlays to this folder")
    p.add_argument("--output", default=None, help="write the table to FILE.csv or FILE.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from cifake_hub.predict import RESIZE_NOTE, predict_paths
    from cifake_hub.progress import console

    with console.status("predicting"):
        outcome = predict_paths(
            args.paths,
            args.model,
            threshold=args.threshold,
            gradcam_dir=args.gradcam,
            output=args.output,
        )
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
    if any(r.resized for r in results):
        console.print(RESIZE_NOTE)
    if outcome.gradcam:
        console.print(f"Grad-CAM overlays: {outcome.gradcam}")
    if outcome.output:
        console.print(f"predictions: {outcome.output}")
    return 0
