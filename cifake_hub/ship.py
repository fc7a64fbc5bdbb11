"""Shipping a detector: a run's model (weights and architecture, no optimizer state), its
evaluation and Grad-CAM records and its card, copied into the package as
``cifake_hub/detectors/NAME/``, which every resolver (``--model NAME``, ``load_detector``)
then finds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cifake_hub.cards.detector_card import render_detector_card
from cifake_hub.errors import CifakeError
from cifake_hub.outputs import atomic_write_text, portable_record, read_json
from cifake_hub.shipped import DETECTORS, shipped_folder
from cifake_hub.training.models import load_model
from cifake_hub.training.run_folder import RunFolder

SHIPPED_DATASET = "cifake"  # what `cifake import-kaggle cifake-train.zip --out cifake` makes


def ship_detector(
    run_dir: str | Path,
    name: str,
    retrain: str,
    dataset: str = SHIPPED_DATASET,
    notes: str | None = None,
) -> Path:
    """Copy the run's model (weights and architecture, no optimizer state) and its card into
    the package as the shipped detector ``name``; its records name its training data
    ``dataset``, the folder the ``retrain`` commands make."""
    if name not in DETECTORS:
        raise CifakeError(f"unknown shipped detector {name!r}; the package ships {DETECTORS}")
    run = RunFolder(run_dir)
    card = render_detector_card(run.path, name, retrain, notes)
    model = load_model(run.require_model())
    keras_model = type(model).from_config(model.get_config())
    keras_model.set_weights(model.get_weights())
    folder = shipped_folder(name)
    # Staged beside the package folder and swapped in whole: a failed ship leaves the
    # detector that was there (git-tracked package data) as it was.
    staged = folder.with_name(f".{name}.staging")
    if staged.exists():
        shutil.rmtree(staged)  # a staging folder only this function makes
    staged.mkdir(parents=True)
    keras_model.save(staged / RunFolder.MODEL)
    for file in RunFolder.SHIPPED_FILES:
        if (run.path / file).exists():
            shutil.copy2(run.path / file, staged / file)
    for sub in RunFolder.SHIPPED_DIRS:
        if (run.path / sub).is_dir():
            shutil.copytree(run.path / sub, staged / sub, ignore=shutil.ignore_patterns(".*"))
    # The run's dataset was a local folder; users make theirs with the retrain commands
    # (`cifake import-kaggle cifake-train.zip --out cifake` for most), which is then the
    # default dataset of evaluate/explain.
    # A study's record names its output folder: NAME-study, as the README calls general's.
    names = {"dataset": dataset, "model": name, "out": f"{name}-study"}
    for path in [*staged.glob("*.json"), *staged.glob("*/*.json")]:
        record = portable_record(read_json(path), names)
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    atomic_write_text(staged / RunFolder.CARD, card)
    if folder.exists():
        old = folder.with_name(f".{name}.old")
        folder.rename(old)
        staged.rename(folder)
        shutil.rmtree(old)
    else:
        staged.rename(folder)
    return folder
