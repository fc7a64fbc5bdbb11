"""The paper's reading of its Grad-CAM maps, measured: are REAL images explained
"holistically" (much of the image) and FAKE ones "atomistically and sparsely"?

For each correctly classified image with a non-empty map, three numbers describe how spread
the map is: the share of pixels above half the map's maximum, the entropy of the map
normalised to sum 1 (divided by its maximum, log of the pixel count: 1 = uniform), and the
share of the map's mass in the central half (16x16 of 32x32). REAL and FAKE are compared by
the difference of their means with a bootstrap 95% interval; the claim holds when REAL maps
are more spread on both the area and the entropy measure (both intervals above 0), does not
hold when they are less spread on both, and is undecided otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifake_hub.schema import CLASS_NAMES

MEASURES = ("area_above_half", "entropy", "centre_mass")


def spread(maps: np.ndarray) -> dict[str, np.ndarray]:
    """The three measures of each map (N, H, W) with a positive maximum."""
    maps = np.asarray(maps, dtype=np.float64)
    n, h, w = maps.shape
    peak = maps.max(axis=(1, 2), keepdims=True)
    area = (maps > 0.5 * peak).mean(axis=(1, 2))
    p = maps.reshape(n, -1) / maps.reshape(n, -1).sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0), axis=1) / np.log(h * w)
    centre = maps[:, h // 4 : h - h // 4, w // 4 : w - w // 4].sum(axis=(1, 2))
    return {
        "area_above_half": area,
        "entropy": entropy,
        "centre_mass": centre / maps.sum(axis=(1, 2)),
    }


def _interval(values: np.ndarray, rng: np.random.Generator, resamples: int) -> list[float]:
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(resamples)]
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


def _difference(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int
) -> list[float]:
    diffs = [
        a[rng.integers(0, len(a), len(a))].mean() - b[rng.integers(0, len(b), len(b))].mean()
        for _ in range(resamples)
    ]
    low, high = np.percentile(diffs, [2.5, 97.5])
    return [float(low), float(high)]


def paper_claim(
    maps: np.ndarray,
    label: np.ndarray,
    probability: np.ndarray,
    category: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The measures per label (means, intervals), REAL minus FAKE, the verdict, per class."""
    rng = np.random.default_rng(seed)
    label, category = np.asarray(label), np.asarray(category)
    correct = (np.asarray(probability) >= 0.5) == (label == 1)
    nonempty = np.asarray(maps).max(axis=(1, 2)) > 0
    keep = correct & nonempty
    measures = spread(np.asarray(maps)[keep]) if keep.any() else {}
    y, cat = label[keep], category[keep]
    result: dict[str, Any] = {
        "images": int(keep.sum()),
        "left_out": {"misclassified": int((~correct).sum()), "empty_map": int((~nonempty).sum())},
        "by_label": {},
        "real_minus_fake": {},
    }
    real, fake = y == 1, y == 0
    if not (real.any() and fake.any()):
        result["verdict"] = "undecided: too few correctly classified images of one label"
        return result
    for name in MEASURES:
        values = measures[name]
        result["by_label"][name] = {
            side: {
                "mean": float(values[mask].mean()),
                "interval": _interval(values[mask], rng, resamples),
            }
            for side, mask in (("REAL", real), ("FAKE", fake))
        }
        result["real_minus_fake"][name] = {
            "mean": float(values[real].mean() - values[fake].mean()),
            "interval": _difference(values[real], values[fake], rng, resamples),
        }
    lows = [result["real_minus_fake"][m]["interval"][0] for m in ("area_above_half", "entropy")]
    highs = [result["real_minus_fake"][m]["interval"][1] for m in ("area_above_half", "entropy")]
    if min(lows) > 0:
        verdict = "holds: REAL maps cover more of the image than FAKE maps"
    elif max(highs) < 0:
        verdict = "does not hold: FAKE maps cover more of the image than REAL maps"
    else:
        verdict = "undecided: the spread of REAL and FAKE maps does not differ clearly"
    result["verdict"] = verdict
    result["per_class"] = {
        CLASS_NAMES[c]: {
            name: {
                "REAL": float(measures[name][real & (cat == c)].mean()),
                "FAKE": float(measures[name][fake & (cat == c)].mean()),
            }
            for name in MEASURES
        }
        for c in range(len(CLASS_NAMES))
        if (real & (cat == c)).any() and (fake & (cat == c)).any()
    }
    return result
