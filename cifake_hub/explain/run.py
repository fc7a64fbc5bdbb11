"""Explain a trained run: Grad-CAM on a sample of a split, Figure 6, and the deletion test.

Writes the run folder's ``gradcam/`` (see :class:`~cifake_hub.training.run_folder.RunFolder`):
Figure 6, a gallery (one PNG per explained image), the maps with probabilities, labels,
classes and row indices, and the summary (settings and faithfulness numbers the model card
shows).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.config import Config, option
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.explain.claim import paper_claim
from cifake_hub.explain.gradcam import METHODS
from cifake_hub.explain.summary import GradcamSummary
from cifake_hub.outputs import Replacement, json_text, writes
from cifake_hub.schema import LABEL_NAMES, class_name
from cifake_hub.training.run_folder import RunFolder


@dataclass(frozen=True)
class ExplainConfig(Config):
    dataset: str | None = option(None, "dataset folder or Hub id (default: the run's)")
    split: str | None = option(
        None, "split to explain (default: test if present, else the run's validation slice)"
    )
    n: int = option(200, "images to explain (stratified sample)")
    layer: str | None = option(
        None,
        "layer to explain: a name, 'last' (the default) or 'all' (maps at the last "
        "convolution; ROAD compares every convolution)",
    )
    method: str = option("gradcam", "map method", choices=lambda: tuple(METHODS))
    sanity: bool = option(True, "skip the cascading randomisation check", flag="--no-sanity")
    road: bool = option(True, "skip the ROAD faithfulness test", flag="--no-road")
    road_images: int = option(200, "images in the ROAD test (stratified, from the explained)")
    deletion_fraction: float = option(0.1, "share of pixels masked in the deletion test")
    alpha: float = option(0.45, "overlay opacity")
    gallery: int = option(20, "images in the gallery")
    seed: int = option(0, "seed of the sample and of the random-pixel baseline")

    def __post_init__(self) -> None:
        if self.n < 2 or self.road_images < 2:
            raise ConfigError(f"n and road images must be >= 2, got {self.n}, {self.road_images}")
        if not 0 < self.deletion_fraction < 1:
            raise ConfigError(f"deletion fraction must be in (0, 1), got {self.deletion_fraction}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.gallery < 0:
            raise ConfigError(f"gallery must be >= 0 images, got {self.gallery}")


def dataset_of_run(run_dir: str | Path) -> str:
    run = RunFolder(run_dir)
    dataset = run.config().get("dataset") or ""
    if not dataset:
        raise CifakeError(f"{run.config_path} does not say which dataset was used; pass --dataset")
    return str(dataset)


@writes("run_dir")
def explain_run(run_dir: str | Path, config: ExplainConfig) -> GradcamSummary:
    from cifake_hub.explain.gradcam import deletion_test, gradcam, resolve_layers
    from cifake_hub.training.backend import import_keras

    run = RunFolder(run_dir)
    if config.dataset is None:
        config = dataclasses.replace(config, dataset=dataset_of_run(run_dir))
    keras = import_keras()
    model = keras.saving.load_model(run.require_model())
    split, rows, arrays = _sample(run, config)
    layers = resolve_layers(model, config.layer)
    result = gradcam(model, arrays.x, layer=layers[-1], method=config.method)
    # The folder is replaced whole, and only if cifake wrote all of it (cifake_hub.outputs).
    with Replacement(
        run.gradcam_dir, RunFolder.GRADCAM_KIND, overwrite=True, what="Grad-CAM folder"
    ) as out:
        _pictures(arrays, rows, result, config, out)
        faithfulness = deletion_test(
            model, arrays.x, fraction=config.deletion_fraction, seed=config.seed
        )
        sanity = _sanity(model, arrays, config, result.layer, out) if config.sanity else None
        road = _road(model, arrays, config, layers, out) if config.road else None
        claim = paper_claim(
            result.heatmaps, arrays.y, result.probability, arrays.category, seed=config.seed
        )
        summary = GradcamSummary(
            config=config.to_dict(),
            split=split,
            layer=result.layer,
            method=result.method,
            images=int(len(rows)),
            accuracy_on_sample=float(np.mean((result.probability >= 0.5) == (arrays.y == 1))),
            figure6=run.figure6.relative_to(run.path).as_posix(),
            faithfulness=faithfulness,
            sanity=sanity,
            claim=claim,
            road=road,
        )
        (out / RunFolder.GRADCAM_SUMMARY).write_text(json_text(dataclasses.asdict(summary)))
        config.save(out / RunFolder.GRADCAM_CONFIG)
    return summary


def _sample(run: RunFolder, config: ExplainConfig) -> tuple[str, np.ndarray, Any]:
    """(the split, the row indices, their arrays): a stratified sample of ``config.n`` images
    of the split, or of the run's validation slice of train (images it never trained on)."""
    from cifake_hub.training.data import (
        labels_and_classes,
        load_splits,
        stratified_subset,
        to_arrays,
    )

    splits = load_splits(config.dataset)
    split = config.split or ("test" if "test" in splits else "validation")
    if split == "validation" and "validation" not in splits and "train" in splits:
        ds = splits["train"]
        label, category = labels_and_classes(ds)
        pool = run.validation_rows(label, category)
    elif split in splits:
        ds = splits[split]
        label, category = labels_and_classes(ds)
        pool = np.arange(label.size)
    else:
        raise CifakeError(f"dataset {config.dataset} has no {split!r} split; it has {list(splits)}")
    rows = pool[stratified_subset(label[pool], category[pool], config.n, seed=config.seed)]
    return split, rows, to_arrays(ds, rows)


def _pictures(arrays: Any, rows: np.ndarray, result: Any, config: ExplainConfig, out: Path) -> None:
    """Figure 6, the captioned gallery and the maps themselves (heatmaps.npz)."""
    from cifake_hub.explain.render import figure6, gallery

    x, y, category = arrays.x, arrays.y, arrays.category
    figure6(x, y, category, result.heatmaps, result.probability, out / RunFolder.FIGURE6,
            alpha=config.alpha)  # fmt: skip
    shown = min(config.gallery, len(rows))
    captions = [
        f"{class_name(int(category[i]))}, {LABEL_NAMES[y[i]]}: "
        f"P(REAL)={result.probability[i]:.2f}, explains {LABEL_NAMES[result.explained[i]]}"
        for i in range(shown)
    ]
    gallery(x[:shown], result.heatmaps[:shown], captions, out / RunFolder.GALLERY,
            alpha=config.alpha)  # fmt: skip
    np.savez_compressed(
        out / RunFolder.HEATMAPS,
        heatmaps=result.heatmaps,
        probability=result.probability,
        label=y,
        category=category,
        row=rows,
    )


def _sanity(
    model: Any, arrays: Any, config: ExplainConfig, layer: str, out: Path
) -> dict[str, Any]:
    """The cascading randomisation check of the chosen method and of the edge baseline, on
    at most 100 of the explained images (stratified by label and class), with its plot."""
    from cifake_hub.explain.gradcam import gradcam
    from cifake_hub.explain.render import sanity_plot
    from cifake_hub.explain.sanity import PASS_BELOW, cascading_randomisation, edge_map
    from cifake_hub.training.data import stratified_subset

    # The explained rows come in dataset order (often one label, then the other).
    sample = arrays.x[stratified_subset(arrays.y, arrays.category, 100, seed=config.seed)]

    def maps(m: Any, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return gradcam(m, images, layer=layer, explain=labels, method=config.method).heatmaps

    results = [
        cascading_randomisation(model, sample, maps, config.method, config.seed),
        cascading_randomisation(model, sample, lambda m, i, lab: edge_map(i), "edges", config.seed),
    ]
    sanity_plot(results, out / RunFolder.SANITY_PLOT)
    return {
        "images": int(len(sample)),
        "pass_below": PASS_BELOW,
        "results": [dataclasses.asdict(r) for r in results],
    }


def _road(
    model: Any, arrays: Any, config: ExplainConfig, layers: list[str], out: Path
) -> dict[str, Any]:
    """ROAD of every method at each of ``layers`` (maps named ``method@layer`` when there
    are several), of a random map and of the edge map, on at most ``road_images`` of the
    explained images (stratified), with its plot."""
    from cifake_hub.explain.gradcam import gradcam
    from cifake_hub.explain.render import road_plot
    from cifake_hub.explain.road import road, road_summary
    from cifake_hub.explain.sanity import edge_map
    from cifake_hub.training.data import stratified_subset

    pick = stratified_subset(arrays.y, arrays.category, config.road_images, seed=config.seed)
    images = arrays.x[pick]
    first = gradcam(model, images, layer=layers[-1], method=config.method)
    explained = first.explained
    maps = {
        (name if len(layers) == 1 else f"{name}@{layer}"): gradcam(
            model, images, layer=layer, explain=explained, method=name
        ).heatmaps
        for layer in layers
        for name in METHODS
    }
    maps["random"] = np.random.default_rng(config.seed).random(first.heatmaps.shape)
    maps["edges"] = edge_map(images)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=512, verbose=0))

    curves = road(predict, images, explained, maps, seed=config.seed)
    road_plot(curves, out / RunFolder.ROAD_PLOT)
    return {"images": int(len(images)), "layers": layers, **road_summary(curves)}
