"""``cifake evaluate MODEL``: robustness, calibration, leakage and breakdowns of a detector.

MODEL is a shipped detector name, a run folder, a .keras file or a Hub model repo id. Every
condition (JPEG re-encoding, blur, down-and-up resizing, noise, or your own) is scored against
clean images,
with 95% bootstrap intervals; calibration is measured before and after temperature scaling
fitted on the run's validation slice; test rows whose pixels also occur in train are
counted and left out in a second set of scores. Writes RUN_DIR/evaluation/ (or --out).
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "evaluate"


def register(sub: Any) -> None:
    from cifake_hub.evaluate.run import EvaluateConfig

    p = add_command(sub, NAME, __doc__, run, EvaluateConfig)
    p.add_argument(
        "model", help="shipped detector (robust, strong, paper), run folder, .keras file or Hub id"
    )
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/evaluation)")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from cifake_hub.evaluate.report import EvaluationReport
    from cifake_hub.evaluate.run import EvaluateConfig, evaluate_model
    from cifake_hub.formatting import fmt_pct
    from cifake_hub.progress import console

    config = config_from_args(EvaluateConfig, args)
    with console.status("evaluating") as status:
        result = evaluate_model(args.model, config, args.out, say=status.update)
    report = EvaluationReport.from_dict(result.report)
    table = Table(title=f"{report.split}: {report.rows:,} images")
    columns = {"condition": "name", "accuracy": "accuracy", "95% interval": "interval",
               "AUC": "auc", "drop (acc)": "drop", "REAL recall": "recall_real"}  # fmt: skip
    for title in columns:
        table.add_column(title)
    for row in report.table():
        table.add_row(*(getattr(row, attr) for attr in columns.values()))
    console.print(table)
    console.print(report.calibration_line())
    leaked = report.leaked_rows
    console.print(f"{report.split} rows whose pixels are also in the rows trained on: {leaked:,}")
    if leaked:
        clean = report.clean_without_leaked()
        without = f"; clean accuracy without them {fmt_pct(clean)}" if clean is not None else ""
        console.print(
            f"[yellow]warning: {leaked:,} of {report.rows:,} rows were in this detector's "
            f"training data: its scores on them say nothing about new images{without}"
        )
    console.print(f"evaluation: {result.out}")
    return 0
