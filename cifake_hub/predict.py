"""Predict REAL/FAKE for image files with a trained model.

Images of any size are brought to 32x32 the way the training data was made (RGB, bilinear
resize, as the generator does for its renders); unreadable files are reported, never dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifake_hub.errors import CifakeError
from cifake_hub.schema import IMAGE_SIZE, LABEL_NAMES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
RESIZE_NOTE = "images not 32x32 were resized to 32x32 (RGB, bilinear), as the training data was"


@dataclass
class Prediction:
    path: str
    label: str | None  # None when the file could not be read
    probability_real: float | None
    resized: bool = False
    error: str | None = None


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(files as given and image files in folders, recursively, in a stable order;
    files in those folders left out because their suffix is not an image's)."""
    found: list[Path] = []
    skipped: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            found += [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            skipped += [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        elif p.exists():
            found.append(p)
        else:
            raise CifakeError(f"{p} does not exist; give image files or folders")
    return found, skipped


def load_image(path: Path) -> tuple[np.ndarray, bool]:
    """(32x32x3 uint8 pixels, whether it had to be resized)."""
    from cifake_hub.generate import resize_to_final

    with Image.open(path) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    resized = pixels.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE)
    return (resize_to_final(pixels) if resized else pixels), resized


def resolve_model(spec: str | Path) -> Path:
    """A run folder, a .keras file, or a Hub model repo id -> the .keras file."""
    p = Path(spec)
    from cifake_hub.training.search import FINAL_MODEL

    if p.is_dir() and (p / FINAL_MODEL).exists():
        return p / FINAL_MODEL
    if p.is_file():
        return p
    if p.exists():
        raise CifakeError(
            f"{p} holds no model.keras; give a run folder, a .keras file or a repo id"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(str(spec), allow_patterns=["model.keras", "*.json"]))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise CifakeError(
            f"cannot get model {str(spec)!r} from the Hub ({type(exc).__name__}); "
            "give a run folder or .keras file, or check the repo id, HF_TOKEN and network"
        ) from exc
    if not (folder / "model.keras").exists():
        raise CifakeError(f"Hub repo {spec} has no model.keras")
    return folder / "model.keras"


def predict_files(
    model: Any, files: list[Path], threshold: float = 0.5, batch_size: int = 256
) -> tuple[list[Prediction], np.ndarray, list[int]]:
    """Predictions for every file (errors included), the pixels read and their file indices."""
    if not 0 < threshold < 1:
        raise CifakeError(f"threshold must be in (0, 1), got {threshold}")
    results: list[Prediction] = []
    pixels, index = [], []
    for i, f in enumerate(files):
        try:
            px, resized = load_image(f)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            results.append(
                Prediction(str(f), None, None, error=f"unreadable ({type(exc).__name__}: {exc})")
            )
            continue
        results.append(Prediction(str(f), None, None, resized=resized))
        pixels.append(px)
        index.append(i)
    x = np.stack(pixels) if pixels else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    if len(x):
        prob = model.predict(x, batch_size=batch_size, verbose=0).ravel()
        for i, p in zip(index, prob, strict=True):
            results[i].probability_real = float(p)
            results[i].label = LABEL_NAMES[int(p >= threshold)]
    return results, x, index


def write_predictions(results: list[Prediction], path: Path) -> None:
    rows = [
        {
            "path": r.path,
            "label": r.label,
            "probability_real": r.probability_real,
            "resized": r.resized,
            "error": r.error,
        }
        for r in results
    ]
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"note": RESIZE_NOTE, "predictions": rows}, indent=1) + "\n")
    elif path.suffix.lower() == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["path"])
            w.writeheader()
            w.writerows(rows)
    else:
        raise CifakeError(f"--output must end in .csv or .json, got {path.name}")
