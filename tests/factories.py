"""Small data in the real formats, written by the tests."""

from __future__ import annotations

import io
import os
import pickle
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cifake_hub.schema import CLASS_NAMES


def jpeg_bytes(pixels: np.ndarray, quality: int = 75) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def random_pixels(rng: np.random.Generator, size: int = 32, channels: int = 3) -> np.ndarray:
    shape = (size, size, channels) if channels > 1 else (size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def kaggle_name(index: int, category: int) -> str:
    return f"{index:04d}.jpg" if category == 0 else f"{index:04d} ({category + 1}).jpg"


@dataclass
class KaggleFixture:
    path: Path
    files: dict[str, bytes]  # every file in the archive, by path
    valid: dict[str, bytes]  # files that must end up as rows (before dedupe)
    invalid: dict[str, str] = field(default_factory=dict)  # path -> expected problem prefix
    # (later copy, first copy) pairs, in import order (train before test, FAKE before REAL)
    duplicates: list[tuple[str, str]] = field(default_factory=list)


def make_kaggle_files(per_class: int = 2, top: str = "", seed: int = 0) -> KaggleFixture:
    """``per_class`` images per split/label/class, plus planted duplicates and bad files."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    for split in ("train", "test"):
        for label in ("FAKE", "REAL"):
            for c in range(len(CLASS_NAMES)):
                for i in range(per_class):
                    files[f"{top}{split}/{label}/{kaggle_name(i, c)}"] = jpeg_bytes(
                        random_pixels(rng)
                    )
    fx = KaggleFixture(path=Path(), files=files, valid=dict(files))
    # Inside train FAKE (class bird) and across splits (test FAKE cat copies train FAKE cat).
    for later, first in (
        (f"{top}train/FAKE/{kaggle_name(per_class, 2)}", f"{top}train/FAKE/{kaggle_name(0, 2)}"),
        (f"{top}test/FAKE/{kaggle_name(per_class, 3)}", f"{top}train/FAKE/{kaggle_name(1, 3)}"),
    ):
        files[later] = fx.valid[later] = files[first]
        fx.duplicates.append((later, first))
    bad = {
        f"{top}train/REAL/{kaggle_name(per_class, 5)}": (
            b"\xff\xd8\xff\xe0 not really a jpeg",
            "unreadable",
        ),
        f"{top}train/REAL/{kaggle_name(per_class, 6)}": (
            jpeg_bytes(random_pixels(rng, 64)),
            "not 32x32",
        ),
        f"{top}test/REAL/{kaggle_name(per_class, 7)}": (
            png_bytes(random_pixels(rng, 32, 1)),
            "not RGB",
        ),
    }
    for name, (data, problem) in bad.items():
        files[name] = data
        fx.invalid[name] = problem
    return fx


def make_kaggle_zip(path: Path, **kwargs: object) -> KaggleFixture:
    fx = make_kaggle_files(**kwargs)  # type: ignore[arg-type]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in fx.files.items():
            z.writestr(name, data)
    fx.path = path
    return fx


def make_kaggle_folder(root: Path, **kwargs: object) -> KaggleFixture:
    fx = make_kaggle_files(**kwargs)  # type: ignore[arg-type]
    for name, data in fx.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    fx.path = root
    return fx


@dataclass
class CifarFixture:
    path: Path
    train: tuple[np.ndarray, list[int]]  # (N, 32, 32, 3) pixels, labels
    test: tuple[np.ndarray, list[int]]


def make_cifar_tar(path: Path, per_batch: int = 20, seed: int = 0) -> CifarFixture:
    """The official layout: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    rng = np.random.default_rng(seed)
    batches: dict[str, tuple[np.ndarray, list[int]]] = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % len(CLASS_NAMES) for i in range(per_batch)]
        pixels = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        batches[name] = (pixels, labels)
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, obj: object) -> None:
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name, (pixels, labels) in batches.items():
            flat = pixels.transpose(0, 3, 1, 2).reshape(len(labels), 3072)
            add(
                name,
                {
                    b"batch_label": name.encode(),
                    b"labels": labels,
                    b"data": flat,
                    b"filenames": [f"{name}_{i}.png".encode() for i in range(len(labels))],
                },
            )
        add("batches.meta", {b"label_names": [n.encode() for n in CLASS_NAMES]})
    train_px = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    return CifarFixture(path=path, train=(train_px, train_labels), test=batches["test_batch"])


def learnable_pixels(rng: np.random.Generator, label: int) -> np.ndarray:
    """REAL: smooth colour fields; FAKE: the same with a fine checkerboard texture, the kind
    of high-frequency trace a small CNN learns to spot."""
    base = rng.integers(40, 200, (4, 4, 3)).astype(np.float32)
    img = np.kron(base, np.ones((8, 8, 1), dtype=np.float32))
    if label == 0:
        checker = (np.indices((32, 32)).sum(0) % 2)[..., None] * 2 - 1
        img = img + 30 * checker
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def make_cifake_folder(
    out: Path, per_class_train: int = 10, per_class_test: int = 2, seed: int = 0
) -> Path:
    """A small CIFAKE dataset folder (PNG images, both labels, all classes, both splits)."""
    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.schema import make_row

    rng = np.random.default_rng(seed)
    with DatasetFolderWriter(out) as writer:
        for split, n in (("train", per_class_train), ("test", per_class_test)):
            for label in (0, 1):
                for c in range(len(CLASS_NAMES)):
                    for i in range(n):
                        data = png_bytes(learnable_pixels(rng, label))
                        writer.add(split, make_row(data, label, c, source="test", source_index=i))
        writer.close()
    return out


def topology_result(
    conv_filters: int,
    conv_layers: int,
    dense_units: int = 0,
    dense_layers: int = 0,
    *,
    validation: dict[str, Any],
) -> Any:
    """A TopologyResult with fixed training numbers (no training)."""
    from cifake_hub.training.run_folder import TopologyResult
    from cifake_hub.training.topology import Topology

    t = Topology(conv_filters, conv_layers, dense_units, dense_layers)
    return TopologyResult(
        topology=t.name,
        stage=t.stage,
        conv_filters=conv_filters,
        conv_layers=conv_layers,
        dense_units=dense_units,
        dense_layers=dense_layers,
        params=84001,
        train_seconds=12.5,
        epochs_run=4,
        train_images=1800,
        validation_images=200,
        train_images_per_second=576.0,
        epoch_seconds=[3.0] * 4,
        history={
            "loss": [0.4, 0.3, 0.25, 0.2],
            "val_loss": [0.35, 0.3, 0.28, 0.29],
            "accuracy": [0.8, 0.88, 0.9, 0.92],
            "val_accuracy": [0.82, 0.87, 0.9, 0.9],
        },
        validation=validation,
        selected_on="validation",
    )


def make_fixture_run(run_dir: Path) -> Path:
    """A finished run folder with fixed numbers (no training): 12 stage-1 topologies, 3 of
    stage 2, test results and a Grad-CAM summary. For card tests against a reviewed file."""
    import json

    from cifake_hub.outputs import claim
    from cifake_hub.training.report import write_tables
    from cifake_hub.training.run_folder import RunFolder, ScoredModel, TestResults, best_of
    from cifake_hub.training.search import SearchConfig

    run = RunFolder(claim(run_dir, RunFolder.KIND))
    SearchConfig(epochs=5, dataset="user/cifake").save(run.config_path)

    def metrics(seed: int) -> dict[str, float]:
        acc = 0.90 + (seed % 7) / 200
        return {
            "loss": round(0.30 - (seed % 7) / 50, 4),
            "accuracy": acc,
            "precision": acc - 0.01,
            "recall": acc + 0.01,
            "f1": acc,
            "roc_auc": acc + 0.05,
            "average_precision": acc + 0.04,
            "tp": 900 + seed,
            "fp": 100 - seed,
            "tn": 910 - seed,
            "fn": 90 + seed,
        }

    results = [
        topology_result(f, n, validation=metrics({4: 6, 6: 4}.get(i, i)))  # conv=32x2 wins
        for i, (f, n) in enumerate((f, n) for f in (16, 32, 64, 128) for n in (1, 2, 3))
    ]
    results += [
        topology_result(32, 2, u, n, validation=metrics(21 + j))
        for j, (u, n) in enumerate(((32, 1), (64, 1), (64, 2)))
    ]
    results[-2].validation["loss"] = 0.17  # the paper's final choice wins stage 2
    run.results_path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in results))
    best = best_of(results)
    assert best is not None
    selection = (
        "models were selected on a validation split (10% of train, stratified by label "
        "and class); the test split was scored once, at the end"
    )
    final = ScoredModel(best.topology, metrics(40))
    test = TestResults(selection, {RunFolder.kept_key(2): final}, final)
    run.test_path.write_text(json.dumps(test.to_dict(), indent=1))
    run.gradcam_dir.mkdir(exist_ok=True)
    (run.gradcam_dir / RunFolder.GRADCAM_SUMMARY).write_text(
        json.dumps(
            {
                "config": {"split": "test"},
                "split": "test",
                "layer": "conv_2",
                "images": 200,
                "accuracy_on_sample": 0.9,
                "figure6": f"{RunFolder.GRADCAM}/{RunFolder.FIGURE6}",
                "faithfulness": {
                    "images": 200,
                    "fraction": 0.1,
                    "pixels_masked": 102,
                    "mean_drop_gradcam": 0.2468,
                    "mean_drop_random": 0.0312,
                },
            }
        )
    )
    write_tables(run, results)
    return run_dir


# Builds in tests use one thread: torchrun sets OMP_NUM_THREADS=1, and CPU kernels round
# differently with other thread counts ("same hardware" includes the thread count).
BUILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# The shared test build mixes two pipeline families, 2:1 in every class and split.
MIX = ("tiny:2", "tiny-sdxl:1")
BUILD_PER_CLASS = {"train": 3, "test": 2}


def build_cmd(out: Path, tar: Path, *extra: str, generators: tuple[str, ...] = MIX) -> list[str]:
    """`cifake build` of a tiny dataset from the CIFAR-10 tar ``tar`` (REAL) and ``generators``."""
    return [
        str(Path(sys.executable).parent / "cifake"),
        "build",
        "--out",
        str(out),
        *[arg for g in generators for arg in ("--generator", g)],
        "--real",
        f"cifar-tar:{tar}",
        "--per-class-train",
        str(BUILD_PER_CLASS["train"]),
        "--per-class-test",
        str(BUILD_PER_CLASS["test"]),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--unit-size",
        "1",
        *extra,
    ]
