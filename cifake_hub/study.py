"""`cifake study DATASET --out DIR`: does a detector still work on a generator it never saw?

On a dataset with several generators (its ``generator`` column), one detector per generator
is trained on that generator's FAKE train rows and as many REAL train rows (a stratified
sample), then scored on every generator's test rows: its FAKE test rows against as many REAL
test rows (a stratified sample, the same for every detector). That is the train x test
matrix of accuracy and ROC AUC. With three generators or more, one more detector per
generator is trained on all the others: its score on the one left out is the
leave-one-generator-out result (with two, that is the matrix's off-diagonal already).

The study folder (resumable: every detector is a run folder that resumes, and a finished one
is not trained again)::

    study_config.json, study.json   the settings; every score, and what each detector saw
    matrix.csv, matrix.png          the matrix (one line per detector and test generator)
    README.md                       the table and how it was made
    runs/<detector>/                a run folder per detector; its model card has the table

When DATASET is a dataset folder cifake wrote, the study's record goes into it too and its
card is rendered again with the table.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.config import option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import ConfigError, DatasetFolderError
from cifake_hub.outputs import (
    OutputFolder,
    atomic_write_text,
    claim,
    json_text,
    read_marker,
    record_file,
    writes,
)
from cifake_hub.schema import (
    FAKE,
    REAL,
    dataset_generators,
    generator_families,
    generator_family,
)
from cifake_hub.training.data import DataOptions
from cifake_hub.training.recipes import RECIPES
from cifake_hub.training.run_folder import RunFolder

PAPER = "paper"  # the paper's final topology, trained by `cifake search --topology`


@dataclass(frozen=True)
class StudyConfig(DataOptions):
    dataset: str = option(
        help="dataset folder or Hub id whose FAKE rows come from two generators or more",
        positional=True,
    )
    out: str = option(help="study folder (created; resumed if it exists)")
    recipe: str = option(
        PAPER,
        "detector: 'paper' (the paper's final topology) or a `cifake train` recipe",
        choices=lambda: (PAPER, *sorted(RECIPES)),
    )
    epochs: int | None = option(None, "epochs per detector (default: the recipe's; paper: 10)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.recipe != PAPER and self.recipe not in RECIPES:
            raise ConfigError(
                f"unknown detector {self.recipe!r}; choose {PAPER} or one of {sorted(RECIPES)}"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")


class StudyFolder(OutputFolder):
    KIND = "study"
    WHAT = "study folder"
    CONFIG = "study_config.json"
    RECORD = RunFolder.STUDY
    MATRIX_CSV = "matrix.csv"
    MATRIX_PLOT = "matrix.png"
    CARD = "README.md"
    RUNS = "runs"


@dataclass(frozen=True)
class Detector:
    name: str  # its run folder under runs/
    trained_on: tuple[int, ...]  # generator indices
    # For leave-one-family-out: the first generator of the family it never saw (the others
    # of that family, aligned twins, are left out with it).
    left_out: int | None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[-40:]


def detectors(names: tuple[str, ...], left_out_only: bool = False) -> list[Detector]:
    """One per generator (unless ``left_out_only``); with three families or more, one per
    left-out family too (trained on every other family)."""
    out = (
        []
        if left_out_only
        else [Detector(f"only-{g}-{_slug(n)}", (g,), None) for g, n in enumerate(names)]
    )
    groups = generator_families(names)
    if len(groups) >= 3:
        everyone = range(len(names))
        out += [
            Detector(
                f"without-{ids[0]}-{_slug(f)}", tuple(h for h in everyone if h not in ids), ids[0]
            )
            for f, ids in groups.items()
        ]
    return out


@dataclass
class StudyOutcome:
    out: Path
    record: dict[str, Any]


@writes("config.out", finishes=StudyFolder.KIND)
def run_study(
    config: StudyConfig,
    progress: Any | None = None,
    say: Callable[[str], None] | None = None,
) -> StudyOutcome:
    """The study into ``config.out`` (see the module docstring); ``progress`` is a training
    :class:`~cifake_hub.training.search.Progress` shared by every detector."""
    from cifake_hub.training.data import labels_and_classes, load_splits, to_arrays

    say = say or (lambda _msg: None)
    splits = load_splits(config.dataset)
    names = dataset_generators(splits["train"].features)
    used, train_gen, test_gen = _generators_in_both(config, splits, names)
    folder = StudyFolder(claim(config.out, StudyFolder.KIND))
    config.save(folder.file(StudyFolder.CONFIG))

    train = splits["train"]
    labels, classes = labels_and_classes(train)
    say("decoding the test split")
    test = to_arrays(splits["test"])
    test_sets = _test_sets(test.y, test.category, test_gen, used, config.seed)

    scores, trained = [], []
    plan = _plan(config, names, used)
    for i, det in enumerate(plan, 1):
        rows = _train_rows(labels, classes, train_gen, det.trained_on, config.seed)
        what = " + ".join(names[g] for g in det.trained_on)
        say(f"detector {i}/{len(plan)}: {det.name}, trained on {what} ({len(rows):,} rows)")
        run = RunFolder(folder.path / StudyFolder.RUNS / det.name)
        _train(config, run, train.select(rows), progress, say)
        prob = _predict(run, test.x)
        record, chosen_on = _detector_record(det, names, run, len(rows))
        trained.append(record)
        for g, (fake, real) in test_sets.items():
            role = "selection" if g in chosen_on else "trained" if g in det.trained_on else "unseen"
            scores.append(_score(det, names, g, role, fake, real, test.y, prob))

    record = {
        "dataset": str(config.dataset),
        "generators": [names[g] for g in used],
        "detector": config.recipe,
        "config": config.to_dict(),
        "detectors": trained,
        "test_rows": {
            names[g]: {"fake": int(len(f)), "real": int(len(r))} for g, (f, r) in test_sets.items()
        },
        "scores": scores,
        "summary": _summary(scores),
    }
    _write(folder, record)
    _attach(folder, record, config, say)
    return StudyOutcome(folder.path, record)


def _plan(config: StudyConfig, names: tuple[str, ...], used: list[int]) -> list[Detector]:
    """The detectors to train; a recipe that chooses its epoch on an unseen family (general)
    makes the leave-one-family-out ones only: each leaves one family out and holds another
    out of training to choose its epoch on."""
    unseen = config.recipe != PAPER and RECIPES[config.recipe].select_unseen
    in_use = tuple(names[g] for g in used)
    if unseen and len(generator_families(in_use)) < 3:
        raise ConfigError(
            f"recipe {config.recipe!r} needs three generator families or more in "
            f"{config.dataset} (one left out, one to choose the epoch on, the rest to train "
            f"on); it has {', '.join(generator_families(in_use))}"
        )
    return [d for d in detectors(names, left_out_only=unseen) if set(d.trained_on) <= set(used)]


def _detector_record(
    det: Detector, names: tuple[str, ...], run: RunFolder, rows: int
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """(what the study records of a trained detector, the generators it held out of training
    to choose its epoch on: recipe_result.json says which)."""
    from cifake_hub.outputs import read_json

    chosen = None
    if run.recipe_result_path.exists():
        chosen = read_json(run.recipe_result_path).get("selection")
    chosen_on = tuple(names.index(n) for n in chosen["generators"]) if chosen else ()
    record = {
        "name": det.name,
        "trained_on": [names[g] for g in det.trained_on if g not in chosen_on],
        "left_out": None if det.left_out is None else generator_family(names[det.left_out]),
        "selected_on": chosen["family"] if chosen else None,
        "run": f"{StudyFolder.RUNS}/{det.name}",
        "train_rows": rows,
    }
    return record, chosen_on


def _generators_in_both(
    config: StudyConfig, splits: Any, names: tuple[str, ...]
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(the generators with FAKE rows in train and in test, each train row's generator, each
    test row's), refusing a dataset a study cannot compare on."""
    from cifake_hub.training.data import generator_index

    missing = [s for s in ("train", "test") if s not in splits]
    if missing:
        raise DatasetFolderError(
            f"{config.dataset} has no {missing[0]!r} split; a study needs train and test"
        )
    train_gen, test_gen = (generator_index(splits[s]) for s in ("train", "test"))
    used = sorted(set(train_gen[train_gen >= 0].tolist()) & set(test_gen[test_gen >= 0].tolist()))
    if len(used) < 2:
        raise ConfigError(
            f"{config.dataset} has FAKE train and test rows of {len(used)} generator(s) "
            f"({', '.join(names) or 'no generator column'}); a study needs two or more: build "
            "one with `cifake build --generator A --generator B`"
        )
    return used, train_gen, test_gen


def _train_rows(
    labels: np.ndarray, classes: np.ndarray, gen: np.ndarray, trained_on: tuple[int, ...], seed: int
) -> np.ndarray:
    """The FAKE train rows of ``trained_on`` and as many REAL rows (stratified by class)."""
    from cifake_hub.training.data import stratified_subset

    fake = np.flatnonzero((labels == FAKE) & np.isin(gen, trained_on))
    real = np.flatnonzero(labels == REAL)
    real = real[stratified_subset(labels[real], classes[real], len(fake), seed)]
    return np.sort(np.concatenate([fake, real]))


def _test_sets(
    y: np.ndarray, category: np.ndarray, gen: np.ndarray, used: list[int], seed: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per generator: its FAKE test rows, and as many REAL test rows (stratified by class)."""
    from cifake_hub.training.data import stratified_subset

    real = np.flatnonzero(y == REAL)
    out = {}
    for g in used:
        fake = np.flatnonzero((y == FAKE) & (gen == g))
        out[g] = (fake, real[stratified_subset(y[real], category[real], len(fake), seed)])
    return out


def _train(
    config: StudyConfig, run: RunFolder, rows: Any, progress: Any, say: Callable[[str], None]
) -> None:
    import datasets

    if run.model.exists():
        say(f"{run.path.name}: trained already")
        return
    data = datasets.DatasetDict({"train": rows})
    common = {**config.data_options.to_dict(), "dataset": str(config.dataset)}
    if config.recipe == PAPER:
        from cifake_hub.training.search import SearchConfig, run_search
        from cifake_hub.training.topology import PAPER_FINAL

        search = SearchConfig(topology=PAPER_FINAL, **common)
        if config.epochs:
            search = dataclasses.replace(search, epochs=config.epochs)
        run_search(data, run.path, search, progress, say=say)
    else:
        from cifake_hub.training.train import TrainConfig, run_training

        recipe = TrainConfig(recipe=config.recipe, epochs=config.epochs, **common)
        run_training(data, run.path, recipe, progress, say=say)


def _predict(run: RunFolder, x: np.ndarray) -> np.ndarray:
    from cifake_hub.training.models import load_model

    model = load_model(run.model)
    return np.asarray(model.predict(x, batch_size=1024, verbose=0), dtype=np.float64)[:, 0]


BOOTSTRAP = 1000  # resamples for each cell's 95% interval


def _score(
    det: Detector,
    names: tuple[str, ...],
    g: int,
    role: str,
    fake: np.ndarray,
    real: np.ndarray,
    y: np.ndarray,
    prob: np.ndarray,
) -> dict[str, Any]:
    from cifake_hub.evaluate.calibration import bootstrap
    from cifake_hub.training.metrics import binary_metrics

    rows = np.concatenate([fake, real])
    m = binary_metrics(y[rows], prob[rows])
    low, high = bootstrap(y[rows], prob[rows], BOOTSTRAP, seed=g)["roc_auc"]
    return {
        "detector": det.name,
        "trained_on": " + ".join(names[h] for h in det.trained_on),
        "tested_on": names[g],
        "seen": role == "trained",
        "role": role,
        "accuracy": m["accuracy"],
        "roc_auc": m["roc_auc"],
        "roc_auc_low": low,
        "roc_auc_high": high,
        "recall_fake": float(np.mean(prob[fake] < 0.5)),
        "fake_rows": int(len(fake)),
        "real_rows": int(len(real)),
    }


def _summary(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean accuracy and AUC on generators the detectors saw in training and on those they
    never saw (a family held out to choose the epoch on counts as neither)."""
    out: dict[str, Any] = {}
    for key in ("seen", "unseen"):
        part = [s for s in scores if s["role"] == ("trained" if key == "seen" else "unseen")]
        for metric in ("accuracy", "roc_auc"):
            values = [s[metric] for s in part if s[metric] is not None]
            out[f"{key}_{metric}"] = float(np.mean(values)) if values else None
    return out


MATRIX_FIELDS = (
    "detector",
    "trained_on",
    "tested_on",
    "seen",
    "role",
    "accuracy",
    "roc_auc",
    "roc_auc_low",
    "roc_auc_high",
    "recall_fake",
    "fake_rows",
    "real_rows",
)


def _write(folder: StudyFolder, record: dict[str, Any]) -> None:
    from cifake_hub.cards.study_card import study_card

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MATRIX_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(record["scores"])
    atomic_write_text(folder.file(StudyFolder.MATRIX_CSV), text.getvalue())
    plot_matrix(record, folder.file(StudyFolder.MATRIX_PLOT))
    atomic_write_text(folder.file(StudyFolder.RECORD), json_text(record))
    atomic_write_text(folder.file(StudyFolder.CARD), study_card(record))


def plot_matrix(record: dict[str, Any], path: Path) -> Path:
    """Heatmaps of accuracy and ROC AUC: one row per detector, one column per test generator."""
    from cifake_hub.plotting import annotated_heatmap, pyplot, save_figure

    tests = record["generators"]
    dets = [d["name"] for d in record["detectors"]]
    cell = {(s["detector"], s["tested_on"]): s for s in record["scores"]}
    plt = pyplot()
    fig, axes = plt.subplots(
        1, 2, figsize=(3.0 + 2.4 * len(tests), 1.4 + 0.45 * len(dets)), squeeze=False
    )
    for ax, (metric, title) in zip(
        axes[0], (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")), strict=True
    ):
        grid = np.array([[_or_nan(cell[(d, t)][metric]) for t in tests] for d in dets], dtype=float)
        annotated_heatmap(ax, grid, lambda v: f"{v:.3f}", vmin=0.5, vmax=1.0)
        ax.set_xticks(range(len(tests)), tests, rotation=20, ha="right", fontsize=8)
        ax.set_yticks(range(len(dets)), dets, fontsize=8)
        ax.set_xlabel("tested on (FAKE from)")
        ax.set_title(f"Cross-generator {title}", fontsize=9)
    axes[0][0].set_ylabel("detector")
    return save_figure(fig, path)


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def _attach(
    folder: StudyFolder, record: dict[str, Any], config: StudyConfig, say: Callable[[str], None]
) -> None:
    """The study's record and table into each detector's run folder (its model card) and,
    when the dataset is a folder cifake wrote, into the dataset folder and its card."""
    from cifake_hub.cards.dataset_card import write_dataset_card
    from cifake_hub.cards.model_card import write_model_card

    for det in record["detectors"]:
        run = RunFolder(folder.path / det["run"])
        atomic_write_text(run.file(RunFolder.STUDY), json_text(record))
        shutil.copyfile(folder.file(StudyFolder.MATRIX_PLOT), run.file(RunFolder.STUDY_PLOT))
        for name in (RunFolder.STUDY, RunFolder.STUDY_PLOT):
            record_file(run.path, name)
        write_model_card(run.path)
    dataset = DatasetFolder(config.dataset)
    marker = read_marker(dataset.path)
    if dataset.exists() and marker is not None and marker["kind"] == DatasetFolder.KIND:
        atomic_write_text(dataset.file(DatasetFolder.STUDY), json_text(record))
        record_file(dataset.path, DatasetFolder.STUDY)
        write_dataset_card(dataset.path)
        say(f"the study's table is in {dataset.card}")
    else:
        say(f"{config.dataset} is not a dataset folder cifake wrote: its card is left as it is")
