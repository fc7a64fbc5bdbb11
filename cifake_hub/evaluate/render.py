"""Pictures of an evaluation report: robustness against severity, the reliability diagram and
per-class accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.evaluate.conditions import CONDITION_KINDS
from cifake_hub.evaluate.report import EvaluationReport
from cifake_hub.plotting import pyplot, save_figure

ROBUSTNESS = "robustness.png"
RELIABILITY = "reliability.png"
PER_CLASS = "per_class.png"


def robustness(report: EvaluationReport, path: Path) -> Path:
    """One panel per kind of condition: accuracy and ROC AUC against its number, with clean
    at the number that leaves an image unchanged."""
    plt = pyplot()
    conditions = report.conditions
    clean = report.clean.metrics
    kinds = sorted({c.kind for c in conditions.values()} - {"clean", "custom"})
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(3.2 * max(len(kinds), 1), 3))
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds, strict=False):
        points = sorted(
            ((float(c.severity or 0.0), c.metrics) for c in conditions.values() if c.kind == kind),
            key=lambda point: point[0],
        )
        registered = CONDITION_KINDS.get(kind)
        unchanged = registered.unchanged_at if registered else 0.0
        xs = [unchanged] + [s for s, _ in points]
        for metric, style in (("accuracy", "o-"), ("roc_auc", "s--")):
            ys = [clean[metric]] + [m[metric] for _, m in points]
            ax.plot(xs, [np.nan if v is None else v for v in ys], style, label=metric)
        if unchanged > max(xs[1:], default=unchanged):
            ax.invert_xaxis()  # worse as the number falls (JPEG quality, side)
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel(registered.axis if registered else "severity")
        ax.set_ylim(0.4, 1.01)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Robustness on {report.split} ({report.rows:,} images)", fontsize=10)
    return save_figure(fig, path)


def reliability_diagram(calibration: dict[str, Any], path: Path) -> Path:
    """Accuracy against confidence per bin, before (and after) temperature scaling."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0.5, 1], [0.5, 1], color="grey", linewidth=1, label="perfectly calibrated")
    for key, style in (("before", "o-"), ("after", "s--")):
        if key not in calibration:
            continue
        rel = calibration[key]["reliability"]
        pairs = [
            (c, a) for c, a in zip(rel["confidence"], rel["accuracy"], strict=True) if c is not None
        ]
        label = f"{key} (ECE {calibration[key]['ece']:.3f})"
        if key == "after":
            label += f", T={calibration['temperature']:.2f}"
        ax.plot(*zip(*pairs, strict=True), style, label=label)
    ax.set_xlabel("confidence of the predicted label")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def per_class(per_class: dict[str, Any], path: Path) -> Path:
    """Recall of each label per CIFAR-10 class."""
    plt = pyplot()
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(7, 3))
    at = np.arange(len(names))
    for offset, key in ((-0.2, "recall_real"), (0.2, "recall_fake")):
        values = [np.nan if per_class[n][key] is None else per_class[n][key] for n in names]
        ax.bar(
            at + offset,
            values,
            width=0.4,
            label=key.replace("_", " ").replace("recall", "recall of"),
        )
    ax.set_xticks(at, names, rotation=30, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
