"""``cifake predict PATH... --model RUN_DIR|MODEL_FILE|REPO_ID``: REAL/FAKE per image file."""

from __future__ import annotations

import argparse
from pathlib import Path
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

    from cifake_hub.predict import (
        RESIZE_NOTE,
        find_images,
        predict_files,
        resolve_model,
        write_predictions,
    )
    from cifake_hub.progress import console
    from cifake_hub.training.backend import import_keras

    files, skipped = find_images(args.paths)
    model = import_keras().saving.load_model(resolve_model(args.model))
    with console.status(f"predicting {len(files)} files"):
        results, x, index = predict_files(model, files, args.threshold)
    table = Table(title=f"{len(files)} files")
    for col in ("path", "label", "P(REAL)"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.path,
            r.label or f"[red]{r.error}",
            "" if r.probability_real is None else f"{r.probability_real:.3f}",
        )
    console.print(table)
    if skipped:
        console.print(
            f"{len(skipped)} file(s) in the folders are not images by suffix and were left out, "
            f"e.g. {skipped[0]}"
        )
    bad = [r for r in results if r.error]
    if bad:
        console.print(f"[red]{len(bad)} unreadable file(s) skipped and listed above")
    if any(r.resized for r in results):
        console.print(RESIZE_NOTE)
    if args.gradcam and len(x):
        from cifake_hub.gradcam import gradcam
        from cifake_hub.render import gallery

        cam = gradcam(model, x)
        captions = [
            f"{Path(r.path).name}: {r.label} P(REAL)={r.probability_real:.2f}"
            for r in (results[i] for i in index)
        ]
        gallery(x, cam.heatmaps, captions, args.gradcam)
        console.print(f"Grad-CAM overlays: {args.gradcam}")
    if args.output:
        write_predictions(results, Path(args.output))
        console.print(f"predictions: {args.output}")
    return 0
