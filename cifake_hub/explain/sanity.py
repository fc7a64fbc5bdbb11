"""Do the maps depend on what the model learned? The cascading randomisation check of
Adebayo et al. (NeurIPS 2018), and an edge-detector baseline that ignores the model.

The model's weighted layers are re-initialised from the top (the logit) down, one more at each
step, with Glorot-uniform kernels and zero biases (Keras' defaults). At every step the maps of
the same images, explaining the same labels as the trained model did, are compared with the
trained model's maps by Spearman rank correlation (per image, then averaged). A method whose
maps stay the same while the weights they should explain are destroyed fails the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The check passes when, with every weighted layer randomised, the mean rank correlation
# with the trained model's maps has fallen below this.
PASS_BELOW = 0.5


def edge_map(images: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the grey image, scaled to a maximum of 1 per image: a
    "saliency map" that depends on the image only."""
    grey = np.asarray(images, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    padded = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")

    def shifted(dy: int, dx: int) -> np.ndarray:
        h, w = grey.shape[1:]
        return padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = (
        shifted(-1, 1) + 2 * shifted(0, 1) + shifted(1, 1)
        - shifted(-1, -1) - 2 * shifted(0, -1) - shifted(1, -1)
    )  # fmt: skip
    gy = (
        shifted(1, -1) + 2 * shifted(1, 0) + shifted(1, 1)
        - shifted(-1, -1) - 2 * shifted(-1, 0) - shifted(-1, 1)
    )  # fmt: skip
    magnitude = np.hypot(gx, gy)
    peak = magnitude.max(axis=(1, 2), keepdims=True)
    return np.divide(magnitude, peak, out=np.zeros_like(magnitude), where=peak > 0).astype(
        np.float32
    )


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (N, H, W) -> (N,); 0 where a map is
    constant (no ranking to correlate)."""
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    return np.divide(
        (ra * rb).sum(axis=1), denominator, out=np.zeros(len(a)), where=denominator > 0
    )


@dataclass
class SanityResult:
    method: str
    steps: list[str] = field(default_factory=list)  # the layer randomised at each step
    spearman: list[float] = field(default_factory=list)  # mean correlation after each step
    passed: bool = False


def randomised_copies(model: Any, seed: int = 0) -> list[tuple[str, Any]]:
    """(layer name, a copy of ``model`` with that layer and every weighted layer above it
    re-initialised), from the top layer down."""
    from cifake_hub.training.backend import import_keras

    keras = import_keras()
    weighted = [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]
    rng = np.random.default_rng(seed)
    copies = []
    current = keras.models.clone_model(model)
    current.set_weights(model.get_weights())
    for layer in reversed(weighted):
        target = current.get_layer(layer.name)
        kernel = target.kernel
        shape = tuple(kernel.shape)
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = np.sqrt(6 / (fan_in + fan_out))
        kernel.assign(rng.uniform(-limit, limit, shape).astype(kernel.dtype))
        bias = getattr(target, "bias", None)
        if bias is not None:
            bias.assign(np.zeros(tuple(bias.shape), dtype=bias.dtype))
        snapshot = keras.models.clone_model(current)
        snapshot.set_weights(current.get_weights())
        copies.append((layer.name, snapshot))
    return copies


def cascading_randomisation(
    model: Any,
    images: np.ndarray,
    maps: Callable[[Any, np.ndarray, np.ndarray], np.ndarray],
    method: str,
    seed: int = 0,
) -> SanityResult:
    """Run the check for ``maps(model, images, labels) -> (N, H, W)`` (labels: the ones the
    trained model predicted, explained again by every randomised copy)."""
    probability = np.asarray(model.predict(images, verbose=0))[:, 0]
    labels = (probability >= 0.5).astype(np.int64)
    reference = maps(model, images, labels)
    result = SanityResult(method)
    for name, copy in randomised_copies(model, seed):
        result.steps.append(name)
        result.spearman.append(float(np.mean(spearman(reference, maps(copy, images, labels)))))
    result.passed = bool(result.spearman) and result.spearman[-1] < PASS_BELOW
    return result
