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

    from cifake_hub.cards.common import fmt_pct
    from cifake_hub.evaluate.run import EvaluateConfig, evaluate_model
    from cifake_hub.progress import console

    config = config_from_args(EvaluateConfig, args)
    with console.status("evaluating") as status:
        result = evaluate_model(args.model, config, args.out, progress=status.update)
    report = result.report
    table = Table(title=f"{report['split']}: {report['rows']:,} images")
    for col in ("condition", "accuracy", "95% interval", "AUC", "drop (acc)", "REAL recall"):
        table.add_column(col)
    for name, c in report["conditions"].items():
        m, interval = c["metrics"], c.get("interval_95", {}).get("accuracy", [None, None])
        table.add_row(
            name,
            fmt_pct(m["accuracy"]),
            "" if interval[0] is None else f"{fmt_pct(interval[0])}-{fmt_pct(interval[1])}",
            "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}",
            fmt_pct(c["drop"]["accuracy"]),
            fmt_pct(m["recall_real"]),
        )
    console.print(table)
    cal = report["calibration"]
    line = f"ECE {cal['before']['ece']:.4f}, Brier {cal['before']['brier']:.4f}"
    if "after" in cal:
        line += (
            f"; temperature {cal['temperature']:.3f}: ECE {cal['after']['ece']:.4f}; "
            f"threshold {cal['threshold']:.3f} (validation): accuracy "
            f"{fmt_pct(cal['accuracy_at_threshold'])}"
        )
    console.print(line)
    leak = report["leakage"]
    console.print(
        f"{report['split']} rows whose pixels are also in the rows trained on: "
        f"{leak['rows_also_in_train']:,}"
    )
    if leak["rows_also_in_train"]:
        clean = report["conditions"]["clean"].get("metrics_without_leaked")
        without = f"; clean accuracy without them {fmt_pct(clean['accuracy'])}" if clean else ""
        console.print(
            f"[yellow]warning: {leak['rows_also_in_train']:,} of {report['rows']:,} rows were "
            f"in this detector's training data: its scores on them say nothing about new "
            f"images{without}"
        )
    console.print(f"evaluation: {result.out}")
    return 0
