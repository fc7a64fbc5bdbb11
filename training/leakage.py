"""Which images a detector trained on, carried with it: the 64-bit pixel hashes of its
training rows (``training_hashes.npy`` in the run folder: sorted uint64, 8 bytes a row, 720 kB
for 90,000 rows). A detector shipped or downloaded without its dataset can then say when it is
scored on, or asked about, images it has already seen: its answers on them say nothing about
new images.

A hash is the first 8 bytes of BLAKE2b over the decoded 32x32x3 uint8 pixels, so the same
picture matches whatever file or encoding it came in, once decoded the same way (`read_rgb`).
Two different images share a hash with probability about n / 2**64.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from cifake_hub.training.run_folder import RunFolder


def pixel_hash64(x: np.ndarray) -> np.ndarray:
    """One uint64 per image of ``x`` (N, H, W, C) uint8."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "little")
            for image in np.ascontiguousarray(x, dtype=np.uint8)
        ],
        dtype=np.uint64,
    )


def write_training_hashes(run_dir: str | Path, x: np.ndarray) -> Path:
    """Record the images ``x`` the run's model trained on (replacing an earlier record)."""
    path = Path(run_dir) / RunFolder.TRAINING_HASHES
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, np.unique(pixel_hash64(x)))
    os.replace(tmp, path)
    return path


def training_hashes(run_dir: str | Path) -> np.ndarray | None:
    """The run's recorded training hashes, or None when it has none."""
    path = Path(run_dir) / RunFolder.TRAINING_HASHES
    return np.load(path, allow_pickle=False) if path.is_file() else None


def seen_in_training(hashes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per image of ``x``: whether its pixels are among ``hashes`` (sorted)."""
    if not len(x) or not len(hashes):
        return np.zeros(len(x), dtype=bool)
    mine = pixel_hash64(x)
    at = np.minimum(np.searchsorted(hashes, mine), len(hashes) - 1)
    return np.asarray(hashes[at] == mine)


def record_from_dataset(run_dir: str | Path, dataset: str | Path) -> Path:
    """The training rows of a finished run (its dataset's train split less the validation
    slice its settings carve and the FAKE family it held out), decoded and recorded."""
    from cifake_hub.schema import dataset_generators, generator_families
    from cifake_hub.training.data import (
        carve,
        generator_index,
        labels_and_classes,
        load_splits,
        to_arrays,
    )

    settings = RunFolder(run_dir).config()
    train = load_splits(dataset)["train"]
    label, category = labels_and_classes(train)
    rows, _ = carve(
        label, category, settings["val_fraction"], settings.get("max_train"), settings["seed"]
    )
    if settings.get("hold_out"):
        held = generator_families(dataset_generators(train.features))[settings["hold_out"]]
        rows = rows[~np.isin(generator_index(train)[rows], held)]
    return write_training_hashes(run_dir, to_arrays(train, rows).x)


def overlap(run_dir: str | Path, dataset: str | Path, split: str) -> tuple[int, int] | None:
    """(rows of ``split`` the run's model trained on, rows of the split), or None when the run
    carries no training hashes or the dataset has no such split."""
    from cifake_hub.training.data import load_splits, to_arrays

    hashes = training_hashes(run_dir)
    splits = load_splits(dataset)
    if hashes is None or split not in splits:
        return None
    x = to_arrays(splits[split]).x
    return int(seen_in_training(hashes, x).sum()), len(x)
