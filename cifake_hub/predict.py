"""Predict REAL/FAKE for image files with a trained model.

Images of any size are brought to 32x32 the way the training data was made (RGB, bilinear
resize, as the generator does for its renders); unreadable files are reported, never dropped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.config import Config, option
from cifake_hub.errors import CifakeError, ConfigError, InvalidImageError
from cifake_hub.outputs import (
    Replacement,
    atomic_write_text,
    check_replaceable,
    printable,
    writes,
)
from cifake_hub.schema import IMAGE_SIZE, LABEL_NAMES
from cifake_hub.shipped import DEFAULT_DETECTOR, DETECTORS
from cifake_hub.training.models import load_model, resolve_model

OUTPUT_SUFFIXES = (".csv", ".json")
GRADCAM_KIND = "predict-gradcam"
RESIZE_NOTE = "images not 32x32 were resized to 32x32 (RGB, bilinear), as the training data was"


@dataclass
class Prediction:
    path: str
    label: str | None  # None when the file could not be read
    probability_real: float | None
    resized: bool = False
    error: str | None = None
    in_training: bool | None = None  # its pixels are among the detector's training rows


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and every entry of given folders (recursively, in a stable order).

    Nothing found is left out: a file that is not an image (whatever its suffix), a dangling
    or looping link, or a link to a folder (not followed) becomes a row with its error.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            entries = []
            for folder, dirs, files in os.walk(p):
                entries += [Path(folder, d) for d in dirs if Path(folder, d).is_symlink()]
                entries += [Path(folder, f) for f in files]
            if not entries:
                raise CifakeError(f"{p} holds no files; give image files or a folder of images")
            found += sorted(entries)
        elif p.exists() or p.is_symlink():
            found.append(p)
        else:
            raise CifakeError(f"{p} does not exist; give image files or folders")
    return found


def load_image(path: Path) -> tuple[np.ndarray, bool]:
    """(32x32x3 uint8 pixels, whether it had to be resized); InvalidImageError otherwise."""
    from cifake_hub.images import describe_problem, read_regular, read_rgb, resize_to_final

    if path.is_dir():
        raise InvalidImageError(f"{path}: a link to a folder (not followed)")
    try:
        data = read_regular(path)
    except OSError as exc:
        raise InvalidImageError(f"{path}: {describe_problem(exc)}") from exc
    pixels = read_rgb(data, where=str(path))
    resized = pixels.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE)
    return (resize_to_final(pixels) if resized else pixels), resized


def check_output(path: str | Path | None) -> Path | None:
    """Refuse a predictions file we could not write, before any work."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CifakeError(f"--output must end in .csv or .json, got {out.name!r}")
    if out.is_dir():
        raise CifakeError(f"--output {out} is a folder; give a file name ending in .csv or .json")
    if not out.parent.is_dir():
        raise CifakeError(f"--output {out}: folder {out.parent} does not exist; create it first")
    writable = os.access(out.parent, os.W_OK | os.X_OK)
    if not writable or (out.exists() and not os.access(out, os.W_OK)):
        raise CifakeError(
            f"--output {out}: no permission to write there; give a file in a folder you may "
            "write into"
        )
    return out


@dataclass(frozen=True)
class PredictConfig(Config):
    model: str = option(
        DEFAULT_DETECTOR,
        f"shipped detector ({', '.join(DETECTORS)}), run folder, .keras file or Hub model id",
    )
    threshold: float = option(0.5, "P(REAL) at or above which an image is REAL")
    gradcam: str | None = option(None, "write Grad-CAM overlays to this folder", metavar="DIR")
    output: str | None = option(None, "write the table to FILE.csv or FILE.json", metavar="FILE")

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")


def load_detector(spec: str | Path = DEFAULT_DETECTOR) -> Any:
    """The Keras detector ``spec`` names, resolved as ``--model`` is: a shipped detector
    (``general``, ``robust``, ``strong``, ``paper``), a run folder, a ``.keras`` file or a
    Hub model id."""
    return load_model(resolve_model(spec))


def predict_files(
    model: Any, files: list[Path], threshold: float, batch_size: int = 256
) -> tuple[list[Prediction], np.ndarray, list[int]]:
    """Predictions for every file (errors included), the pixels read and their file indices."""
    results: list[Prediction] = []
    pixels, index = [], []
    for i, f in enumerate(files):
        try:
            px, resized = load_image(f)
        except InvalidImageError as exc:
            error = printable(str(exc).removeprefix(f"{f}: "))
            results.append(Prediction(printable(f), None, None, error=error))
            continue
        results.append(Prediction(printable(f), None, None, resized=resized))
        pixels.append(px)
        index.append(i)
    x = np.stack(pixels) if pixels else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    if len(x):
        prob = model.predict(x, batch_size=batch_size, verbose=0).ravel()
        for i, p in zip(index, prob, strict=True):
            results[i].probability_real = float(p)
            results[i].label = LABEL_NAMES[int(p >= threshold)]
    return results, x, index


def mark_training_rows(
    model_path: Path, results: list[Prediction], x: np.ndarray, index: list[int]
) -> None:
    """Flag the images a detector trained on, when it carries its training hashes."""
    from cifake_hub.training.leakage import seen_in_training, training_hashes
    from cifake_hub.training.run_folder import RunFolder

    hashes = training_hashes(model_path.parent) if model_path.name == RunFolder.MODEL else None
    if hashes is None:
        return
    for i, seen in zip(index, seen_in_training(hashes, x), strict=True):
        results[i].in_training = bool(seen)


@dataclass
class PredictOutcome:
    results: list[Prediction]
    gradcam: Path | None = None
    output: Path | None = None

    @property
    def errors(self) -> list[Prediction]:
        return [r for r in self.results if r.error]

    @property
    def seen(self) -> list[Prediction]:
        """Images the detector trained on: its answers on them say nothing about new ones."""
        return [r for r in self.results if r.in_training]


@writes("config.gradcam")
def predict_paths(paths: Iterable[str | Path], config: PredictConfig) -> PredictOutcome:
    """``cifake predict``: every file found gets a row (with its error when unreadable);
    Grad-CAM overlays replace ``config.gradcam`` (an output folder, see cifake_hub.outputs)."""
    out = check_output(config.output)
    gradcam_dir = config.gradcam
    if gradcam_dir is not None:
        check_replaceable(gradcam_dir, GRADCAM_KIND, overwrite=True, what="--gradcam")
    files = find_images(paths)
    model_path = resolve_model(config.model)
    keras_model = load_model(model_path)
    results, x, index = predict_files(keras_model, files, config.threshold)
    mark_training_rows(model_path, results, x, index)
    outcome = PredictOutcome(results)
    if gradcam_dir is not None and len(x):
        from cifake_hub.explain.gradcam import gradcam
        from cifake_hub.explain.render import gallery

        cam = gradcam(keras_model, x)
        captions = [
            f"{Path(r.path).name}: {r.label} P(REAL)={r.probability_real:.2f}"
            for r in (results[i] for i in index)
        ]
        with Replacement(gradcam_dir, GRADCAM_KIND, overwrite=True, what="--gradcam") as staged:
            gallery(x, cam.heatmaps, captions, staged)
        outcome.gradcam = Path(gradcam_dir)
    if out is not None:
        write_predictions(results, out)
        outcome.output = out
    return outcome


def write_predictions(results: list[Prediction], path: Path) -> None:
    rows = [
        {
            "path": r.path,
            "label": r.label,
            "probability_real": r.probability_real,
            "resized": r.resized,
            "error": r.error,
            "in_training": r.in_training,
        }
        for r in results
    ]
    check_output(path)
    if path.suffix.lower() == ".json":
        text = json.dumps({"note": RESIZE_NOTE, "predictions": rows}, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        w = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["path"])
        w.writeheader()
        w.writerows(rows)
        text = buffer.getvalue()
    # The file the user named is theirs to replace; a killed run must not leave half of it.
    atomic_write_text(path, text)
