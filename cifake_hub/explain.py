"""Explain a trained run: Grad-CAM on a sample of a split, Figure 6, and the deletion test.

Writes into ``RUN_DIR/gradcam/``: ``figure6.png``, ``gallery/`` (one PNG per explained
image), ``heatmaps.npz`` (maps, probabilities, labels, classes, row indices) and
``summary.json`` (the settings and the faithfulness numbers the model card shows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.config import Config
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.outputs import Replacement
from cifake_hub.schema import CLASS_NAMES, LABEL_NAMES

GRADCAM_DIR = "gradcam"
GRADCAM_KIND = "gradcam"
FIGURE6_FILE = "figure6.png"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class ExplainConfig(Config):
    dataset: str
    split: str | None = None  # default: test when the dataset has it, else the run's validation
    n: int = 200
    layer: str | None = None
    deletion_fraction: float = 0.1
    alpha: float = 0.45
    gallery: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ConfigError(f"n must be >= 2, got {self.n}")
        if not 0 < self.deletion_fraction < 1:
            raise ConfigError(f"deletion fraction must be in (0, 1), got {self.deletion_fraction}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")


def dataset_of_run(run_dir: Path) -> str:
    from cifake_hub.training.search import CONFIG_FILE

    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise CifakeError(
            f"{run_dir} is not a run folder (no {CONFIG_FILE}); run `cifake search` first"
        )
    dataset = json.loads(path.read_text()).get("dataset") or ""
    if not dataset:
        raise CifakeError(f"{path} does not say which dataset was used; pass --dataset")
    return str(dataset)


def _labels(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    table = ds.with_format("numpy")
    return np.asarray(table["label"][:]), np.asarray(table["category"][:])


def explain_run(run_dir: str | Path, config: ExplainConfig) -> dict[str, Any]:
    from cifake_hub.gradcam import deletion_test, gradcam
    from cifake_hub.render import figure6, gallery
    from cifake_hub.training.backend import import_keras
    from cifake_hub.training.data import carve, load_splits, stratified_subset, to_arrays
    from cifake_hub.training.search import CONFIG_FILE, FINAL_MODEL

    run_dir = Path(run_dir)
    model_path = run_dir / FINAL_MODEL
    if not model_path.exists():
        raise CifakeError(
            f"{model_path} does not exist; finish `cifake search` into {run_dir} first"
        )
    keras = import_keras()
    model = keras.saving.load_model(model_path)
    splits = load_splits(config.dataset)
    split = config.split or ("test" if "test" in splits else "validation")
    if split == "validation" and "validation" not in splits and "train" in splits:
        # The run's own validation slice of train: images the model was not trained on.
        run = json.loads((run_dir / CONFIG_FILE).read_text())
        ds = splits["train"]
        label, category = _labels(ds)
        _, pool = carve(label, category, run["val_fraction"], run["max_train"], run["seed"])
    elif split in splits:
        ds = splits[split]
        label, category = _labels(ds)
        pool = np.arange(label.size)
    else:
        raise CifakeError(f"dataset {config.dataset} has no {split!r} split; it has {list(splits)}")
    rows = pool[stratified_subset(label[pool], category[pool], config.n, seed=config.seed)]
    arrays = to_arrays(ds, rows)

    result = gradcam(model, arrays.x, layer=config.layer)
    # The folder is replaced whole, and only if cifake wrote all of it (cifake_hub.outputs).
    with Replacement(
        run_dir / GRADCAM_DIR, GRADCAM_KIND, overwrite=True, what="Grad-CAM folder"
    ) as out:
        figure6(
            arrays.x,
            arrays.y,
            arrays.category,
            result.heatmaps,
            result.probability,
            out / FIGURE6_FILE,
            alpha=config.alpha,
        )
        shown = min(config.gallery, len(rows))
        captions = [
            f"{CLASS_NAMES[arrays.category[i]]}, {LABEL_NAMES[arrays.y[i]]}: "
            f"P(REAL)={result.probability[i]:.2f}, explains {LABEL_NAMES[result.explained[i]]}"
            for i in range(shown)
        ]
        gallery(
            arrays.x[:shown], result.heatmaps[:shown], captions, out / "gallery", alpha=config.alpha
        )
        np.savez_compressed(
            out / "heatmaps.npz",
            heatmaps=result.heatmaps,
            probability=result.probability,
            label=arrays.y,
            category=arrays.category,
            row=rows,
        )
        faithfulness = deletion_test(
            model, arrays.x, fraction=config.deletion_fraction, seed=config.seed
        )
        summary = {
            "config": config.to_dict(),
            "split": split,
            "layer": result.layer,
            "images": int(len(rows)),
            "accuracy_on_sample": float(np.mean((result.probability >= 0.5) == (arrays.y == 1))),
            "figure6": f"{GRADCAM_DIR}/{FIGURE6_FILE}",
            "faithfulness": faithfulness,
        }
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
        config.save(out / "explain_config.json")
    return summary
