"""Pictures of Grad-CAM results: overlays, raw maps and the paper's Figure 6.

Kept apart from the maths in :mod:`cifake_hub.explain.gradcam`, which returns plain arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.plotting import pyplot, save_figure
from cifake_hub.schema import CLASS_NAMES, LABEL_NAMES, class_name


def colorize(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) map in [0, 1] -> (H, W, 3) uint8 colours."""
    import matplotlib

    rgba = matplotlib.colormaps[cmap](np.clip(heatmap, 0, 1))
    return (rgba[..., :3] * 255).astype(np.uint8)


def overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet"
) -> np.ndarray:
    """Blend the coloured map onto the image: (H, W, 3) uint8."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colorize(heatmap, cmap).astype(
        np.float32
    )
    return np.clip(blend, 0, 255).astype(np.uint8)


def figure6(
    images: np.ndarray,
    labels: np.ndarray,
    categories: np.ndarray,
    heatmaps: np.ndarray,
    probability: np.ndarray,
    path: str | Path,
    *,
    alpha: float = 0.45,
    title: str = "Grad-CAM: real images (top) and AI-generated images (bottom)",
) -> Path:
    """The paper's Figure 6: per label a row of images, overlays and raw maps, one column
    per CIFAR-10 class (the first example of each class; an empty column where none)."""
    plt = pyplot()
    n_cols = len(CLASS_NAMES)
    fig, axes = plt.subplots(6, n_cols, figsize=(1.45 * n_cols, 9.6))
    for block, label in enumerate((1, 0)):  # REAL on top, as in the paper
        for c in range(n_cols):
            hits = np.flatnonzero((labels == label) & (categories == c))
            cells = axes[3 * block : 3 * block + 3, c]
            for ax in cells:
                ax.set_xticks([])
                ax.set_yticks([])
            if hits.size == 0:
                for ax in cells:
                    ax.set_frame_on(False)  # not axis("off"): that would hide the row label
                continue
            i = hits[0]
            p_real = float(probability[i])
            predicted = LABEL_NAMES[int(p_real >= 0.5)]
            cells[0].imshow(images[i], interpolation="nearest")
            cells[0].set_title(
                f"{class_name(c)}\n{LABEL_NAMES[label]}, P(REAL)={p_real:.2f}\npred {predicted}",
                fontsize=7,
                color="black" if predicted == LABEL_NAMES[label] else "red",
            )
            cells[1].imshow(overlay(images[i], heatmaps[i], alpha), interpolation="bilinear")
            cells[2].imshow(heatmaps[i], cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
        for row, name in enumerate(("image", "overlay", "heatmap")):
            axes[3 * block + row, 0].set_ylabel(f"{LABEL_NAMES[label]}\n{name}", fontsize=8)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=110)


def gallery(
    images: np.ndarray,
    heatmaps: np.ndarray,
    captions: list[str],
    out_dir: str | Path,
    alpha: float = 0.45,
) -> list[Path]:
    """One PNG per image (image | overlay | raw map), for browsing many results."""
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, caption in enumerate(captions):
        fig, axes = plt.subplots(1, 3, figsize=(4.5, 1.8))
        axes[0].imshow(images[i], interpolation="nearest")
        axes[1].imshow(overlay(images[i], heatmaps[i], alpha), interpolation="bilinear")
        axes[2].imshow(heatmaps[i], cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
        for ax in axes:
            ax.axis("off")
        fig.suptitle(caption, fontsize=8)
        paths.append(save_figure(fig, out / f"{i:04d}.png", dpi=100))
    return paths


def sanity_plot(results: list[Any], path: Path) -> Path:
    """Rank correlation with the trained model's maps as layers are randomised top down."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in results:
        steps = ["trained", *r.steps]
        ax.plot(
            steps,
            [1.0, *r.spearman],
            "o-",
            label=f"{r.method} ({'passes' if r.passed else 'fails'})",
        )
    ax.set_ylabel("Spearman vs trained maps")
    ax.set_xlabel("randomised down to layer")
    ax.set_ylim(-0.2, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate(rotation=30)
    return save_figure(fig, path)


def road_plot(curves: list[Any], path: Path) -> Path:
    """ROAD: P(explained class) as pixels are removed, most relevant first (MoRF, should fall)
    and least relevant first (LeRF, should stay), one colour per map."""
    from cifake_hub.explain.road import LEVELS

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    x = [100 * level for level in LEVELS]
    for curve in curves:
        style = "--" if curve.name in ("random", "edges") else "-"
        label = f"{curve.name} ({curve.score:+.3f})"
        axes[0].plot(x, curve.morf, style, marker="o", ms=3, label=label)
        axes[1].plot(x, curve.lerf, style, marker="o", ms=3, label=label)
    for ax, title in zip(
        axes, ("MoRF: most relevant removed first", "LeRF: least relevant first"), strict=True
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("% of pixels removed (noisy linear imputation)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(explained class)")
    axes[1].legend(fontsize=7, title="map (score: LeRF - MoRF)", title_fontsize=7)
    return save_figure(fig, path)
