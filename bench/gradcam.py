"""Grad-CAM speed: our batched maps vs a per-image loop (the keras-io example's approach).

    python bench/gradcam.py [--model RUN_DIR/model.keras] [--n 1024] [--batch 256]

Both compute the same maps (checked) for the same images on the same model: ours in one
gradient tape per batch; the baseline builds the keras-io sub-model
``Model(inputs, [last_conv.output, logit])`` and loops over images one at a time. Prints
maps/s of each and the ratio (target >= 10x at batch 256), and the largest difference.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def keras_io_loop(model, images: np.ndarray, layer: str) -> np.ndarray:
    """The keras-io recipe, one image at a time (gradients of the logit, as ours)."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(
        model.inputs, [model.get_layer(layer).output, model.get_layer("logit").output]
    )
    maps = []
    for img in images:
        with tf.GradientTape() as tape:
            conv_out, logit = grad_model(img[None])
            score = logit[:, 0] if tf.sigmoid(logit)[0, 0] >= 0.5 else -logit[:, 0]
        grads = tape.gradient(score, conv_out)
        pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
        heatmap = tf.nn.relu(conv_out[0] @ pooled[..., None])
        heatmap = tf.image.resize(heatmap[None], images.shape[1:3], method="bilinear")[0, ..., 0]
        maps.append(tf.math.divide_no_nan(heatmap, tf.reduce_max(heatmap)).numpy())
    return np.stack(maps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default=None, help="a .keras model (default: a fresh paper-topology model)"
    )
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument(
        "--baseline-n", type=int, default=256, help="images for the (slow) per-image loop"
    )
    args = ap.parse_args()

    from cifake_hub.explain.gradcam import gradcam, last_conv_layer
    from cifake_hub.training.backend import import_keras
    from cifake_hub.training.topology import PAPER_FINAL, Topology, build_model

    keras = import_keras()
    fresh = build_model(Topology.parse(PAPER_FINAL))  # keras-io's recipe needs a model not reloaded
    if args.model:
        fresh.set_weights(keras.saving.load_model(args.model).get_weights())
    images = np.random.default_rng(0).integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    layer = last_conv_layer(fresh)

    gradcam(fresh, images[: args.batch], batch_size=args.batch)  # warm-up (tracing, allocation)
    keras_io_loop(fresh, images[:4], layer)
    t = time.perf_counter()
    ours = gradcam(fresh, images, batch_size=args.batch)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    loop = keras_io_loop(fresh, images[: args.baseline_n], layer)
    loop_s = time.perf_counter() - t
    diff = float(np.abs(ours.heatmaps[: args.baseline_n] - loop).max())
    ours_rate, loop_rate = args.n / ours_s, args.baseline_n / loop_s
    print(f"model: {args.model or 'fresh ' + PAPER_FINAL}, layer {layer}")
    print(f"batched gradcam (batch {args.batch}): {ours_rate:,.0f} maps/s ({args.n} maps)")
    print(f"keras-io per-image loop        : {loop_rate:,.0f} maps/s ({args.baseline_n} maps)")
    print(f"ratio: {ours_rate / loop_rate:.1f}x (target >= 10x); max |difference| {diff:.2e}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
