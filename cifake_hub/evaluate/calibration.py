"""How far a detector's probabilities can be trusted: ECE, Brier score, NLL, a reliability
curve, temperature scaling, a validation-chosen threshold and bootstrap intervals.

All take P(REAL) (``prob``) and labels (``y``, REAL=1). Probabilities are turned back into
logits in float64 with clipping at 1e-7, Keras' epsilon (|logit| <= 16.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-7
ECE_BINS = 15


def logits(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def nll(y: np.ndarray, prob: np.ndarray) -> float:
    p = np.clip(np.asarray(prob, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, prob: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob, dtype=np.float64) - y) ** 2))


@dataclass
class Reliability:
    """Per confidence bin: mean confidence, accuracy and count (empty bins: count 0)."""

    edges: list[float]
    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]
    ece: float


def reliability(y: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Expected calibration error of the predicted label's confidence, ``bins`` equal-width
    bins over [0.5, 1]: sum over bins of (share of images) x |accuracy - mean confidence|."""
    prob = np.asarray(prob, dtype=np.float64)
    pred = (prob >= 0.5).astype(np.int64)
    conf = np.where(pred == 1, prob, 1 - prob)
    correct = (pred == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    acc_sum = np.bincount(index, weights=correct, minlength=bins)
    filled = count > 0
    mean_conf = np.where(filled, conf_sum / np.maximum(count, 1), np.nan)
    mean_acc = np.where(filled, acc_sum / np.maximum(count, 1), np.nan)
    ece = float(np.sum(count[filled] / len(prob) * np.abs(mean_acc[filled] - mean_conf[filled])))
    return Reliability(
        edges=[float(e) for e in edges],
        confidence=[float(v) if ok else None for v, ok in zip(mean_conf, filled, strict=True)],
        accuracy=[float(v) if ok else None for v, ok in zip(mean_acc, filled, strict=True)],
        count=[int(c) for c in count],
        ece=ece,
    )


def fit_temperature(y: np.ndarray, prob: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of sigmoid(logit / T)."""
    from scipy.optimize import minimize_scalar

    z = logits(prob)
    y = np.asarray(y, dtype=np.float64)

    def loss(log_t: float) -> float:
        return nll(y, sigmoid(z / np.exp(log_t)))

    best = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(best.x))


def scale(prob: np.ndarray, temperature: float) -> np.ndarray:
    return sigmoid(logits(prob) / temperature)


def best_threshold(y: np.ndarray, prob: np.ndarray) -> float:
    """The P(REAL) threshold with the highest balanced accuracy (mean of the two recalls);
    candidates are 0.5 and the midpoints between distinct probabilities, ties going to the
    one nearest 0.5."""
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    values = np.unique(prob)
    candidates = np.r_[0.5, (values[1:] + values[:-1]) / 2]
    sorted_p = np.sort(prob)
    sorted_y = y[np.argsort(prob, kind="mergesort")]
    below = np.searchsorted(sorted_p, candidates, side="left")  # predicted FAKE
    neg_below = np.r_[0, np.cumsum(sorted_y == 0)][below]
    pos_below = np.r_[0, np.cumsum(sorted_y == 1)][below]
    pos, neg = max(int(np.sum(y == 1)), 1), max(int(np.sum(y == 0)), 1)
    score = ((pos - pos_below) / pos + neg_below / neg) / 2
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def bootstrap(
    y: np.ndarray, prob: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float | None]]:
    """Percentile intervals of accuracy and ROC AUC over ``resamples`` resamples (with
    replacement, seeded). AUC with weights: each resample is a multiplicity per image, and
    AUC = P(score of a REAL > score of a FAKE) + half the ties, from one sort of the scores."""
    y = np.asarray(y).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    n = len(y)
    rng = np.random.default_rng(seed)
    order = np.argsort(prob, kind="mergesort")
    p_sorted, y_sorted = prob[order], y[order]
    # Group equal scores: ties count one half.
    starts = np.r_[0, np.flatnonzero(np.diff(p_sorted)) + 1]
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    correct = ((prob >= 0.5).astype(np.int64) == y)[order]
    accs, aucs = [], []
    for _ in range(resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n)[order].astype(np.float64)
        accs.append(float(np.sum(w * correct) / n))
        w_pos = np.bincount(group, weights=w * (y_sorted == 1))
        w_neg = np.bincount(group, weights=w * (y_sorted == 0))
        total_pos, total_neg = w_pos.sum(), w_neg.sum()
        if total_pos == 0 or total_neg == 0:
            continue
        below = np.cumsum(w_neg) - w_neg  # FAKE weight strictly below each score group
        aucs.append(float(np.sum(w_pos * (below + w_neg / 2)) / (total_pos * total_neg)))
    tail = (1 - level) / 2 * 100

    def interval(values: list[float]) -> list[float | None]:
        if not values:
            return [None, None]
        low, high = np.percentile(values, [tail, 100 - tail])
        return [float(low), float(high)]

    return {"accuracy": interval(accs), "roc_auc": interval(aucs)}
