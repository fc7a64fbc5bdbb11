"""`cifake train`: recipes build, train, save/reload, resume, and plug into the run folder."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cifake_hub.cli.main import main
from cifake_hub.errors import ConfigError
from cifake_hub.training.backend import import_keras
from cifake_hub.training.data import Arrays
from cifake_hub.training.recipes import (
    RECIPES,
    build_recipe_model,
    get_recipe,
    inference_copy,
)
from cifake_hub.training.run_folder import RunFolder
from cifake_hub.training.search import Progress
from cifake_hub.training.train import TrainConfig, run_training, training_batches


class StopAfter(Progress):
    """Stops training after ``n`` epochs, as Ctrl-C would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def epoch_ended(self, epoch, logs):
        if epoch >= self.n:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def recipe_run(small_cifake, tmp_path_factory):
    run = tmp_path_factory.mktemp("recipe") / "run"
    run_training(small_cifake, run, TrainConfig(recipe="robust", epochs=2))
    return run


def test_recipes_are_data_listed_and_validated(capsys):
    assert {"strong", "robust"} <= set(RECIPES)
    assert RECIPES["robust"].degrade > 0 == RECIPES["strong"].degrade
    with pytest.raises(ConfigError, match="unknown recipe 'fast'"):
        get_recipe("fast")
    with pytest.raises(ConfigError, match="invalid shift 16"):
        dataclasses.replace(RECIPES["strong"], shift=16)
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    # Columns: general, robust, strong.
    assert "| degrade | 0.5 | 0.5 | 0.0 |" in out and "| epochs | 16 | 40 | 40 |" in out
    assert "| flip average | True | True | True |" in out
    assert "| shift average | 0 | 0 | 1 |" in out and "| inputs | rgb+npr | rgb | rgb |" in out
    with pytest.raises(ConfigError, match="invalid shift average -1"):
        dataclasses.replace(RECIPES["strong"], shift_average=-1)


def test_model_takes_uint8_and_augments_only_in_training():
    keras = import_keras()
    model = build_recipe_model(RECIPES["strong"])
    assert model.inputs[0].dtype == "uint8" and model.outputs[0].shape[-1] == 1
    assert model.get_layer("logit") is not None
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    first = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(model(x, training=False)))
    # In training the flip and shift layers change the input the convolutions see.
    augment = keras.Sequential([model.get_layer("flip"), model.get_layer("shift")])
    seen = [keras.ops.convert_to_numpy(augment(x / 255, training=True)) for _ in range(3)]
    assert any(not np.allclose(s, x / 255) for s in seen)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(augment(x / 255, training=False)), x / 255
    )


def moved(images, dx, dy):
    """``images`` with their content dx pixels right and dy down, the rest black."""
    out = np.zeros_like(images)
    rows, cols = images.shape[1:3]
    out[:, max(dy, 0) : rows + min(dy, 0), max(dx, 0) : cols + min(dx, 0)] = images[
        :, max(-dy, 0) : rows + min(-dy, 0), max(-dx, 0) : cols + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize(("shift", "flip"), [(0, True), (1, True), (3, False)])
def test_view_averaged_model_answers_with_the_mean_of_its_views(tmp_path, shift, flip):
    from cifake_hub.evaluate.run import calibrated_model

    keras = import_keras()
    assert RECIPES["strong"].flip_average and RECIPES["strong"].shift_average == 1
    recipe = dataclasses.replace(
        RECIPES["strong"], widths=(8, 16), shift_average=shift, flip_average=flip
    )
    trained = build_recipe_model(recipe)
    x = np.random.default_rng(4).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    trained(x, training=True)  # moves the BatchNorm statistics off their start
    averaged = inference_copy(trained, recipe)
    plain = inference_copy(
        trained, dataclasses.replace(recipe, flip_average=False, shift_average=0)
    )
    name = (f"shift{shift}_" if shift else "") + ("flip_" if flip else "") + "average"
    assert type(plain).__name__ == "Sequential" and averaged.get_layer(name)

    def logit(model, images):
        p = model.predict(images, verbose=0)[:, 0].astype(np.float64)
        return np.log(p / (1 - p))

    mirror = x[:, :, ::-1]
    assert not np.allclose(logit(plain, x), logit(plain, mirror), atol=1e-4)
    offsets = [(0, 0)] + ([(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else [])
    images = (x, mirror) if flip else (x,)
    views = [moved(image, dx, dy) for image in images for dx, dy in offsets]
    expected = np.mean([logit(plain, view) for view in views], axis=0)
    np.testing.assert_allclose(logit(averaged, x), expected, atol=1e-4)
    if flip:  # the mirror image's views are the image's views
        np.testing.assert_allclose(logit(averaged, mirror), expected, atol=1e-4)
    # Built-in layers and keras.ops only: a plain load_model reads it back, same answers.
    averaged.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), averaged.predict(x, verbose=0))
    calibrated = calibrated_model(reloaded, 2.0)
    np.testing.assert_allclose(logit(calibrated, x), expected / 2, atol=1e-4)


def test_degradations_apply_to_training_batches_only():
    x = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    every = dataclasses.replace(RECIPES["robust"], degrade=1.0, batch_size=16)
    none = dataclasses.replace(every, degrade=0.0)
    train = Arrays(x, y, np.zeros(40, np.int64), np.full(40, -1))
    batches = training_batches(train, every, seed=3, first_epoch=0)
    images, labels = batches[0]
    rows = batches.order[:16]
    assert images.dtype == np.uint8 and labels.dtype == np.float32
    np.testing.assert_array_equal(labels, y[rows])
    changed = [(images[i] != x[r]).any() for i, r in enumerate(rows)]
    assert sum(changed) >= 14  # a mild JPEG or noise draw can leave a flat image unchanged
    np.testing.assert_array_equal(x, np.random.default_rng(1).integers(0, 256, x.shape, np.uint8))
    # Same seed, epoch and batch: the same batch (what a resumed run sees).
    np.testing.assert_array_equal(images, training_batches(train, every, 3, 0)[0][0])
    clean, _ = training_batches(train, none, seed=3, first_epoch=0)[0]
    np.testing.assert_array_equal(clean, x[rows])


def test_train_writes_a_run_folder_that_reloads_identically(recipe_run, small_cifake):
    keras = import_keras()
    run = RunFolder(recipe_run)
    result = json.loads(run.recipe_result_path.read_text())
    assert result["recipe"] == "robust" and result["epochs_run"] == 2
    assert 1 <= result["best_epoch"] <= 2 and len(result["epoch_seconds"]) == 2
    assert result["train_images"] == 180 and result["validation_images"] == 20
    config = run.config()
    assert config["recipe_data"]["degrade"] == 0.5 and config["recipe_data"]["epochs"] == 2
    test = run.test_results()
    assert test.final is not None and test.final.topology == "robust"
    assert (run.plots_dir / "training_curves.png").exists()
    model = keras.saving.load_model(run.model)
    best = keras.saving.load_model(run.best_checkpoint)
    x = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    # robust's saved model averages each image with its mirror; the checkpoint runs once.
    assert config["recipe_data"]["flip_average"] and not config["recipe_data"]["shift_average"]

    def logit(images):
        p = best.predict(images, verbose=0).astype(np.float64)
        return np.log(p / (1 - p))

    mean = (logit(x) + logit(x[:, :, ::-1])) / 2
    np.testing.assert_allclose(model.predict(x, verbose=0), 1 / (1 + np.exp(-mean)), atol=1e-6)
    # The saved model has no random layers: a plain call is deterministic.
    assert {"flip", "shift"} & {layer.name for layer in model.layers} == set()
    plain = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_array_equal(plain, keras.ops.convert_to_numpy(model(x)))
    np.testing.assert_allclose(plain, model.predict(x, verbose=0), atol=1e-6)


def test_stopped_training_resumes_from_its_last_epoch(small_cifake, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(recipe="strong", epochs=3, max_train=100)
    with pytest.raises(KeyboardInterrupt):
        run_training(small_cifake, run, config, StopAfter(2))
    state = json.loads(RunFolder(run).train_state_path.read_text())
    assert state["epochs_done"] == 2 and len(state["history"]["loss"]) == 2
    seen: list[int] = []

    class Record(Progress):
        def epoch_ended(self, epoch, logs):
            seen.append(epoch)

    outcome = run_training(small_cifake, run, config, Record())
    assert seen == [3]  # only the missing epoch ran
    assert outcome.result.epochs_run == 3 and len(outcome.result.history["loss"]) == 3
    with pytest.raises(ConfigError, match="other settings"):
        run_training(small_cifake, run, TrainConfig(recipe="robust", epochs=3, max_train=100))


def test_recipe_run_card_and_cli(recipe_run, small_cifake, tmp_path):
    from cifake_hub.cards.model_card import render_model_card

    card = str(render_model_card(recipe_run, repo_id="u/m"))
    assert "# CIFAKE detector: recipe robust" in card
    assert "## The topology search" not in card
    assert "| degrade | 0.5 |" in card and "epoch kept (lowest validation loss)" in card
    out = tmp_path / "cli"
    assert main(["train", str(small_cifake), "--out", str(out), "--recipe", "strong",
                 "--epochs", "1", "--max-train", "60"]) == 0  # fmt: skip
    assert RunFolder(out).model.exists()
    assert json.loads(RunFolder(out).config_path.read_text())["recipe"] == "strong"


def test_on_a_gpu_training_runs_in_mixed_precision(small_cifake, tmp_path, monkeypatch):
    # No GPU here: the device query is the one thing replaced; the mixed-precision training
    # itself runs for real (float16 compute on the CPU).
    from cifake_hub.training import train

    keras = import_keras()
    assert train.training_precision() == "float32"  # this machine has no GPU
    monkeypatch.setattr(train, "training_precision", lambda: "mixed_float16")
    out = tmp_path / "run"
    outcome = run_training(small_cifake, out, TrainConfig(recipe="strong", epochs=1, max_train=60))
    assert outcome.result.precision == "mixed_float16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored afterwards
    model = keras.saving.load_model(RunFolder(out).model)
    assert model.get_layer("conv_1_1").dtype_policy.name == "mixed_float16"
    prob = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
    assert prob.dtype == np.float32 and prob.shape == (2, 1)
