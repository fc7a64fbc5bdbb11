"""Binary classification metrics, REAL (1) being the positive class as in the paper.

scikit-learn computes them; this module fixes the conventions every stage shares: the
decision threshold, Keras' clipping in the cross-entropy, precision/recall/F1 of 0 when
undefined by an empty class of predictions, and None (not NaN) for ROC AUC and average
precision when the labels hold one class only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-7  # Keras' epsilon for clipping probabilities in the cross-entropy


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """loss (binary cross-entropy), accuracy, precision, recall, F1, ROC AUC, average
    precision and the confusion counts."""
    from sklearn import metrics as skm

    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(prob, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(
            f"need equal, non-empty label and probability arrays, got {y.shape} and {p.shape}"
        )
    pred = (p >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    both = bool(tp + fn) and bool(tn + fp)  # both labels present
    return {
        "loss": float(skm.log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1])),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else None,
        "average_precision": float(skm.average_precision_score(y, p)) if tp + fn else None,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }
