"""ROAD (Rong et al., ICML 2022): is a saliency map faithful, without the confound of the
naive deletion test?

Masking pixels with a constant leaves a pattern the model reacts to by itself (the shape of
the mask tells where the important pixels were). ROAD removes pixels by *noisy linear
imputation* instead: every removed pixel takes the weighted mean of its 8 neighbours (direct
neighbours weigh 1/6, diagonal ones 1/12, renormalised at the border), solved jointly for all
removed pixels of an image (a sparse linear system: removed neighbours are unknowns too),
plus Gaussian noise (std 2.55 on the 0-255 scale, ROAD's 0.01 on [0, 1]), then rounded to
uint8 as the model takes.

For each map and each level k (10%..90%), MoRF removes the k% most relevant pixels and LeRF
the k% least relevant; the model's probability of the class it explained is recorded. A
faithful map makes MoRF fall fast and LeRF stay high; the combined score is the mean over
levels of LeRF minus MoRF (higher is better). A random map and a Sobel edge map are the
baselines a method must beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NOISE_STD = 2.55  # ROAD's 0.01 on the [0, 1] scale
# (row offset, column offset, weight), in the order the columns of a row-major grid come,
# so that each row of the system is built already sorted.
NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)


def linear_imputation(images: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The removed pixels of ``images`` (N, H, W, C) replaced by the solution of: each equals
    the weighted mean of its in-image neighbours (``NEIGHBOURS``), known or removed. Float64.

    Every image must keep at least one pixel. The system is symmetric and built in
    row-major order, where it is banded: SuperLU with its natural ordering solves it faster
    than with a fill-reducing one (measured).
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    n, h, w, c = images.shape
    if removed.reshape(n, -1).all(axis=1).any():
        raise ValueError("an image with every pixel removed has nothing to impute from")
    flat = removed.reshape(-1)
    unknown = np.flatnonzero(flat)
    out = images.reshape(-1, c).astype(np.float64)
    if unknown.size == 0:
        return out.reshape(images.shape)
    index = np.full(flat.size, -1, dtype=np.int64)
    index[unknown] = np.arange(unknown.size)
    pixel = unknown % (h * w)
    r, col = pixel // w, pixel % w
    base = unknown - pixel
    m = unknown.size
    cols = np.full((m, 9), -1, dtype=np.int64)  # 8 neighbours and the diagonal, sorted
    vals = np.zeros((m, 9))
    diagonal = np.zeros(m)
    rhs = np.zeros((m, c))
    slots = [0, 1, 2, 3, 5, 6, 7, 8]  # slot 4 is the diagonal
    for slot, (dr, dc, weight) in zip(slots, NEIGHBOURS, strict=True):
        rr, cc = r + dr, col + dc
        inside = np.flatnonzero((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w))
        neighbour = base[inside] + rr[inside] * w + cc[inside]
        diagonal[inside] += weight
        is_unknown = flat[neighbour]
        taken = inside[is_unknown]
        cols[taken, slot] = index[neighbour[is_unknown]]
        vals[taken, slot] = -weight
        known = inside[~is_unknown]
        rhs[known] += weight * out[neighbour[~is_unknown]]
    cols[:, 4] = np.arange(m)
    vals[:, 4] = diagonal
    keep = cols >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    # Symmetric: these rows are also its columns, so CSC needs no transposition.
    matrix = csc_matrix((vals[keep], cols[keep], indptr), shape=(m, m))
    out[unknown] = splu(matrix, permc_spec="NATURAL").solve(rhs)
    return out.reshape(images.shape)


def noisy_imputation(
    images: np.ndarray, removed: np.ndarray, rng: np.random.Generator, chunk: int = 250
) -> np.ndarray:
    """ROAD's noisy linear imputation of uint8 images, as uint8 (in chunks of images)."""
    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        part = slice(start, start + chunk)
        filled = linear_imputation(images[part], removed[part])
        mask = removed[part][..., None]
        noise = rng.standard_normal(filled.shape) * NOISE_STD
        filled = np.where(mask, filled + noise, filled)
        out[part] = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    return out


def removal_masks(maps: np.ndarray, level: float, most_relevant: bool) -> np.ndarray:
    """The ``level`` share of each map's pixels, most (MoRF) or least (LeRF) relevant first;
    ties broken by position, so a constant map removes a fixed set."""
    n = len(maps)
    flat = maps.reshape(n, -1)
    k = int(round(level * flat.shape[1]))
    order = np.argsort(-flat if most_relevant else flat, axis=1, kind="stable")
    removed = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(removed, order[:, :k], True, axis=1)
    return removed.reshape(maps.shape)


@dataclass
class RoadCurve:
    name: str  # a method, "random" or "edges"
    morf: list[float] = field(default_factory=list)  # mean P(explained class) per level
    lerf: list[float] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Mean over levels of LeRF minus MoRF: higher is more faithful."""
        return float(np.mean(np.asarray(self.lerf) - np.asarray(self.morf)))


def road(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    explained: np.ndarray,
    maps: dict[str, np.ndarray],
    levels: tuple[float, ...] = LEVELS,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> list[RoadCurve]:
    """ROAD curves of each map in ``maps`` (name -> (N, H, W)) for ``images`` (N, H, W, 3)
    uint8, where ``predict`` gives P(REAL) and ``explained`` the label (0 FAKE, 1 REAL)
    each map explains. The imputation noise is seeded by (seed, level, order), so every map
    meets the same noise."""
    sign = np.where(np.asarray(explained) == 1, 1.0, -1.0)
    offset = np.where(np.asarray(explained) == 1, 0.0, 1.0)
    curves = []
    for name, heatmaps in maps.items():
        curve = RoadCurve(name)
        for i, level in enumerate(levels):
            for j, (most, target) in enumerate(((True, curve.morf), (False, curve.lerf))):
                if say is not None:
                    say(f"ROAD {name}: {'MoRF' if most else 'LeRF'} {level:.0%}")
                rng = np.random.default_rng([seed, i, j])
                degraded = noisy_imputation(images, removal_masks(heatmaps, level, most), rng)
                p_real = np.asarray(predict(degraded), dtype=np.float64).ravel()
                target.append(float(np.mean(offset + sign * p_real)))
        curves.append(curve)
    return curves


def road_summary(curves: list[RoadCurve], levels: tuple[float, ...] = LEVELS) -> dict[str, Any]:
    """The JSON record: levels, curves and scores, and the best method (baselines excluded)."""
    methods = [c for c in curves if c.name not in ("random", "edges")]
    best = max(methods, key=lambda c: c.score) if methods else None
    return {
        "levels": list(levels),
        "noise_std": NOISE_STD,
        "curves": {c.name: {"morf": c.morf, "lerf": c.lerf, "score": c.score} for c in curves},
        "best": best.name if best else None,
    }
