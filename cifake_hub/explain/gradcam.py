"""Grad-CAM for any Keras binary classifier: a batch of images -> heatmaps, as arrays.

Gradients are taken on the pre-sigmoid logit (the sigmoid saturates, which would flatten
the maps of confident predictions). A REAL prediction is explained by +logit, a FAKE one by
-logit. The whole batch goes through one gradient tape: each image's logit depends only on
its own activations, so the gradient of the summed logits gives every image's gradients at
once.

A Sequential model loaded from disk has several inbound nodes per layer, and the usual
``Model(inputs, [layer.output, model.output])`` recipe then returns None gradients; such
models are run layer by layer inside the tape instead. A model that averages several views
of each image (its mirror image, shifted copies: a recipe's ``flip_average`` and
``shift_average``) runs its convolutions on all of them: each view's map is resized to the
image, moved back to the image's own pixels and added up before the ReLU. Rendering lives
elsewhere.

Methods (``method=``), for the target score S (+-logit), a layer's activations A (H, W, K) and
the gradients G = dS/dA:

- ``gradcam`` (Selvaraju et al. 2017): ReLU(sum_k mean_ij(G_ijk) A_ijk)
- ``gradcam++`` (Chattopadhay et al. 2018): ReLU(sum_k w_k A_k), w_k = sum_ij a_ijk ReLU(G_ijk),
  a_ijk = G^2 / (2 G^2 + sum_ab(A_abk) G^3) (0 where G is 0), the closed form for exp(S)
- ``hirescam`` (Draelos & Carin 2020): ReLU(sum_k G_ijk A_ijk), no averaging of gradients
- ``layercam`` (Jiang et al. 2021): ReLU(sum_k ReLU(G_ijk) A_ijk)

Each map is resized to the image (bilinear; after the ReLU, but for view-averaging models)
and scaled to a maximum of 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cifake_hub.errors import CifakeError


@dataclass
class GradCam:
    heatmaps: np.ndarray  # (N, H, W) float32 in [0, 1], one map per image (max 1 unless all zero)
    probability: np.ndarray  # (N,) model output: probability of REAL
    explained: np.ndarray  # (N,) 1 where the map explains REAL, 0 where it explains FAKE
    layer: str
    method: str = "gradcam"


def conv_layers(model: Any) -> list[str]:
    """Names of the model's layers with a 4-D output that are convolutions, in order."""
    return [
        str(layer.name)
        for layer in flat_layers(model)
        if type(layer).__name__.startswith("Conv") and len(layer.output.shape) == 4
    ]


def last_conv_layer(model: Any) -> str:
    """Name of the model's last layer with a 4-D output (a convolution)."""
    names = conv_layers(model)
    if not names:
        raise CifakeError(f"model {model.name!r} has no convolution layer; pass layer= explicitly")
    return names[-1]


def resolve_layers(model: Any, spec: str | None) -> list[str]:
    """``--layer``: a layer name, ``last`` (or None) or ``all`` (every convolution)."""
    if spec is None or spec == "last":
        return [last_conv_layer(model)]
    if spec == "all":
        return conv_layers(model) or [last_conv_layer(model)]
    layers = {str(layer.name): layer for layer in flat_layers(model)}
    if spec in layers and len(layers[spec].output.shape) != 4:
        spatial = [n for n, layer in layers.items() if len(layer.output.shape) == 4]
        raise CifakeError(
            f"layer {spec!r} has no spatial feature map (output shape "
            f"{tuple(layers[spec].output.shape)}); a CAM needs a layer of shape (N, H, W, C), "
            f"such as {spatial[-3:]}"
        )
    return [spec]


def _gradcam(ops: Any, a: Any, g: Any) -> Any:
    return ops.sum(ops.mean(g, axis=(1, 2), keepdims=True) * a, axis=-1)


def _gradcam_pp(ops: Any, a: Any, g: Any) -> Any:
    g2, g3 = g**2, g**3
    denominator = 2 * g2 + ops.sum(a, axis=(1, 2), keepdims=True) * g3
    alpha = ops.where(ops.not_equal(g, 0), ops.divide_no_nan(g2, denominator), ops.zeros_like(g))
    weights = ops.sum(alpha * ops.relu(g), axis=(1, 2), keepdims=True)
    return ops.sum(weights * a, axis=-1)


def _hirescam(ops: Any, a: Any, g: Any) -> Any:
    return ops.sum(g * a, axis=-1)


def _layercam(ops: Any, a: Any, g: Any) -> Any:
    return ops.sum(ops.relu(g) * a, axis=-1)


def _gradients(keras: Any, forward: Any, x: np.ndarray, signs: Any) -> tuple[Any, np.ndarray, Any]:
    """(activations, P(REAL), gradients of the signed logit with respect to the activations),
    with the backend's own automatic differentiation."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features, logit = forward(tf.convert_to_tensor(x))
            prob = tf.sigmoid(logit)[:, 0].numpy()
            target = logit[:, 0] * tf.constant(signs(prob), logit.dtype)
        return features, prob, tape.gradient(target, features)
    if backend == "torch":
        import torch

        with torch.enable_grad():
            features, logit = forward(torch.as_tensor(x))
            prob = torch.sigmoid(logit)[:, 0].detach().cpu().numpy()
            sign = torch.as_tensor(signs(prob), dtype=logit.dtype, device=logit.device)
            if not features.requires_grad:
                return features, prob, None
            (grads,) = torch.autograd.grad((logit[:, 0] * sign).sum(), features)
        return features.detach(), prob, grads
    raise CifakeError(f"Grad-CAM supports the tensorflow and torch Keras backends, not {backend!r}")


# (keras.ops, activations, gradients) -> the map before ReLU, (N, H, W).
METHODS = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_pp,
    "hirescam": _hirescam,
    "layercam": _layercam,
}


def gradcam(
    model: Any,
    images: np.ndarray,
    layer: str | None = None,
    explain: str | np.ndarray = "predicted",
    batch_size: int = 256,
    method: str = "gradcam",
) -> GradCam:
    """Heatmaps for ``images`` (N, H, W, 3), as the model takes them (raw uint8 for ours).

    ``explain``: "predicted" (each image's predicted label), "REAL", "FAKE", or an array of
    0/1 labels per image. ``method``: one of :data:`METHODS` (see the module docstring).
    """
    if method not in METHODS:
        raise CifakeError(f"unknown Grad-CAM method {method!r}; choose one of {list(METHODS)}")
    from cifake_hub.training.backend import import_keras
    from cifake_hub.training.recipes import layer_views, undo_view

    keras = import_keras()
    ops = keras.ops
    images = np.asarray(images)
    if images.ndim != 4:
        raise CifakeError(f"images must be (N, H, W, C), got shape {images.shape}")
    layer = layer or last_conv_layer(model)
    forward = _forward(model, layer)
    views = next(filter(None, (layer_views(lay.name) for lay in flat_layers(model))), None)
    size = images.shape[1:3]
    maps, probs = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        features, prob, grads = _gradients(
            keras, forward, x, lambda p, s=start: _signs(explain, p, s, len(p))
        )
        if grads is None:
            raise CifakeError(f"no gradient reaches layer {layer!r} from the logit")
        raw = METHODS[method](ops, features, grads)
        if views:
            # The layer saw the batch's views one after the other; a shift of one pixel is
            # a fraction of a cell of a pooled layer, so the maps go back in image pixels.
            raw = ops.image.resize(raw[..., None], size, interpolation="bilinear")[..., 0]
            n = len(x)
            cam = ops.relu(
                sum(undo_view(ops, raw[k * n : (k + 1) * n], v) for k, v in enumerate(views))
            )
        else:
            cam = ops.image.resize(ops.relu(raw)[..., None], size, interpolation="bilinear")[..., 0]
        peak = ops.max(cam, axis=(1, 2), keepdims=True)
        cam = ops.divide_no_nan(cam, peak)  # an all-zero map stays zero: no evidence
        maps.append(ops.convert_to_numpy(cam).astype(np.float32))
        probs.append(prob)
    probability = np.concatenate(probs)
    explained = (_signs(explain, probability, 0, len(probability)) > 0).astype(np.int64)
    return GradCam(np.concatenate(maps), probability, explained, layer, method)


def _signs(explain: str | np.ndarray, prob: np.ndarray, start: int, n: int) -> np.ndarray:
    if isinstance(explain, str):
        if explain == "predicted":
            return np.where(prob >= 0.5, 1.0, -1.0)
        if explain in ("REAL", "FAKE"):
            return np.full(n, 1.0 if explain == "REAL" else -1.0)
        raise CifakeError(f"explain must be 'predicted', 'REAL', 'FAKE' or labels, got {explain!r}")
    labels = np.asarray(explain)[start : start + n]
    return np.where(labels == 1, 1.0, -1.0)


def flat_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def _forward(model: Any, layer_name: str) -> Any:
    """A function x -> (features at ``layer_name``, logit), run under the caller's tape.

    Both are tensors computed while the tape records, so the tape can differentiate the
    logit with respect to the features."""
    import keras

    layers = flat_layers(model)
    names = [layer.name for layer in layers]
    if layer_name not in names:
        raise CifakeError(f"model has no layer {layer_name!r}; its layers are {names}")
    head_layer, logit_from_input = find_logit_layer(layers)

    if isinstance(model, keras.Sequential):

        def run_layers(x: Any) -> tuple[Any, Any]:
            features = None
            for layer in layers:
                if layer is head_layer and logit_from_input:
                    return features, _dense_logit(layer, x)
                x = layer(x, training=False)
                if layer.name == layer_name:
                    features = x
                if layer is head_layer:
                    break
            return features, x

        return run_layers

    target = model.get_layer(layer_name).output
    pre = head_layer.input if logit_from_input else head_layer.output
    sub = keras.Model(model.inputs, [target, pre])

    def run_graph(x: Any) -> tuple[Any, Any]:
        features, out = sub(x, training=False)
        return features, _dense_logit(head_layer, out) if logit_from_input else out

    return run_graph


def find_logit_layer(layers: list[Any]) -> tuple[Any, bool]:
    """The layer whose output (or, for a sigmoid Dense, whose pre-activation) is the logit.

    Returns (layer, True) when the logit must be computed from the layer's input."""
    last = layers[-1]
    kind = type(last).__name__
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    if kind == "Activation" and activation == "sigmoid":
        return layers[-2], False
    if kind == "Dense" and activation == "sigmoid":
        return last, True
    if kind == "Dense" and activation == "linear":
        return last, False
    raise CifakeError(
        f"cannot find the logit of a model ending in {kind} ({activation}); expected a sigmoid "
        "Dense or a Dense followed by a sigmoid Activation"
    )


def _dense_logit(layer: Any, x: Any) -> Any:
    import keras

    return keras.ops.matmul(x, layer.kernel) + layer.bias


def deletion_test(
    model: Any, images: np.ndarray, fraction: float = 0.1, seed: int = 0, batch_size: int = 256
) -> dict[str, float]:
    """Is the explanation faithful? Mask the top ``fraction`` of Grad-CAM pixels of each
    image (filled with the image's mean colour) and, as a control, as many random pixels;
    report the mean drop in the probability of the predicted class for both.

    A faithful map makes the Grad-CAM drop clearly larger than the random one.
    """
    if not 0 < fraction < 1:
        raise CifakeError(f"fraction must be in (0, 1), got {fraction}")
    images = np.asarray(images)
    cam = gradcam(model, images, batch_size=batch_size)
    n, h, w = cam.heatmaps.shape
    k = max(1, int(round(fraction * h * w)))
    top = np.argsort(-cam.heatmaps.reshape(n, -1), axis=1, kind="stable")[:, :k]
    rng = np.random.default_rng(seed)
    rand = np.argsort(rng.random((n, h * w)), axis=1)[:, :k]

    def masked(index: np.ndarray) -> np.ndarray:
        out = images.reshape(n, h * w, -1).copy()
        fill = images.reshape(n, h * w, -1).mean(axis=1, keepdims=True).astype(images.dtype)
        np.put_along_axis(out, index[..., None], fill, axis=1)
        return out.reshape(images.shape)

    def p_predicted(x: np.ndarray) -> np.ndarray:
        p_real = model.predict(x, batch_size=batch_size, verbose=0).ravel()
        return np.where(cam.explained == 1, p_real, 1 - p_real)

    base = np.where(cam.explained == 1, cam.probability, 1 - cam.probability)
    return {
        "images": int(n),
        "fraction": float(fraction),
        "pixels_masked": int(k),
        "mean_drop_gradcam": float(np.mean(base - p_predicted(masked(top)))),
        "mean_drop_random": float(np.mean(base - p_predicted(masked(rand)))),
    }
