"""The run folder: what `cifake search` writes and every later stage reads, typed.

Layout::

    run_config.json     the search settings (SearchConfig)
    results.jsonl       one TopologyResult per line, appended as each topology finishes
    models/             stage1_best.keras, stage2_best.keras (+ .json: what they scored)
    model.keras         the final model (raw RGB uint8 32x32 in, P(REAL) out)
    test_results.json   TestResults: the kept models scored once on the test split
    tables/ plots/      the paper's Tables 2-11, heatmaps, curves, confusion matrix
    gradcam/            `cifake explain`: figure6.png, gallery/, heatmaps.npz, summary.json
    README.md           the model card
    .cifake-output.json the marker: cifake wrote this folder

Every file name of the folder is written here only; stages ask a :class:`RunFolder`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from cifake_hub.config import Config
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.outputs import OutputFolder, claim, read_json
from cifake_hub.training.data import DataOptions

Metrics = dict[str, Any]  # metric name -> value (None where undefined), as binary_metrics
R = TypeVar("R")


def _record(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON record; optional parts that are absent are left out."""
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}


def from_record(cls: type[R], record: dict[str, Any]) -> R:
    """``cls`` from a JSON record, ignoring keys it does not know (records of newer runs)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in record.items() if k in names})


@dataclass
class TopologyResult:
    """One trained topology, as one line of ``results.jsonl``."""

    topology: str
    stage: int
    conv_filters: int
    conv_layers: int
    dense_units: int
    dense_layers: int
    params: int
    train_seconds: float
    epochs_run: int
    train_images: int
    validation_images: int
    train_images_per_second: float
    epoch_seconds: list[float]
    history: dict[str, list[float]]
    validation: Metrics
    selected_on: str  # "validation", or "test" under the paper's protocol
    test: Metrics | None = None

    @property
    def selected(self) -> Metrics:
        """The metrics on the split this run selects models on."""
        metrics = self.test if self.selected_on == "test" else self.validation
        if metrics is None:
            raise CifakeError(f"{self.topology} has no {self.selected_on} metrics")
        return metrics

    @property
    def selection_loss(self) -> float:
        loss = self.selected["loss"]
        # A diverged model's NaN loss is stored as null: it must never be selected.
        return math.inf if loss is None or not math.isfinite(loss) else float(loss)

    def to_dict(self) -> dict[str, Any]:
        return _record(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TopologyResult:
        return from_record(cls, record)


def best_of(results: list[TopologyResult]) -> TopologyResult | None:
    """The lowest selection loss (ties: the first topology by name)."""
    return min(results, key=lambda r: (r.selection_loss, r.topology), default=None)


@dataclass
class RecipeResult:
    """``recipe_result.json``: the model `cifake train` made by a recipe."""

    recipe: str
    params: int
    train_seconds: float
    epochs_run: int
    best_epoch: int  # the epoch kept (lowest validation loss), 1-based
    train_images: int
    validation_images: int
    train_images_per_second: float
    epoch_seconds: list[float]
    history: dict[str, list[float]]
    validation: Metrics
    precision: str = "float32"  # mixed_float16 when trained on a GPU
    epoch_images: int | None = None  # images per epoch (a balanced epoch is not the train rows)
    # FAKE training rows per generator (None: the dataset has no generator column).
    train_generators: dict[str, int] | None = None
    # With a family held out (`--hold-out`): which, its rows, and why the kept epoch was kept.
    selection: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _record(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RecipeResult:
        return from_record(cls, record)


@dataclass
class ScoredModel:
    topology: str
    metrics: Metrics


@dataclass
class TestResults:
    """``test_results.json``: the kept models scored once on the test split, at the end."""

    selection: str  # how models were selected, in words
    models: dict[str, ScoredModel] = field(default_factory=dict)  # stage1_best, stage2_best
    final: ScoredModel | None = None  # None when the dataset has no test split

    @property
    def selection_sentence(self) -> str:
        return self.selection[0].upper() + self.selection[1:] + "."

    def to_dict(self) -> dict[str, Any]:
        return _record(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TestResults:
        final = record.get("final")
        return cls(
            selection=record["selection"],
            models={k: ScoredModel(**v) for k, v in record.get("models", {}).items()},
            final=ScoredModel(final["topology"], final["metrics"]) if final else None,
        )


class RunFolder(OutputFolder):
    """A run folder at ``path`` (which may not exist yet)."""

    KIND = "run"
    WHAT = "run folder"
    CONFIG: ClassVar[str] = "run_config.json"
    RESULTS: ClassVar[str] = "results.jsonl"
    TEST: ClassVar[str] = "test_results.json"
    MODELS: ClassVar[str] = "models"
    MODEL: ClassVar[str] = "model.keras"
    TABLES: ClassVar[str] = "tables"
    PLOTS: ClassVar[str] = "plots"
    GRADCAM: ClassVar[str] = "gradcam"
    EVALUATION: ClassVar[str] = "evaluation"  # `cifake evaluate`
    CARD: ClassVar[str] = "README.md"
    TUNER: ClassVar[str] = "tuner"  # KerasTuner's oracle state (what makes a search resumable)
    # `cifake train`: the recipe run's result, and its per-epoch resume point.
    RECIPE_RESULT: ClassVar[str] = "recipe_result.json"
    CHECKPOINTS: ClassVar[str] = "checkpoints"
    LAST: ClassVar[str] = "last.keras"
    STATE: ClassVar[str] = "state.json"
    BEST: ClassVar[str] = "best.keras"
    # Inside tables/, plots/ and gradcam/.
    TABLES_MD: ClassVar[str] = "tables.md"
    GRADCAM_KIND: ClassVar[str] = "gradcam"
    GRADCAM_SUMMARY: ClassVar[str] = "summary.json"
    GRADCAM_CONFIG: ClassVar[str] = "explain_config.json"
    FIGURE6: ClassVar[str] = "figure6.png"
    HEATMAPS: ClassVar[str] = "heatmaps.npz"
    GALLERY: ClassVar[str] = "gallery"
    SANITY_PLOT: ClassVar[str] = "sanity.png"
    ROAD_PLOT: ClassVar[str] = "road.png"
    STUDY: ClassVar[str] = "study.json"  # `cifake study`: the cross-generator record
    STUDY_PLOT: ClassVar[str] = "study_matrix.png"
    # bench/general_ablation.py's record: what made the recipe generalise (shipped `general`).
    ABLATION: ClassVar[str] = "ablation.json"
    # The rows the model trained on, as sorted 64-bit pixel hashes (training/leakage.py).
    TRAINING_HASHES: ClassVar[str] = "training_hashes.npy"
    # What goes to the model repo next to the model and its card.
    PUBLISHED_FILES: ClassVar[tuple[str, ...]] = (
        CONFIG, RESULTS, TEST, STUDY, STUDY_PLOT, TRAINING_HASHES, ABLATION
    )  # fmt: skip
    PUBLISHED_DIRS: ClassVar[tuple[str, ...]] = (TABLES, PLOTS, GRADCAM, EVALUATION)
    EVALUATION_REPORT: ClassVar[str] = "evaluation.json"
    # What a shipped detector keeps of its run (cifake_hub/detectors/NAME/): the records a
    # model card, `evaluate`, `explain` and `cifake-publish --run NAME` read.
    SHIPPED_FILES: ClassVar[tuple[str, ...]] = (
        CONFIG, RESULTS, RECIPE_RESULT, TEST, TRAINING_HASHES, STUDY, STUDY_PLOT, ABLATION
    )  # fmt: skip
    SHIPPED_DIRS: ClassVar[tuple[str, ...]] = (TABLES, PLOTS, EVALUATION)

    # -- paths ----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def results_path(self) -> Path:
        return self.path / self.RESULTS

    @property
    def test_path(self) -> Path:
        return self.path / self.TEST

    @property
    def models_dir(self) -> Path:
        return self.path / self.MODELS

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def tables_dir(self) -> Path:
        return self.path / self.TABLES

    @property
    def plots_dir(self) -> Path:
        return self.path / self.PLOTS

    @property
    def gradcam_dir(self) -> Path:
        return self.path / self.GRADCAM

    @property
    def card(self) -> Path:
        return self.path / self.CARD

    @property
    def tuner_dir(self) -> Path:
        return self.path / self.TUNER

    @property
    def recipe_result_path(self) -> Path:
        return self.path / self.RECIPE_RESULT

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / self.LAST

    @property
    def train_state_path(self) -> Path:
        return self.checkpoints_dir / self.STATE

    @property
    def best_checkpoint(self) -> Path:
        return self.models_dir / self.BEST

    @property
    def figure6(self) -> Path:
        return self.gradcam_dir / self.FIGURE6

    def kept_model(self, stage: int) -> Path:
        """The best model of a stage (``models/stage{N}_best.keras``)."""
        return self.models_dir / f"{self.kept_key(stage)}.keras"

    @staticmethod
    def kept_key(stage: int) -> str:
        return f"stage{stage}_best"

    # -- contents -------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.config_path.exists()

    def require_model(self) -> Path:
        if not self.model.exists():
            raise CifakeError(
                f"{self.model} does not exist; finish `cifake search` into {self.path} first"
            )
        return self.model

    @classmethod
    def start(cls, run_dir: Path, config: Config) -> RunFolder:
        """Claim ``run_dir`` and save the run's config there, or check it matches the config of
        the run being resumed."""
        run = cls(claim(run_dir, cls.KIND))
        path = run.config_path
        if not path.exists():
            config.save(path)
            return run
        previous = read_json(path)
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
        return run

    def config(self) -> dict[str, Any]:
        """The saved search settings (``SearchConfig.load`` gives the typed object)."""
        if not self.config_path.exists():
            raise CifakeError(
                f"{self.path} is not a run folder (no {self.CONFIG}); run `cifake search` first"
            )
        record: dict[str, Any] = read_json(self.config_path)
        record.pop("type", None)
        return record

    def data_options(self) -> DataOptions:
        """The options the run carved its train and validation rows with."""
        return from_record(DataOptions, self.config())

    def validation_rows(self, label: np.ndarray, category: np.ndarray) -> np.ndarray:
        """The run's validation slice of a train split: rows its model was not trained on."""
        return self.data_options().carve(label, category)[1]

    def results(self) -> list[TopologyResult]:
        if not self.results_path.exists():
            return []
        results = []
        for line in self.results_path.read_text().splitlines():
            # A line cut short by a kill is ignored: that topology simply runs again.
            try:
                results.append(TopologyResult.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
        return results

    def best(self) -> TopologyResult:
        best = best_of(self.results())
        if best is None:
            raise CifakeError(f"{self.path} has no finished topology")
        return best

    def test_results(self) -> TestResults:
        if not self.test_path.exists():
            raise CifakeError(f"{self.test_path} is missing; finish the search first")
        return TestResults.from_dict(read_json(self.test_path))

    def evaluation(self) -> dict[str, Any] | None:
        """The report of `cifake evaluate` (cifake_hub.evaluate.run), when there is one."""
        path = self.path / self.EVALUATION / self.EVALUATION_REPORT
        return read_json(path) if path.exists() else None

    def study(self) -> dict[str, Any] | None:
        """The record of the `cifake study` this run's detector is part of, if any."""
        path = self.path / self.STUDY
        return read_json(path) if path.exists() else None

    def gradcam_summary(self) -> dict[str, Any] | None:
        """`cifake explain`'s summary as written (typed: ``explain.summary.GradcamSummary``)."""
        path = self.gradcam_dir / self.GRADCAM_SUMMARY
        return read_json(path) if path.exists() else None
