from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cifake_hub.errors import CifakeError
from cifake_hub.explain.gradcam import gradcam, last_conv_layer
from cifake_hub.explain.render import figure6, overlay
from cifake_hub.schema import CLASS_NAMES
from cifake_hub.training.backend import import_keras
from cifake_hub.training.recipes import (
    RECIPES,
    apply_view,
    averaged_views,
    build_recipe_model,
    inference_copy,
    undo_view,
)

SQUARE = 8


def square_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark noise; positives (label 1) hold a bright square at a random position."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(n) % 2).astype(np.int64)
    corners = rng.integers(0, 32 - SQUARE + 1, (n, 2))
    for i in np.flatnonzero(y):
        r, c = corners[i]
        x[i, r : r + SQUARE, c : c + SQUARE] = 230
    return x, y, corners


def _train(model, x, y):
    keras = import_keras()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    return model


def sequential_model():
    keras = import_keras()
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((32, 32, 3), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_1"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_2"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),  # logit recovered from the sigmoid Dense
        ]
    )


def functional_model():
    keras = import_keras()
    keras.utils.set_random_seed(1)
    inp = keras.Input((32, 32, 3), dtype="uint8")
    h = keras.layers.Rescaling(1 / 255)(inp)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.GlobalMaxPooling2D()(h)
    logit = keras.layers.Dense(1, name="logit")(h)
    out = keras.layers.Activation("sigmoid")(logit)
    return keras.Model(inp, out)


VIEWS_RECIPE = dataclasses.replace(
    RECIPES["strong"], widths=(16, 16), convs_per_block=1, dropout=0.0, shift=0
)


def view_averaged_model(x, y, path):
    """A small recipe model trained with flips, saved averaging 10 views of each image: the
    image and its mirror, each as is and shifted by a pixel left, right, up and down."""
    recipe = VIEWS_RECIPE
    assert recipe.flip_average and recipe.shift_average == 1
    keras = import_keras()
    keras.utils.set_random_seed(1)
    inference_copy(_train(build_recipe_model(recipe), x, y), recipe).save(path)
    return keras.saving.load_model(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, y, _ = square_data(1200, seed=0)
    seq = _train(sequential_model(), x, y)
    folder = tmp_path_factory.mktemp("m")
    seq.save(folder / "seq.keras")
    reloaded = import_keras().saving.load_model(folder / "seq.keras")
    func = _train(functional_model(), x, y)
    averaged = view_averaged_model(x, y, folder / "view_averaged.keras")
    return {
        "sequential": seq,
        "reloaded": reloaded,
        "functional": func,
        "view_averaged": averaged,
    }


@pytest.mark.parametrize("kind", ["sequential", "reloaded", "functional"])
def test_peak_falls_inside_the_square(trained, kind):
    model = trained[kind]
    x, y, corners = square_data(400, seed=1)
    result = gradcam(model, x, explain="REAL")
    pos = np.flatnonzero(y == 1)
    assert (result.probability[pos] > 0.5).mean() > 0.95  # the model does detect squares
    hits = 0
    for i in pos:
        r, c = np.unravel_index(np.argmax(result.heatmaps[i]), (32, 32))
        hits += (
            corners[i, 0] <= r < corners[i, 0] + SQUARE
            and corners[i, 1] <= c < corners[i, 1] + SQUARE
        )
    assert hits / len(pos) >= 0.95
    assert result.heatmaps.shape == (400, 32, 32)
    assert result.heatmaps.min() >= 0 and result.heatmaps.max() <= 1


def test_view_averaged_maps_follow_the_mirror_image(trained):
    model = trained["view_averaged"]
    x, _, _ = square_data(10, seed=6)
    mirror = x[:, :, ::-1]
    for method in ("gradcam", "hirescam"):
        maps = gradcam(model, x, explain="REAL", method=method, batch_size=4)
        flipped = gradcam(model, mirror, explain="REAL", method=method)
        assert maps.heatmaps.shape == (10, 32, 32)
        np.testing.assert_allclose(flipped.probability, maps.probability, atol=1e-6)
        # The model answers the same for an image and its mirror; its maps are mirrored.
        np.testing.assert_allclose(flipped.heatmaps, maps.heatmaps[:, :, ::-1], atol=1e-5)


def test_view_averaged_maps_add_each_views_map_in_image_pixels(trained):
    """HiResCAM is linear in the gradients: at a full-resolution layer the averaged model's
    map is the ReLU of the sum of the one-pass model's maps of the views, each moved back."""
    import tensorflow as tf

    keras = import_keras()
    ops = keras.ops
    model = trained["view_averaged"]
    plain = inference_copy(
        model, dataclasses.replace(VIEWS_RECIPE, flip_average=False, shift_average=0)
    )
    x, _, _ = square_data(6, seed=7)
    total, features = np.zeros((6, 32, 32)), None
    for view in averaged_views(1, True):
        seen = ops.convert_to_numpy(apply_view(ops, x, view))
        np.testing.assert_array_equal(
            ops.convert_to_numpy(undo_view(ops, seen, view))[:, 1:-1, 1:-1], x[:, 1:-1, 1:-1]
        )
        with tf.GradientTape() as tape:
            h = tf.convert_to_tensor(seen)
            for layer in plain.layers[: [lay.name for lay in plain.layers].index("logit") + 1]:
                h = layer(h, training=False)
                features = h if layer.name == "conv_1_1" else features
            target = tf.reduce_sum(h)  # the logits' sum; inside the tape, to be recorded
        grads = tape.gradient(target, features)
        total += ops.convert_to_numpy(undo_view(ops, tf.reduce_sum(grads * features, -1), view))
    expected = np.maximum(total, 0) / np.maximum(total, 0).max(axis=(1, 2), keepdims=True)
    maps = gradcam(model, x, layer="conv_1_1", explain="REAL", method="hirescam", batch_size=4)
    np.testing.assert_allclose(maps.heatmaps, expected, atol=1e-4)


def test_batched_equals_per_image(trained):
    model = trained["reloaded"]
    x, _, _ = square_data(12, seed=2)
    batched = gradcam(model, x)
    single = np.concatenate([gradcam(model, x[i : i + 1]).heatmaps for i in range(len(x))])
    np.testing.assert_allclose(batched.heatmaps, single, atol=1e-5)
    small_batches = gradcam(model, x, batch_size=5)
    np.testing.assert_allclose(batched.heatmaps, small_batches.heatmaps, atol=1e-5)


def test_sign_and_layer_choice(trained):
    model = trained["functional"]
    assert last_conv_layer(model) == "last_conv"
    x, _, _ = square_data(6, seed=3)
    real = gradcam(model, x, explain="REAL")
    fake = gradcam(model, x, explain="FAKE")
    assert real.explained.tolist() == [1] * 6 and fake.explained.tolist() == [0] * 6
    labels = gradcam(model, x, explain=np.array([1, 0, 1, 0, 1, 0]))
    np.testing.assert_allclose(labels.heatmaps[0], real.heatmaps[0], atol=1e-6)
    np.testing.assert_allclose(labels.heatmaps[1], fake.heatmaps[1], atol=1e-6)
    with pytest.raises(CifakeError, match="no layer 'nope'"):
        gradcam(model, x, layer="nope")


def test_figure6_and_overlay(trained, tmp_path):
    x, y, _ = square_data(40, seed=4)
    result = gradcam(trained["sequential"], x)
    categories = np.arange(40) % 10
    path = figure6(x, y, categories, result.heatmaps, result.probability, tmp_path / "fig6.png")
    assert path.stat().st_size > 10_000
    blended = overlay(x[0], result.heatmaps[0], alpha=0.0)
    np.testing.assert_array_equal(blended, x[0])


def test_deletion_test_prefers_gradcam_pixels(trained):
    from cifake_hub.explain.gradcam import deletion_test

    x, y, _ = square_data(200, seed=5)
    pos = y == 1
    result = deletion_test(trained["functional"], x[pos], fraction=0.1)
    assert result["images"] == pos.sum() and result["pixels_masked"] == 102
    # Covering the square's pixels removes the evidence; random pixels mostly miss it.
    assert result["mean_drop_gradcam"] > 0.3
    assert result["mean_drop_gradcam"] > 3 * result["mean_drop_random"]


def _tiny_known_model():
    """image -> 1x1 conv (2 filters, known weights, ReLU) -> global average -> logit -> sigmoid.

    For an 8x8 image the activations are A = ReLU(x @ Wc), and dlogit/dA_ijk = wd_k / 64
    for every position: every method has a closed form to check against."""
    keras = import_keras()
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(2, 1, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(1, name="logit"),
            keras.layers.Activation("sigmoid", name="probability"),
        ]
    )
    wc = np.array([[1.0, -0.5], [0.5, 1.0], [-0.25, 0.75]], dtype=np.float32)
    wd = np.array([[0.8], [-1.2]], dtype=np.float32)
    model.get_layer("conv").set_weights([wc[None, None], np.zeros(2, np.float32)])
    model.get_layer("logit").set_weights([wd, np.array([0.1], np.float32)])
    return model, wc, wd[:, 0]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_methods_match_their_formulas(method):
    model, wc, wd = _tiny_known_model()
    x = np.random.default_rng(0).random((1, 8, 8, 3)).astype(np.float32)
    a = np.maximum(x[0] @ wc, 0)  # (8, 8, 2)
    prob = 1 / (1 + np.exp(-(a.mean(axis=(0, 1)) @ wd + 0.1)))
    sign = 1.0 if prob >= 0.5 else -1.0
    g = np.broadcast_to(sign * wd / 64, a.shape)  # the pooling is linear in A
    if method == "gradcam":
        raw = (g.mean(axis=(0, 1)) * a).sum(-1)
    elif method == "hirescam":
        raw = (g * a).sum(-1)
    elif method == "layercam":
        raw = (np.maximum(g, 0) * a).sum(-1)
    else:
        denominator = 2 * g**2 + a.sum(axis=(0, 1)) * g**3
        alpha = np.where(g != 0, g**2 / np.where(denominator == 0, 1, denominator), 0)
        raw = ((alpha * np.maximum(g, 0)).sum(axis=(0, 1)) * a).sum(-1)
    expected = np.maximum(raw, 0)
    expected = expected / expected.max() if expected.max() > 0 else expected
    got = gradcam(model, x, layer="conv", method=method)
    # Same size as the layer: the bilinear resize is the identity here.
    np.testing.assert_allclose(got.heatmaps[0], expected, atol=1e-5)
    assert got.method == method


@pytest.mark.parametrize("method", ["gradcam++", "hirescam", "layercam"])
def test_methods_batched_equal_per_image(trained, method):
    model = trained["reloaded"]
    x, _, _ = square_data(12, seed=2)
    batched = gradcam(model, x, method=method, batch_size=5).heatmaps
    single = np.concatenate(
        [gradcam(model, x[i : i + 1], method=method).heatmaps for i in range(12)]
    )
    np.testing.assert_allclose(batched, single, atol=1e-5)
    with pytest.raises(CifakeError, match="unknown Grad-CAM method 'cam'"):
        gradcam(model, x, method="cam")


# -- sanity checks (cifake_hub.explain.sanity) ---------------------------------------------------
def test_spearman_and_edge_map():
    from cifake_hub.explain.sanity import edge_map, spearman

    a = np.arange(16, dtype=float).reshape(1, 4, 4)
    np.testing.assert_allclose(spearman(a, 2 * a + 1), [1.0])
    np.testing.assert_allclose(spearman(a, -a), [-1.0])
    np.testing.assert_allclose(spearman(a, np.zeros_like(a)), [0.0])
    step = np.zeros((1, 8, 8, 3), np.uint8)
    step[:, :, 4:] = 200  # a vertical edge between columns 3 and 4
    edges = edge_map(step)[0]
    assert edges.max() == 1 and set(np.flatnonzero(edges.max(axis=0) == 1)) == {3, 4}
    assert edges[:, :2].max() == 0


def test_randomisation_check_passes_gradcam_and_fails_the_edge_baseline(trained):
    from cifake_hub.explain.sanity import cascading_randomisation, edge_map

    model = trained["reloaded"]
    x, _, _ = square_data(40, seed=3)
    before = model.predict(x, verbose=0)

    def cam(m, images, labels):
        return gradcam(m, images, explain=labels).heatmaps

    checked = cascading_randomisation(model, x, cam, "gradcam")
    assert checked.steps[0] == model.layers[-1].name and len(checked.steps) == 3
    assert checked.passed and checked.spearman[-1] < 0.5
    baseline = cascading_randomisation(model, x, lambda m, i, lab: edge_map(i), "edges")
    assert not baseline.passed and baseline.spearman == [1.0, 1.0, 1.0]
    # The trained model is left as it was: only copies are randomised.
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)


def test_paper_claim_verdicts_on_constructed_maps():
    from cifake_hub.explain.claim import paper_claim, spread

    broad = np.ones((20, 32, 32)) + np.random.default_rng(0).random((20, 32, 32)) * 0.1
    sparse = np.zeros((20, 32, 32))
    sparse[:, 3, 5] = 1.0
    measures = spread(np.concatenate([broad[:1], sparse[:1]]))
    assert measures["area_above_half"][0] == 1.0 and measures["area_above_half"][1] == 1 / 1024
    assert measures["entropy"][0] > 0.99 and measures["entropy"][1] == 0.0
    assert measures["centre_mass"][1] == 0.0  # the peak is in the border
    label = np.r_[np.ones(20, int), np.zeros(20, int)]
    prob = np.r_[np.full(20, 0.9), np.full(20, 0.1)]  # all correct
    category = np.tile(np.arange(10), 4)
    holds = paper_claim(np.concatenate([broad, sparse]), label, prob, category, resamples=200)
    assert holds["verdict"].startswith("holds") and holds["images"] == 40
    assert set(holds["per_class"]) == set(CLASS_NAMES)
    flipped = paper_claim(np.concatenate([sparse, broad]), label, prob, category, resamples=200)
    assert flipped["verdict"].startswith("does not hold")
    same = paper_claim(np.concatenate([broad, broad]), label, prob, category, resamples=200)
    assert same["verdict"].startswith("undecided")
    wrong = paper_claim(np.concatenate([broad, sparse]), label, 1 - prob, category, resamples=50)
    assert wrong["images"] == 0 and wrong["left_out"]["misclassified"] == 40


TORCH_SCRIPT = """
import os, sys, json
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
from cifake_hub.explain.gradcam import gradcam
from cifake_hub.training.backend import import_keras

keras = import_keras()
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
maps = {m: gradcam(model, x, method=m).heatmaps for m in ("gradcam", "layercam")}
from cifake_hub.explain.road import road
first = gradcam(model, x)
curves = road(lambda b: model.predict(b, verbose=0), x, first.explained,
              {"gradcam": first.heatmaps}, levels=(0.2, 0.6))
np.savez(sys.argv[3], probability=model.predict(x, verbose=0)[:, 0],
         morf=curves[0].morf, lerf=curves[0].lerf, **maps)
# Fine-tuning in PyTorch through Keras: one epoch on these images moves the weights.
before = [w.copy() for w in model.get_weights()]
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
history = model.fit(x, (np.arange(len(x)) % 2).astype("float32"), epochs=1, verbose=0)
moved = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
print(json.dumps({"backend": keras.backend.backend(), "loss": history.history["loss"][-1],
                  "moved": moved}))
"""


def test_torch_backend_loads_explains_and_fine_tunes_like_tensorflow(small_run, tmp_path):
    import json
    import subprocess
    import sys

    from cifake_hub.training.run_folder import RunFolder

    model_path = RunFolder(small_run).model
    x, _, _ = square_data(8, seed=4)
    np.save(tmp_path / "x.npy", x)
    res = subprocess.run(
        [sys.executable, "-c", TORCH_SCRIPT, str(model_path), str(tmp_path / "x.npy"),
         str(tmp_path / "torch.npz")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["backend"] == "torch" and report["moved"] and np.isfinite(report["loss"])
    got = np.load(tmp_path / "torch.npz")
    model = import_keras().saving.load_model(model_path)
    np.testing.assert_allclose(got["probability"], model.predict(x, verbose=0)[:, 0], atol=1e-5)
    for method in ("gradcam", "layercam"):
        np.testing.assert_allclose(
            got[method], gradcam(model, x, method=method).heatmaps, atol=1e-4
        )
    # ROAD, the faithfulness test, agrees across backends too (same maps, same noise).
    from cifake_hub.explain.road import road

    first = gradcam(model, x)
    (curve,) = road(
        lambda b: model.predict(b, verbose=0), x, first.explained, {"gradcam": first.heatmaps},
        levels=(0.2, 0.6),
    )  # fmt: skip
    np.testing.assert_allclose(got["morf"], curve.morf, atol=1e-4)
    np.testing.assert_allclose(got["lerf"], curve.lerf, atol=1e-4)
