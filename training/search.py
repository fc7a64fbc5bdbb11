"""The paper's two-stage topology search, run by KerasTuner.

KerasTuner is the engine: a grid-search oracle hands out topologies, keeps the state that
lets a stopped search resume (finished trials are skipped, the interrupted one is re-run),
and its distributed mode spreads trials over processes, GPUs or machines (a chief oracle
and workers, set up by environment variables; see the README). One process needs no
extra service. We chose it over Ray Tune because it is Keras-native, light (no cluster to
start) and its oracle state is plain files in the run folder.

Everything the search produces lives in one run folder::

    run_config.json     the settings (saved before training starts)
    results.jsonl       one line per finished topology, appended as it finishes
    models/             stage1_best.keras, stage2_best.keras (kept models), model.keras (best)
    test_results.json   the kept models scored once on the test split, at the end
    tables/ plots/      the paper's Tables 2-11, heatmaps, curves, confusion matrix
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifake_hub.training.backend import import_keras
from cifake_hub.training.data import Arrays, TrainingData, prepare
from cifake_hub.training.metrics import binary_metrics
from cifake_hub.training.topology import Topology, build_model, stage1, stage2

from cifake_hub.config import Config
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.outputs import atomic_write_text, claim, json_text

CONFIG_FILE = "run_config.json"
RESULTS_FILE = "results.jsonl"
TEST_FILE = "test_results.json"
MODELS_DIR = "models"
FINAL_MODEL = "model.keras"
RUN_KIND = "run"
OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class SearchConfig(Config):
    """Settings of a search. The paper leaves epochs, batch size, optimizer, padding and
    input scaling open; these defaults are our choice and are recorded with every run."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    padding: str = "same"
    patience: int = 3  # early stopping on validation loss (best weights restored); 0 = off
    input_scaling: str = "x / 255 inside the model (Rescaling layer)"
    val_fraction: float = 0.1
    max_train: int | None = None
    seed: int = 1
    stage: str = "all"
    select_on: str = "validation"
    topology: str | None = None
    dataset: str = ""  # where the data came from (a folder or Hub id), set by run_search

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}",
            ),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                f"learning rate must be a finite number > 0, got {self.learning_rate}",
            ),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (
                self.padding in ("valid", "same"),
                f"padding must be valid or same, got {self.padding!r}",
            ),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (
                0 < self.val_fraction < 1,
                f"validation fraction must be in (0, 1), got {self.val_fraction}",
            ),
            (
                self.max_train is None or self.max_train >= 20,
                f"max train must be >= 20, got {self.max_train}",
            ),
            (self.stage in ("1", "2", "all"), f"stage must be 1, 2 or all, got {self.stage!r}"),
            (
                self.select_on in ("validation", "test"),
                f"select-on must be validation or test, got {self.select_on!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.topology is not None:
            Topology.parse(self.topology).check_fits(self.padding)

    @property
    def selection_note(self) -> str:
        if self.select_on == "test":
            return (
                "models were selected on the TEST split, as in the paper's protocol: "
                "test numbers are optimistic (no held-out data was left)"
            )
        return (
            f"models were selected on a validation split ({self.val_fraction:.0%} of train, "
            "stratified by label and class); the test split was scored once, at the end"
        )


class Progress:
    """What a search reports as it goes; the CLI renders it with rich."""

    def search_started(self, total: int, done: int) -> None: ...
    def topology_started(self, topology: Topology, index: int, total: int, epochs: int) -> None: ...
    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None: ...
    def topology_ended(self, result: dict[str, Any], skipped: bool) -> None: ...


@dataclass
class SearchOutcome:
    run_dir: Path
    results: list[dict[str, Any]]
    best: dict[str, Any]
    test: dict[str, Any] = field(default_factory=dict)


def load_results(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / RESULTS_FILE
    if not path.exists():
        return []
    # A line cut short by a kill is ignored: that topology simply runs again.
    results = []
    for line in path.read_text().splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return results


def selection_loss(result: dict[str, Any]) -> float:
    loss = result[result["selected_on"]]["loss"]
    # A diverged model's NaN loss is stored as null: it must never be selected.
    return math.inf if loss is None or not math.isfinite(loss) else float(loss)


def best_of(results: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return min(results, key=lambda r: (selection_loss(r), r["topology"]), default=None)


class SearchRunner:
    """Trains topologies on prepared arrays and records each as it finishes."""

    def __init__(self, config: SearchConfig, run_dir: Path, data: TrainingData, progress: Progress):
        self.config, self.run_dir, self.data, self.progress = config, run_dir, data, progress
        self.models_dir = run_dir / MODELS_DIR
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.total = 0
        self.index = 0

    def finished(self) -> dict[str, dict[str, Any]]:
        return {r["topology"]: r for r in load_results(self.run_dir)}

    def train(self, topology: Topology) -> dict[str, Any]:
        """Train one topology (or return its recorded result); keep it if best of its stage."""
        done = self.finished().get(topology.name)
        self.index += 1
        if done is not None:
            self.progress.topology_ended(done, skipped=True)
            return done
        keras = import_keras()

        cfg = self.config
        keras.utils.set_random_seed(cfg.seed)  # every topology starts from the same seed
        model = build_model(topology, cfg.padding)
        model.compile(
            optimizer=_optimizer(cfg),
            loss="binary_crossentropy",
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
        )
        self.progress.topology_started(topology, self.index, self.total, cfg.epochs)
        epoch_seconds: list[float] = []
        callbacks = [_epoch_callback(self.progress, epoch_seconds)]
        if cfg.patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=cfg.patience, restore_best_weights=True
                )
            )
        train, val = self.data.train, self.data.validation
        start = time.perf_counter()
        history = model.fit(
            train.x,
            train.y,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            shuffle=True,
            validation_data=(val.x, val.y),
            callbacks=callbacks,
            verbose=0,
        )
        seconds = time.perf_counter() - start
        epochs_run = len(history.history["loss"])
        result: dict[str, Any] = {
            "topology": topology.name,
            "stage": topology.stage,
            "conv_filters": topology.conv_filters,
            "conv_layers": topology.conv_layers,
            "dense_units": topology.dense_units,
            "dense_layers": topology.dense_layers,
            "params": int(model.count_params()),
            "train_seconds": round(seconds, 3),
            "epochs_run": epochs_run,
            "train_images": len(train),
            "validation_images": len(val),
            "train_images_per_second": round(len(train) * epochs_run / seconds, 1),
            "epoch_seconds": epoch_seconds,
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "validation": evaluate(model, val, cfg.batch_size),
            "selected_on": cfg.select_on,
        }
        if cfg.select_on == "test":
            result["test"] = evaluate(model, self._test(), cfg.batch_size)
        self._keep_if_best(model, result)
        _append_line(self.run_dir / RESULTS_FILE, result)
        self.progress.topology_ended(result, skipped=False)
        return result

    def _test(self) -> Arrays:
        if self.data.test is None:
            raise CifakeError("--select-on test needs a test split, and this dataset has none")
        return self.data.test

    def _keep_if_best(self, model: Any, result: dict[str, Any]) -> None:
        """Save the model as its stage's best if it beats the kept one; a lock makes this
        safe when several KerasTuner workers share the run folder."""
        name = f"stage{result['stage']}_best"
        with open(self.models_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta_path = self.models_dir / f"{name}.json"
            if meta_path.exists():
                kept = json.loads(meta_path.read_text())
                if (selection_loss(kept), kept["topology"]) <= (
                    selection_loss(result),
                    result["topology"],
                ):
                    return
            tmp = self.models_dir / f".{name}.tmp.keras"
            model.save(tmp)
            os.replace(tmp, self.models_dir / f"{name}.keras")
            meta_path.write_text(
                json_text(
                    {k: result[k] for k in ("topology", "selected_on", result["selected_on"])},
                    indent=None,
                )
            )


def evaluate(model: Any, arrays: Arrays, batch_size: int) -> dict[str, float]:
    prob = model.predict(arrays.x, batch_size=max(batch_size, 256), verbose=0).ravel()
    return binary_metrics(arrays.y, prob)


def _optimizer(cfg: SearchConfig) -> Any:
    keras = import_keras()

    cls = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[cfg.optimizer]
    return cls(learning_rate=cfg.learning_rate)


def _append_line(path: Path, record: dict[str, Any]) -> None:
    # One write of one line with O_APPEND: concurrent workers never interleave records.
    data = json_text(record, indent=None).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _epoch_callback(progress: Progress, epoch_seconds: list[float]) -> Any:
    """Reports each epoch and records its wall time (throughput without the one-off setup)."""
    keras = import_keras()
    started: list[float] = []

    def begin(epoch: int, logs: Any) -> None:
        started.append(time.perf_counter())

    def end(epoch: int, logs: Any) -> None:
        epoch_seconds.append(round(time.perf_counter() - started[-1], 3))
        progress.epoch_ended(epoch + 1, dict(logs or {}))

    return keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)


def _run_stage(runner: SearchRunner, topologies: list[Topology], project: str) -> None:
    """Run ``topologies`` through a KerasTuner grid-search oracle (resumable, distributable)."""
    import keras_tuner as kt

    names = [t.name for t in topologies]
    hp = kt.HyperParameters()
    hp.Choice("topology", names, ordered=False)

    class TopologyOracle(kt.Oracle):
        """Hands out the topologies in order. KerasTuner's GridSearchOracle loses its
        ordering state on reload (keras-tuner#1055), which breaks resuming; the base
        Oracle persists the trials and retries the one a kill interrupted."""

        def populate_space(self, trial_id: str) -> dict[str, Any]:
            tried = {t.hyperparameters.values.get("topology") for t in self.trials.values()}
            for name in names:
                if name not in tried:
                    return {"status": "RUNNING", "values": {"topology": name}}
            return {"status": "STOPPED", "values": None}

    oracle = TopologyOracle(
        objective=kt.Objective("selection_loss", "min"),
        max_trials=len(topologies),
        hyperparameters=hp,
        seed=runner.config.seed,
    )

    class Tuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            topology = Topology.parse(trial.hyperparameters.get("topology"))
            try:
                return {"selection_loss": selection_loss(runner.train(topology))}
            except Exception as exc:
                # KerasTuner would mark the trial invalid and carry on: a failure must stop us.
                raise kt.errors.FatalError(str(exc)) from exc

    tuner = Tuner(oracle, directory=str(runner.run_dir / "tuner"), project_name=project)
    try:
        tuner.search(verbose=0)
    except kt.errors.FatalError as exc:
        cause = exc.__cause__
        raise cause if isinstance(cause, Exception) else exc from None


def _wait_for(run_dir: Path, names: set[str], timeout_s: float = 24 * 3600) -> None:
    """Distributed workers finish at different times: wait until all of ``names`` are recorded."""
    deadline = time.monotonic() + timeout_s
    while not names <= {r["topology"] for r in load_results(run_dir)}:
        if time.monotonic() > deadline:
            raise CifakeError(
                f"timed out waiting for {len(names)} topologies in {run_dir / RESULTS_FILE}"
            )
        time.sleep(2)


def _is_worker() -> bool:
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in tuner_id


def dataset_id(dataset: str | Path) -> str:
    """How a run records its dataset: a local folder as its absolute path (``./ds`` and
    ``ds`` are one dataset), a Hub id as it is."""
    path = Path(dataset)
    return str(path.resolve()) if path.exists() else str(dataset)


def start_run(config: SearchConfig, run_dir: Path) -> None:
    """Save the config, or check it matches the one of the run being resumed."""
    claim(run_dir, RUN_KIND)
    path = run_dir / CONFIG_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        previous.pop("type", None)
        differs = {
            k: (previous.get(k), v) for k, v in config.to_dict().items() if previous.get(k) != v
        }
        if differs:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differs.items())
            raise ConfigError(
                f"{run_dir} holds a run with other settings ({shown}); "
                "resume with the same options or choose another --out"
            )
    else:
        config.save(path)


def run_search(
    dataset: Any,
    run_dir: str | Path,
    config: SearchConfig,
    progress: Progress | None = None,
    on_status: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Run the search (or one topology) on ``dataset`` into ``run_dir``; resumes a stopped run."""
    run_dir = Path(run_dir)
    status = on_status or (lambda _msg: None)
    if isinstance(dataset, (str, Path)):
        config = dataclasses.replace(config, dataset=dataset_id(dataset))
    # The dataset first: a typo in its path must not leave a run folder behind.
    status("decoding the dataset")
    data = prepare(
        dataset, val_fraction=config.val_fraction, max_train=config.max_train, seed=config.seed
    )
    start_run(config, run_dir)
    status(
        f"train {len(data.train):,} / validation {len(data.validation):,} / "
        f"test {len(data.test) if data.test else 0:,} images"
    )
    runner = SearchRunner(config, run_dir, data, progress or Progress())

    if config.topology is not None:
        plan = [[Topology.parse(config.topology)]]
        runner.total = 1
    else:
        # Stage 2's list stays empty until the stage-1 winner is known.
        plan = [stage1()] if config.stage in ("1", "all") else []
        plan += [[]] if config.stage in ("2", "all") else []
        runner.total = 12 * (config.stage != "2") + 24 * (config.stage != "1")
    done = runner.finished()
    runner.progress.search_started(runner.total, len(done))

    for topologies in plan:
        if not topologies:  # stage 2
            winner = best_of(r for r in load_results(run_dir) if r["stage"] == 1)
            if winner is None:
                raise CifakeError(
                    f"stage 2 needs stage-1 results in {run_dir}; run --stage 1 (or all) first"
                )
            topologies = stage2(Topology.parse(winner["topology"]))
            status(f"stage 2 uses the stage-1 winner {winner['topology']}")
        if config.topology is not None:
            runner.train(topologies[0])
        else:
            _run_stage(runner, topologies, project=f"stage{topologies[0].stage}")
            _wait_for(run_dir, {t.name for t in topologies})
    if _is_worker():
        results = load_results(run_dir)
        return SearchOutcome(run_dir, results, best_of(results) or {})
    return finish(run_dir, config, data)


def finish(run_dir: Path, config: SearchConfig, data: TrainingData) -> SearchOutcome:
    """Pick the final model, score kept models on test once, write tables and plots."""
    keras = import_keras()

    from cifake_hub.training import report

    results = load_results(run_dir)
    best = best_of(results)
    if best is None:
        raise CifakeError(f"no finished topology in {run_dir}")
    models_dir = run_dir / MODELS_DIR
    kept = {
        f"stage{s}_best": models_dir / f"stage{s}_best.keras"
        for s in (1, 2)
        if (models_dir / f"stage{s}_best.keras").exists()
    }
    final_key = f"stage{best['stage']}_best"
    shutil.copyfile(kept[final_key], run_dir / FINAL_MODEL)
    test: dict[str, Any] = {"selection": config.selection_note, "models": {}}
    if data.test is not None:
        for key, path in kept.items():
            meta = json.loads(path.with_suffix(".json").read_text())
            model = keras.saving.load_model(path)
            test["models"][key] = {
                "topology": meta["topology"],
                "metrics": evaluate(model, data.test, config.batch_size),
            }
        test["final"] = {"topology": best["topology"], **test["models"][final_key]}
    atomic_write_text(run_dir / TEST_FILE, json_text(test))
    final_model = keras.saving.load_model(run_dir / FINAL_MODEL)
    eval_split = data.test if data.test is not None else data.validation
    prob = final_model.predict(eval_split.x, batch_size=256, verbose=0).ravel()
    report.write_all(
        run_dir,
        results,
        best,
        eval_split.y,
        prob,
        "test" if data.test is not None else "validation",
    )
    return SearchOutcome(run_dir, results, best, test)
