"""matplotlib for files only: every plot of the toolkit goes through these two helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write (creating folders, atomically) and close a figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # Written beside, then renamed: a killed run leaves the previous plot, never half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def annotated_heatmap(
    ax: Any,
    grid: np.ndarray,
    fmt: Callable[[float], str],
    *,
    reverse: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """``grid`` as a viridis heatmap with each finite cell's value written on it (NaN cells
    stay blank); ``reverse`` for metrics where lower is better. Returns the image."""
    cmap = "viridis_r" if reverse else "viridis"
    im = ax.imshow(grid, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    finite = grid[np.isfinite(grid)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 0)
    mid = (lo + hi) / 2
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            dark = (v < mid) != reverse
            color = "white" if dark else "black"
            ax.text(j, i, fmt(v), ha="center", va="center", fontsize=8, color=color)
    ax.figure.colorbar(im, ax=ax, fraction=0.05)
    return im
