"""The search's human-readable outputs: the paper's Tables 2-11, heatmaps, curves, confusion matrix.

Tables keep the paper's layout: rows are filters (stage 1) or neurons (stage 2), columns
are layers 1-3; accuracy in percent with two decimals, the rest with three.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifake_hub.plotting import annotated_heatmap, pyplot, save_figure
from cifake_hub.training.metrics import binary_metrics
from cifake_hub.training.run_folder import RunFolder, TopologyResult
from cifake_hub.training.topology import CONV_FILTERS, CONV_LAYERS, DENSE_LAYERS, DENSE_UNITS


@dataclass(frozen=True)
class TableSpec:
    number: int
    stage: int
    metric: str
    title: str

    @property
    def slug(self) -> str:
        return f"table_{self.number:02d}_{'conv' if self.stage == 1 else 'dense'}_{self.metric}"

    @property
    def rows(self) -> tuple[int, ...]:
        return CONV_FILTERS if self.stage == 1 else DENSE_UNITS

    @property
    def row_name(self) -> str:
        return "Filters" if self.stage == 1 else "Neurons"

    @property
    def columns(self) -> tuple[int, ...]:
        return CONV_LAYERS if self.stage == 1 else DENSE_LAYERS

    def fmt(self, value: float) -> str:
        return f"{100 * value:.2f}" if self.metric == "accuracy" else f"{value:.3f}"


_NAMES = {
    "accuracy": "classification accuracy",
    "loss": "loss",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1-score",
}
TABLES = tuple(
    TableSpec(
        2 + 5 * (stage - 1) + i,
        stage,
        metric,
        f"Observed {{split}} {_NAMES[metric]} for the "
        f"{'feature extraction networks' if stage == 1 else 'dense layers'}",
    )
    for stage in (1, 2)
    for i, metric in enumerate(("accuracy", "loss", "precision", "recall", "f1"))
)


def table_values(spec: TableSpec, results: list[TopologyResult]) -> list[list[float | None]]:
    """The grid of ``spec``: None where a topology has not run, another extractor ran, or
    the metric is undefined."""
    cells: dict[tuple[int, int], float | None] = {}
    for r in results:
        if r.stage != spec.stage:
            continue
        key = (
            (r.conv_filters, r.conv_layers) if spec.stage == 1 else (r.dense_units, r.dense_layers)
        )
        value = r.selected[spec.metric]
        cells[key] = None if value is None else float(value)
    return [[cells.get((row, col)) for col in spec.columns] for row in spec.rows]


def table_markdown(
    spec: TableSpec, values: list[list[float | None]], split: str, extractor: str = ""
) -> str:
    title = spec.title.format(split=split) + (f" (extractor {extractor})" if extractor else "")
    lines = [
        f"**Table {spec.number}:** {title}.",
        "",
        f"| {spec.row_name} \\ Layers | " + " | ".join(str(c) for c in spec.columns) + " |",
        "|---:|" + "---:|" * len(spec.columns),
    ]
    for row, vals in zip(spec.rows, values, strict=True):
        lines.append(
            f"| {row} | " + " | ".join("-" if v is None else spec.fmt(v) for v in vals) + " |"
        )
    return "\n".join(lines) + "\n"


def write_tables(run: RunFolder, results: list[TopologyResult]) -> Path:
    out = run.tables_dir
    out.mkdir(parents=True, exist_ok=True)
    split = results[0].selected_on if results else "validation"
    stage2 = [r for r in results if r.stage == 2]
    extractor = f"conv={stage2[0].conv_filters}x{stage2[0].conv_layers}" if stage2 else ""
    parts = []
    for spec in TABLES:
        values = table_values(spec, results)
        if all(v is None for row in values for v in row):
            continue  # a stage that did not run (e.g. a single --topology run)
        with open(out / f"{spec.slug}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([spec.row_name, *[f"{c} layers" for c in spec.columns]])
            for row, vals in zip(spec.rows, values, strict=True):
                w.writerow([row, *["" if v is None else spec.fmt(v) for v in vals]])
        md = table_markdown(spec, values, split, extractor if spec.stage == 2 else "")
        (out / f"{spec.slug}.md").write_text(md)
        parts.append(md)
    path = out / RunFolder.TABLES_MD
    path.write_text("\n".join(parts))
    return path


def heatmap_path(run: RunFolder, spec: TableSpec) -> Path:
    return run.plots_dir / f"{spec.slug}.png"


def plot_heatmaps(run: RunFolder, results: list[TopologyResult]) -> list[Path]:
    plt = pyplot()
    run.plots_dir.mkdir(parents=True, exist_ok=True)
    split = results[0].selected_on if results else "validation"
    paths = []
    for spec in TABLES:
        values = table_values(spec, results)
        if all(v is None for row in values for v in row):
            continue
        grid = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
        fig, ax = plt.subplots(figsize=(4.2, 1.2 + 0.42 * len(spec.rows)))
        annotated_heatmap(ax, grid, spec.fmt, reverse=spec.metric == "loss")
        ax.set_xticks(range(len(spec.columns)), [str(c) for c in spec.columns])
        ax.set_yticks(range(len(spec.rows)), [str(r) for r in spec.rows])
        ax.set_xlabel("Layers")
        ax.set_ylabel(spec.row_name)
        ax.set_title(f"Table {spec.number}: {split} {_NAMES[spec.metric]}", fontsize=9)
        paths.append(save_figure(fig, heatmap_path(run, spec)))
    return paths


def plot_curves(run: RunFolder, hist: dict[str, list[float]], name: str) -> Path:
    plt = pyplot()
    epochs = np.arange(1, len(hist["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, hist[metric], "o-", label="train")
        if f"val_{metric}" in hist:
            ax.plot(epochs, hist[f"val_{metric}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Training curves: {name}")
    return save_figure(fig, run.plots_dir / "training_curves.png")


def plot_confusion(run: RunFolder, metrics: dict[str, float], split: str, topology: str) -> Path:
    plt = pyplot()
    # Rows: true FAKE, REAL; columns: predicted FAKE, REAL.
    grid = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]], dtype=int)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(
            j,
            i,
            f"{v:,}\n{v / grid[i].sum():.1%}",
            ha="center",
            va="center",
            color="white" if v > grid.max() / 2 else "black",
        )
    ax.set_xticks([0, 1], ["FAKE", "REAL"])
    ax.set_yticks([0, 1], ["FAKE", "REAL"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{topology} on {split}", fontsize=9)
    return save_figure(fig, run.plots_dir / "confusion_matrix.png")


def write_all(
    run: RunFolder,
    results: list[TopologyResult],
    best: TopologyResult,
    y_true: np.ndarray,
    prob: np.ndarray,
    split: str,
) -> None:
    write_tables(run, results)
    plot_heatmaps(run, results)
    plot_curves(run, best.history, best.topology)
    plot_confusion(run, binary_metrics(y_true, prob), split, best.topology)
