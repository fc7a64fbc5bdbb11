"""The detectors shipped inside the package: ``cifake_hub/detectors/NAME/`` holds the model
(``model.keras``, raw RGB uint8 32x32 in, P(REAL) out) and its card (``README.md``).
``robust``, ``strong`` and ``paper`` were trained on the Kaggle CIFAKE train split only,
``general`` on that split's images and this project's own generators' (a mixed dataset);
each card gives the commands that retrain it and what `cifake evaluate` measured on the
validation slice."""

from __future__ import annotations

from pathlib import Path

DETECTORS = ("robust", "strong", "paper", "general")
# What `cifake predict` uses without --model: the one that still catches most fakes of a
# generator it never saw (README, "Shipped detectors", has the numbers behind the choice).
DEFAULT_DETECTOR = "general"
FOLDER = Path(__file__).resolve().parent / "detectors"
# 250 REAL + 250 FAKE Kaggle CIFAKE images per split (data/README.md): the main job's default
# input and the app's examples; from the Kaggle train split, which the detectors trained on.
SAMPLE = Path(__file__).resolve().parent / "data" / "cifake-sample.zip"


def shipped_folder(name: str) -> Path:
    """The folder of the shipped detector ``name`` (one of DETECTORS)."""
    return FOLDER / name
