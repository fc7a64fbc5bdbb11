"""The paper's two-stage topology search, run by KerasTuner.

KerasTuner is the engine: a grid-search oracle hands out topologies, keeps the state that
lets a stopped search resume (finished trials are skipped, the interrupted one is re-run),
and its distributed mode spreads trials over processes, GPUs or machines (a chief oracle
and workers, set up by environment variables; see the README). One process needs no
extra service. We chose it over Ray Tune because it is Keras-native, light (no cluster to
start) and its oracle state is plain files in the run folder.

Everything the search produces lives in one run folder
(:class:`~cifake_hub.training.run_folder.RunFolder`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifake_hub.config import option
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.outputs import atomic_write_text, exclusive, json_text, read_json, writes
from cifake_hub.training.backend import import_keras
from cifake_hub.training.data import Arrays, DataOptions, TrainingData, prepare
from cifake_hub.training.metrics import binary_metrics
from cifake_hub.training.run_folder import (
    RunFolder,
    ScoredModel,
    TestResults,
    TopologyResult,
    best_of,
)
from cifake_hub.training.topology import Topology, build_model, stage1, stage2

OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class SearchConfig(DataOptions):
    """Settings of a search. The paper leaves epochs, batch size, optimizer, padding and
    input scaling open; these defaults are our choice and are recorded with every run."""

    epochs: int = option(10, "epochs per topology (at most: early stopping)")
    batch_size: int = option(64, "batch size")
    optimizer: str = option("adam", "optimizer", choices=OPTIMIZERS)
    learning_rate: float = option(1e-3, "learning rate")
    padding: str = option("same", "conv padding", choices=("same", "valid"))
    patience: int = option(3, "early stopping on validation loss, best weights kept (0: off)")
    input_scaling: str = option("x / 255 inside the model (Rescaling layer)", cli=False)
    stage: str = option("all", "run stage 1, 2 or all", choices=("1", "2", "all"))
    select_on: str = option(
        "validation",
        "'test' reproduces the paper's protocol (optimistic test numbers)",
        choices=("validation", "test"),
    )
    topology: str | None = option(
        None, "train just this topology, e.g. conv=32x2,dense=64x1 (the paper's choice)"
    )
    # Where the data came from (a folder or Hub id), set by run_search.
    dataset: str = option("", cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
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
            (
                self.padding in ("valid", "same"),
                f"padding must be valid or same, got {self.padding!r}",
            ),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
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
    def topology_started(self, name: str, index: int, total: int, epochs: int) -> None: ...
    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None: ...
    def topology_ended(self, result: TopologyResult, skipped: bool) -> None: ...


@dataclass
class SearchOutcome:
    run: RunFolder
    results: list[TopologyResult]
    best: TopologyResult | None
    test: TestResults | None = None


class SearchRunner:
    """Trains topologies on prepared arrays and records each as it finishes."""

    def __init__(self, config: SearchConfig, run_dir: Path, data: TrainingData, progress: Progress):
        self.config, self.data, self.progress = config, data, progress
        self.run = RunFolder(run_dir)
        self.run.models_dir.mkdir(parents=True, exist_ok=True)
        self.total = 0
        self.index = 0

    def finished(self) -> dict[str, TopologyResult]:
        return {r.topology: r for r in self.run.results()}

    def train(self, topology: Topology) -> TopologyResult:
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
        self.progress.topology_started(topology.name, self.index, self.total, cfg.epochs)
        epoch_seconds: list[float] = []
        callbacks = self._callbacks(epoch_seconds)
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
        result = TopologyResult(
            topology=topology.name,
            stage=topology.stage,
            conv_filters=topology.conv_filters,
            conv_layers=topology.conv_layers,
            dense_units=topology.dense_units,
            dense_layers=topology.dense_layers,
            params=int(model.count_params()),
            train_seconds=round(seconds, 3),
            epochs_run=epochs_run,
            train_images=len(train),
            validation_images=len(val),
            train_images_per_second=round(len(train) * epochs_run / seconds, 1),
            epoch_seconds=epoch_seconds,
            history={k: [float(v) for v in vs] for k, vs in history.history.items()},
            validation=evaluate(model, val, cfg.batch_size),
            selected_on=cfg.select_on,
            test=evaluate(model, self._test(), cfg.batch_size) if cfg.select_on == "test" else None,
        )
        self._keep_if_best(model, result)
        _append_line(self.run.results_path, result.to_dict())
        self.progress.topology_ended(result, skipped=False)
        return result

    def _callbacks(self, epoch_seconds: list[float]) -> list[Any]:
        """Progress and epoch times; early stopping on validation loss, best weights kept."""
        keras = import_keras()
        callbacks = [_epoch_callback(self.progress, epoch_seconds)]
        if self.config.patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=self.config.patience, restore_best_weights=True
                )
            )
        return callbacks

    def _test(self) -> Arrays:
        if self.data.test is None:
            raise CifakeError("--select-on test needs a test split, and this dataset has none")
        return self.data.test

    def _keep_if_best(self, model: Any, result: TopologyResult) -> None:
        """Save the model as its stage's best if it beats the kept one; a lock makes this
        safe when several KerasTuner workers share the run folder."""
        path = self.run.kept_model(result.stage)
        with exclusive(self.run.models_dir / ".lock"):
            meta_path = path.with_suffix(".json")
            if meta_path.exists():
                kept = TopologyResult.from_dict(read_json(meta_path))
                if (kept.selection_loss, kept.topology) <= (
                    result.selection_loss,
                    result.topology,
                ):
                    return
            tmp = path.with_name(f".{path.stem}.tmp.keras")
            model.save(tmp)
            os.replace(tmp, path)
            atomic_write_text(meta_path, json_text(result.to_dict(), indent=None))


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
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _drop_torn_tail(fd)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_tail(fd: int) -> None:
    """Cut a last line that a kill left without its newline, so the next record does not
    land on the fragment (the fragment's topology runs again)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    cut = os.pread(fd, size, 0).rfind(b"\n")  # a few kB: one line per topology
    os.ftruncate(fd, cut + 1)


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

    class Tuner(kt.Tuner):  # a custom loop: run_trial overridden, no hypermodel
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            topology = Topology.parse(trial.hyperparameters.get("topology"))
            try:
                return {"selection_loss": runner.train(topology).selection_loss}
            except Exception as exc:
                # KerasTuner would mark the trial invalid and carry on: a failure must stop us.
                raise kt.errors.FatalError(str(exc)) from exc

    tuner = Tuner(oracle, directory=str(runner.run.tuner_dir), project_name=project)
    try:
        tuner.search(verbose=0)
    except kt.errors.FatalError as exc:
        cause = exc.__cause__
        raise cause if isinstance(cause, Exception) else exc from None


def _wait_for(run_dir: Path, names: set[str], timeout_s: float = 24 * 3600) -> None:
    """Distributed workers finish at different times: wait until all of ``names`` are recorded."""
    deadline = time.monotonic() + timeout_s
    while not names <= {r.topology for r in RunFolder(run_dir).results()}:
        if time.monotonic() > deadline:
            raise CifakeError(
                f"timed out waiting for {len(names)} topologies in "
                f"{RunFolder(run_dir).results_path}"
            )
        time.sleep(2)


def _is_chief() -> bool:
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" in os.environ.get(
        "KERASTUNER_TUNER_ID", ""
    )


def _is_worker() -> bool:
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in tuner_id


def dataset_id(dataset: str | Path) -> str:
    """How a run records its dataset: a local folder as its absolute path (``./ds`` and
    ``ds`` are one dataset), a Hub id as it is."""
    path = Path(dataset)
    return str(path.resolve()) if path.exists() else str(dataset)


# The chief and workers of a distributed search share the run folder (a shared lock).
@writes(
    "run_dir",
    shared=lambda *args, **kwargs: _is_worker() or _is_chief(),
    finishes=RunFolder.KIND,
)
def run_search(
    dataset: Any,
    run_dir: str | Path,
    config: SearchConfig,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Run the search (or one topology) on ``dataset`` into ``run_dir``; resumes a stopped run."""
    run_dir = Path(run_dir)
    status = say or (lambda _msg: None)
    if isinstance(dataset, (str, Path)):
        config = dataclasses.replace(config, dataset=dataset_id(dataset))
    # The dataset first: a typo in its path must not leave a run folder behind.
    status("decoding the dataset")
    data = prepare(dataset, config)
    RunFolder.start(run_dir, config)
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
            winner = best_of([r for r in runner.run.results() if r.stage == 1])
            if winner is None:
                raise CifakeError(
                    f"stage 2 needs stage-1 results in {run_dir}; run --stage 1 (or all) first"
                )
            topologies = stage2(Topology.parse(winner.topology))
            status(f"stage 2 uses the stage-1 winner {winner.topology}")
        if config.topology is not None:
            runner.train(topologies[0])
        else:
            _run_stage(runner, topologies, project=f"stage{topologies[0].stage}")
            _wait_for(run_dir, {t.name for t in topologies})
    if _is_worker():
        results = runner.run.results()
        return SearchOutcome(runner.run, results, best_of(results))
    return finish(runner.run, config, data)


def finish(run: RunFolder, config: SearchConfig, data: TrainingData) -> SearchOutcome:
    """Pick the final model, score kept models on test once, write tables and plots."""
    keras = import_keras()

    from cifake_hub.training import report

    results = run.results()
    best = run.best()
    kept = {RunFolder.kept_key(s): run.kept_model(s) for s in (1, 2) if run.kept_model(s).exists()}
    tmp = run.model.with_name(f".{run.MODEL}.tmp")
    shutil.copyfile(kept[RunFolder.kept_key(best.stage)], tmp)
    os.replace(tmp, run.model)
    test = TestResults(selection=config.selection_note)
    if data.test is not None:
        for key, path in kept.items():
            meta = TopologyResult.from_dict(read_json(path.with_suffix(".json")))
            model = keras.saving.load_model(path)
            test.models[key] = ScoredModel(
                meta.topology, evaluate(model, data.test, config.batch_size)
            )
        test.final = test.models[RunFolder.kept_key(best.stage)]
    atomic_write_text(run.test_path, json_text(test.to_dict()))
    final_model = keras.saving.load_model(run.model)
    eval_split = data.test if data.test is not None else data.validation
    prob = final_model.predict(eval_split.x, batch_size=256, verbose=0).ravel()
    report.write_all(
        run,
        results,
        best,
        eval_split.y,
        prob,
        "test" if data.test is not None else "validation",
    )
    return SearchOutcome(run, results, best, test)
