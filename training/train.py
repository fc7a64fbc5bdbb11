"""``cifake train``: one model by a recipe (``training/recipes.py``), into a run folder.

The run folder is the search's (``RunFolder``): the same validation slice (a stratified
share of train, so selection never sees test), ``model.keras``, ``test_results.json`` and
the same readers downstream. Training is resumable at epoch granularity: after every epoch
the model with its optimizer state goes to ``checkpoints/last.keras`` and the history to
``checkpoints/state.json``; a stopped run continues from there when run again with the
same options. The epoch with the lowest validation loss is kept (``models/best.keras``)
and becomes ``model.keras`` (without the augmentation layers, which only training needs);
the test split is scored once, at the end.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.config import option
from cifake_hub.degrade import random_degradation
from cifake_hub.errors import ConfigError
from cifake_hub.outputs import atomic_write_text, json_text, read_json, writes
from cifake_hub.schema import FAKE, REAL, generator_families
from cifake_hub.training.backend import import_keras
from cifake_hub.training.data import Arrays, DataOptions, TrainingData, prepare
from cifake_hub.training.recipes import (
    RECIPES,
    Recipe,
    build_recipe_model,
    compile_recipe_model,
    get_recipe,
    inference_copy,
)
from cifake_hub.training.run_folder import RecipeResult, RunFolder, ScoredModel, TestResults
from cifake_hub.training.search import Progress, dataset_id, evaluate


@dataclass(frozen=True)
class TrainConfig(DataOptions):
    """Settings of one recipe run; the recipe itself is saved with them (``recipe_data``)."""

    recipe: str = option("robust", "training recipe", choices=lambda: sorted(RECIPES))
    epochs: int | None = option(None, "train this many epochs instead of the recipe's")
    hold_out: str | None = option(
        None,
        "FAKE generator family left out of training and used to choose the kept epoch (its "
        "aligned twins go with it); default for a recipe that selects on an unseen family "
        "(general): the family with the fewest FAKE train rows",
    )
    # Set by run_training: where the data came from, and the recipe in full.
    dataset: str = option("", cli=False)
    recipe_data: dict[str, Any] | None = option(None, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        get_recipe(self.recipe)
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")

    @property
    def resolved(self) -> Recipe:
        """The recipe this run trains (the saved one when resuming)."""
        if self.recipe_data is not None:
            return Recipe.from_dict(self.recipe_data)
        return get_recipe(self.recipe).with_epochs(self.epochs)

    @property
    def selection_note(self) -> str:
        if self.hold_out is not None:
            return (
                f"the epoch with the highest ROC AUC of family {self.hold_out!r} (left out of "
                "training) against the REAL validation images was kept; the test split was "
                "scored once, at the end"
            )
        return (
            f"the epoch with the lowest validation loss was kept (validation: "
            f"{self.val_fraction:.0%} of train, stratified by label and class); the test "
            "split was scored once, at the end"
        )


@dataclass
class TrainState:
    """``checkpoints/state.json``: what the epochs so far did (the resume point)."""

    epochs_done: int = 0
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0: none yet
    best_val_loss: float = math.inf
    best_selection_auc: float | None = None  # with a held-out family: the kept epoch's AUC

    @classmethod
    def load(cls, path: Path) -> TrainState:
        if not path.exists():
            return cls()
        record = read_json(path)
        best = record.get("best_val_loss")
        return cls(**{**record, "best_val_loss": math.inf if best is None else best})


@dataclass
class TrainOutcome:
    run: RunFolder
    result: RecipeResult
    test: TestResults


def training_batches(train: Arrays, recipe: Recipe, seed: int, first_epoch: int) -> Any:
    """A Keras ``PyDataset`` of shuffled training batches (:func:`epoch_rows`), ``recipe.degrade``
    of whose images are degraded (cifake_hub.degrade); seeded by (seed, epoch, batch), so a
    resumed run sees the batches it would have seen. Two threads prepare batches ahead."""
    keras = import_keras()
    x, y = train.x, train.y

    class Batches(keras.utils.PyDataset):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__(workers=2, use_multiprocessing=False, max_queue_size=8)
            self.epoch = first_epoch
            self.order = epoch_rows(train, recipe.balance, seed, self.epoch)

        def __len__(self) -> int:
            return math.ceil(len(self.order) / recipe.batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            rows = self.order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            images = x[rows]
            rng = np.random.default_rng([seed, self.epoch, index])
            for i in np.flatnonzero(rng.random(len(rows)) < recipe.degrade):
                images[i] = random_degradation(images[i], rng)
            return images, y[rows].astype(np.float32)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = epoch_rows(train, recipe.balance, seed, self.epoch)

    return Batches()


def epoch_rows(train: Arrays, balance: bool, seed: int, epoch: int) -> np.ndarray:
    """The training rows of one epoch, shuffled: every row once; or, with ``balance``, every
    REAL row and as many FAKE rows in equal shares per generator, each generator's share the
    next rows of a stream of its rows' seeded permutations (so every row is used before any
    is used again)."""
    if not balance:
        return np.random.default_rng([seed, epoch]).permutation(len(train))
    real = np.flatnonzero(train.y == REAL)
    fake = train.y == FAKE
    generators = np.unique(train.generator[fake])
    share = math.ceil(len(real) / len(generators))
    parts = [real] + [
        _rotation(np.flatnonzero(fake & (train.generator == g)), share, epoch, [seed, 1 + int(g)])
        for g in generators
    ]
    rows = np.concatenate(parts)
    return rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]


def _rotation(rows: np.ndarray, k: int, epoch: int, seed: list[int]) -> np.ndarray:
    start = epoch * k
    first, last = start // len(rows), (start + k - 1) // len(rows)
    stream = np.concatenate(
        [
            rows[np.random.default_rng([*seed, c]).permutation(len(rows))]
            for c in range(first, last + 1)
        ]
    )
    return stream[start - first * len(rows) :][:k]


@dataclass
class HeldOut:
    """The FAKE family left out of training, and the rows the kept epoch is chosen on: its
    FAKE rows (train split, at most ``SELECTION_ROWS``) against as many REAL validation rows."""

    family: str
    generators: tuple[str, ...]
    chosen: str  # why this family
    rows: Arrays

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "generators": list(self.generators),
            "chosen": self.chosen,
            "fake_rows": int((self.rows.y == FAKE).sum()),
            "real_rows": int((self.rows.y == REAL).sum()),
            "metric": "roc_auc",
        }


SELECTION_ROWS = 4000  # per label: scored after every epoch


def hold_out(
    config: TrainConfig, recipe: Recipe, data: TrainingData
) -> tuple[TrainingData, HeldOut | None]:
    """``data`` without the held-out family's rows, and that family's selection rows."""
    families = generator_families(data.generators)
    family, chosen = config.hold_out, "given (--hold-out)"
    if family is None:
        if not recipe.select_unseen:
            return data, None
        seen = [f for f, ids in families.items() if np.isin(data.train.generator, ids).any()]
        if len(seen) < 2:
            raise ConfigError(
                f"recipe {recipe.name!r} chooses its epoch on a FAKE family it never trains on, "
                f"but the train split has {len(seen)} ({', '.join(seen) or 'no generator column'}"
                "): add families (`cifake build --fake cifake:DIR@NAME`, the zoo) or use "
                "--recipe robust"
            )
        count = {f: int(np.isin(data.train.generator, families[f]).sum()) for f in seen}
        family = min(seen, key=lambda f: (count[f], f))
        chosen = f"the family with the fewest FAKE train rows ({count[family]:,})"
    if family not in families:
        raise ConfigError(
            f"--hold-out {family!r}: no such generator family in the dataset; it has "
            f"{', '.join(sorted(families)) or 'no generator column'}"
        )
    ids = families[family]
    in_train, in_val = (np.isin(a.generator, ids) for a in (data.train, data.validation))
    fake = np.concatenate([np.flatnonzero(in_train), len(data.train) + np.flatnonzero(in_val)])
    pool = _stack(data.train, data.validation)
    real = len(data.train) + np.flatnonzero(data.validation.y == REAL)
    rng = np.random.default_rng(config.seed)
    n = min(len(fake), len(real), SELECTION_ROWS)
    if n == 0:
        raise ConfigError(f"--hold-out {family!r}: the train split has no FAKE rows of it")
    picked = np.sort(
        np.concatenate([rng.choice(fake, n, replace=False), rng.choice(real, n, replace=False)])
    )
    rest = dataclasses.replace(
        data,
        train=data.train.take(np.flatnonzero(~in_train)),
        validation=data.validation.take(np.flatnonzero(~in_val)),
    )
    names = tuple(data.generators[i] for i in ids)
    return rest, HeldOut(family, names, chosen, pool.take(picked))


def _stack(a: Arrays, b: Arrays) -> Arrays:
    return Arrays(
        *(
            np.concatenate([getattr(a, f.name), getattr(b, f.name)])
            for f in dataclasses.fields(Arrays)
        )
    )


@writes("run_dir", finishes=RunFolder.KIND)
def run_training(
    dataset: Any,
    run_dir: str | Path,
    config: TrainConfig,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train ``config.recipe`` on ``dataset`` into ``run_dir``; resumes a stopped run."""
    keras = import_keras()

    run_dir = Path(run_dir)
    say = say or (lambda _msg: None)
    progress = progress or Progress()
    if isinstance(dataset, (str, Path)):
        config = dataclasses.replace(config, dataset=dataset_id(dataset))
    recipe = config.resolved
    config = dataclasses.replace(config, recipe_data=recipe.to_dict())
    say("decoding the dataset")
    data, held = hold_out(config, recipe, prepare(dataset, config))
    if held is not None:
        config = dataclasses.replace(config, hold_out=held.family)
    run = RunFolder.start(run_dir, config)
    train, val = data.train, data.validation
    say(
        f"recipe {recipe.name}: train {len(train):,} / validation {len(val):,} / "
        f"test {len(data.test) if data.test else 0:,} images, {recipe.epochs} epochs"
    )
    if held is not None:
        say(
            f"family {held.family} ({', '.join(held.generators)}) is left out of training; the "
            f"kept epoch is chosen on it ({len(held.rows):,} images); it was {held.chosen}"
        )
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    run.models_dir.mkdir(parents=True, exist_ok=True)
    precision = training_precision()
    previous_policy = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        return _train(run, config, recipe, data, held, precision, progress, say)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def training_precision() -> str:
    """``mixed_float16`` where Keras trains on a GPU (XLA is then Keras' own "auto" choice),
    ``float32`` on a CPU, where float16 only slows training down."""
    keras = import_keras()

    if keras.backend.backend() == "torch":
        import torch

        gpu = torch.cuda.is_available()
    else:
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    return "mixed_float16" if gpu else "float32"


def _train(
    run: RunFolder,
    config: TrainConfig,
    recipe: Recipe,
    data: TrainingData,
    held: HeldOut | None,
    precision: str,
    progress: Progress,
    say: Callable[[str], None],
) -> TrainOutcome:
    keras = import_keras()

    train, val = data.train, data.validation
    epoch_images = len(epoch_rows(train, recipe.balance, config.seed, 0))
    state = TrainState.load(run.train_state_path)
    if state.epochs_done and run.last_checkpoint.exists():
        model = keras.saving.load_model(run.last_checkpoint)
        say(f"resuming after epoch {state.epochs_done}")
    else:
        state = TrainState()
        keras.utils.set_random_seed(config.seed)
        model = build_recipe_model(recipe)
        compile_recipe_model(model, recipe, epoch_images)
    progress.topology_started(recipe.name, 1, 1, recipe.epochs)

    if state.epochs_done < recipe.epochs:
        keras.utils.set_random_seed(config.seed + state.epochs_done)
        if recipe.degrade or recipe.balance:
            fit_data: dict[str, Any] = {
                "x": training_batches(train, recipe, config.seed, state.epochs_done)
            }
        else:
            fit_data = {
                "x": train.x,
                "y": train.y.astype(np.float32),
                "batch_size": recipe.batch_size,
                "shuffle": True,
            }
        model.fit(
            **fit_data,
            epochs=recipe.epochs,
            initial_epoch=state.epochs_done,
            validation_data=(val.x, val.y.astype(np.float32)),
            validation_batch_size=512,
            callbacks=[_checkpoint_callback(run, state, progress, held)],
            verbose=0,
        )
    return _finish(
        run, config, recipe, state, data, held, precision, int(model.count_params()), epoch_images
    )


def _generator_rows(data: TrainingData) -> dict[str, int] | None:
    if not data.generators:
        return None
    fake = data.train.generator[data.train.y == FAKE]
    return {
        name: int((fake == i).sum()) for i, name in enumerate(data.generators) if (fake == i).any()
    }


def selection_record(held: HeldOut, state: TrainState) -> dict[str, Any]:
    """``RecipeResult.selection``: the held-out family, its rows, the kept epoch and why."""
    aucs = state.history.get("held_out_auc", [])
    best = state.best_selection_auc
    why = (
        f"epoch {state.best_epoch} of {state.epochs_done} separated family {held.family!r}, "
        f"which training never saw, best from the REAL validation images (ROC AUC {best:.4f}; "
        "per epoch: " + ", ".join("n/a" if math.isnan(a) else f"{a:.4f}" for a in aucs) + ")"
    )
    if best is not None and best < 0.5:
        # Every epoch ranked the unseen family's fakes as more REAL than REAL images: the
        # kept epoch is the least wrong, not a good one, and the user must hear it.
        why += (
            "; warning: every epoch scored that family below chance, so the kept epoch is "
            "the least wrong one, not a detector of it: train longer, or hold out another "
            "family"
        )
    return {
        **held.to_dict(),
        "kept_epoch": state.best_epoch,
        "kept_auc": best,
        "below_chance": best is not None and best < 0.5,
        "why": why,
    }


def recipe_table() -> str:
    """The recipes and their settings, as a Markdown table (``cifake train --list-recipes``)."""
    names = sorted(RECIPES)
    rows = [f"| setting | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for key in RECIPES[names[0]].to_dict():
        if key in ("name", "description"):
            continue
        values = [str(RECIPES[n].to_dict()[key]) for n in names]
        rows.append(f"| {key.replace('_', ' ')} | {' | '.join(values)} |")
    about = [f"- {n}: {RECIPES[n].description}" for n in names]
    return "\n".join(about + [""] + rows)


def _checkpoint_callback(
    run: RunFolder, state: TrainState, progress: Progress, held: HeldOut | None
) -> Any:
    """Saves the model, the best model and the state after every epoch, atomically. The best
    model: the lowest validation loss, or with a held-out family the highest AUC on it."""
    keras = import_keras()

    class Checkpoint(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = dict(logs or {})
            state.epoch_seconds.append(round(time.perf_counter() - self.started, 3))
            for key, value in logs.items():
                state.history.setdefault(key, []).append(float(value))
            state.epochs_done = epoch + 1
            val_loss = float(logs.get("val_loss", math.inf))
            finite = math.isfinite(val_loss)
            if held is not None:
                auc = _held_out_auc(self.model, held) if finite else None
                state.history.setdefault("held_out_auc", []).append(
                    math.nan if auc is None else auc
                )
                best = state.best_selection_auc
                if auc is not None and (best is None or auc > best):
                    state.best_selection_auc, state.best_epoch = auc, epoch + 1
                    _save(self.model, run.best_checkpoint)
                if finite:
                    state.best_val_loss = min(state.best_val_loss, val_loss)
            elif finite and val_loss < state.best_val_loss:
                state.best_val_loss, state.best_epoch = val_loss, epoch + 1
                _save(self.model, run.best_checkpoint)
            _save(self.model, run.last_checkpoint)
            record = dataclasses.asdict(state)
            if not math.isfinite(state.best_val_loss):
                record["best_val_loss"] = None
            atomic_write_text(run.train_state_path, json_text(record))
            progress.epoch_ended(epoch + 1, logs)

    return Checkpoint()


def _held_out_auc(model: Any, held: HeldOut) -> float | None:
    from cifake_hub.training.metrics import binary_metrics

    prob = np.asarray(model.predict(held.rows.x, batch_size=512, verbose=0), dtype=np.float64)
    if not np.isfinite(prob).all():
        return None
    auc = binary_metrics(held.rows.y, prob[:, 0])["roc_auc"]
    return None if auc is None else float(auc)


def _save(model: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _finish(
    run: RunFolder,
    config: TrainConfig,
    recipe: Recipe,
    state: TrainState,
    data: TrainingData,
    held: HeldOut | None,
    precision: str,
    params: int,
    epoch_images: int,
) -> TrainOutcome:
    """The kept epoch becomes ``model.keras``; validation scored, test scored once."""
    keras = import_keras()

    from cifake_hub.training import report

    if not run.best_checkpoint.exists():
        raise ConfigError(
            f"no epoch of {run.path} reached a finite validation loss; the training diverged "
            "(try another seed)"
        )
    model = inference_copy(keras.saving.load_model(run.best_checkpoint), recipe)
    _save(model, run.model)
    val, test, train_images = data.validation, data.test, len(data.train)
    seconds = sum(state.epoch_seconds)
    result = RecipeResult(
        recipe=recipe.name,
        params=params,
        train_seconds=round(seconds, 3),
        epochs_run=state.epochs_done,
        best_epoch=state.best_epoch,
        train_images=train_images,
        validation_images=len(val),
        train_images_per_second=round(epoch_images * state.epochs_done / max(seconds, 1e-9), 1),
        epoch_seconds=state.epoch_seconds,
        history=state.history,
        validation=evaluate(model, val, 512),
        precision=precision,
        epoch_images=epoch_images,
        train_generators=_generator_rows(data),
        selection=None if held is None else selection_record(held, state),
    )
    atomic_write_text(run.recipe_result_path, json_text(result.to_dict()))
    scores = TestResults(selection=config.selection_note)
    if test is not None:
        scores.final = ScoredModel(recipe.name, evaluate(model, test, 512))
    atomic_write_text(run.test_path, json_text(scores.to_dict()))
    shown, split = (
        (scores.final.metrics, "test") if scores.final else (result.validation, "validation")
    )
    report.plot_curves(run, state.history, f"recipe {recipe.name}")
    report.plot_confusion(run, shown, split, f"recipe {recipe.name}")
    return TrainOutcome(run, result, scores)
