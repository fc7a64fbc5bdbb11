"""Binary classification metrics, REAL (1) being the positive class as in the paper.

Pure NumPy, so they can be checked against hand-worked cases and reused by every stage.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # Keras' epsilon for clipping probabilities in the cross-entropy


def binary_metrics(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """loss (binary cross-entropy), accuracy, precision, recall, F1, ROC AUC, average
    precision and the confusion counts."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(prob, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(
            f"need equal, non-empty label and probability arrays, got {y.shape} and {p.shape}"
        )
    pred = (p >= threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clipped = np.clip(p, EPS, 1 - EPS)
    loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    return {
        "loss": loss,
        "accuracy": (tp + tn) / y.size,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, p),
        "average_precision": average_precision(y, p),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative, ties counting one half (Mann-Whitney U with mid-ranks)."""
    y = np.asarray(y).ravel()
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _midranks(np.asarray(score, dtype=np.float64).ravel())
    return float((np.sum(ranks[y == 1]) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Sum over thresholds of (recall step) x precision, thresholds at distinct scores."""
    y = np.asarray(y).ravel()
    n_pos = int(np.sum(y == 1))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=np.float64).ravel(), kind="mergesort")
    s, t = np.asarray(score).ravel()[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct score
    tps = np.cumsum(t)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends + 1) / 2)[inverse]
