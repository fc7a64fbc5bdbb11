"""`cifake evaluate`: what a detector's users ask after "what is its accuracy?".

For a detector (a run folder, a ``.keras`` file or a Hub model id) and a split of a dataset:
every condition's metrics and drop against ``clean`` (:mod:`.conditions`), calibration with
temperature scaling and a validation-chosen threshold (:mod:`.calibration`), scores on the
rows that do not leak from train, bootstrap intervals, and breakdowns per class and per
generator. The split is decoded once; a thread degrades the next condition while the model
predicts the current one.

Writes an evaluation folder (an output folder, see :mod:`cifake_hub.outputs`; in a run folder
by default): the report (read back by ``RunFolder.evaluation``), ``robustness.png``,
``reliability.png``, ``per_class.png`` and, with ``calibrate``, ``model_calibrated.keras``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub._compat import dataset_fingerprint
from cifake_hub.config import Config, option
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.evaluate import calibration
from cifake_hub.evaluate.conditions import (
    DEFAULT_CONDITIONS,
    Condition,
    parse_conditions,
)
from cifake_hub.evaluate.report import EvaluationReport
from cifake_hub.outputs import Replacement, json_text, output_lock, output_path, writes
from cifake_hub.schema import (
    CLASS_NAMES,
    LABEL_NAMES,
    UNKNOWN_CLASS,
    dataset_generators,
)
from cifake_hub.training.run_folder import RunFolder

EVALUATION_KIND = "evaluation"
CALIBRATED_MODEL = "model_calibrated.keras"


@dataclass(frozen=True)
class EvaluateConfig(Config):
    dataset: str | None = option(None, "dataset folder or Hub id (default: the run's)")
    split: str = option(
        "test", "split to evaluate; 'validation': the run's validation slice of train"
    )
    conditions: str = option(
        ",".join(DEFAULT_CONDITIONS),
        "comma-separated conditions (clean, jpeg:Q, blur:R, resize:S, noise:S) and/or files "
        "of NAME=module:function lines",
    )
    max_rows: int | None = option(None, "evaluate a stratified sample of N rows of the split")
    bootstrap: int = option(1000, "bootstrap resamples for the 95%% intervals (0: none)")
    batch_size: int = option(1024, "images per predict call")
    seed: int = option(0, "seed of the noise, the sample and the bootstrap")
    calibrate: bool = option(False, f"also save the temperature-scaled model ({CALIBRATED_MODEL})")

    def __post_init__(self) -> None:
        if self.bootstrap < 0 or self.batch_size < 1 or self.seed < 0:
            raise ConfigError(
                f"bootstrap must be >= 0, batch size >= 1 and seed >= 0, got {self.bootstrap}, "
                f"{self.batch_size}, {self.seed}"
            )
        if self.max_rows is not None and self.max_rows < 2:
            raise ConfigError(f"max rows must be >= 2, got {self.max_rows}")
        if not any(s.strip() for s in self.conditions.split(",")):
            raise ConfigError(
                f"--conditions {self.conditions!r} names no condition; give e.g. "
                "clean,jpeg:50,blur:1.0 (clean is always added)"
            )

    def parsed_conditions(self) -> list[Condition]:
        specs = [s.strip() for s in self.conditions.split(",") if s.strip()]
        return parse_conditions(specs, seed=self.seed)


def label_metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
    """binary_metrics plus each label's recall (REAL: recall; FAKE: specificity)."""
    from cifake_hub.training.metrics import binary_metrics

    m = binary_metrics(y, prob)
    negatives, positives = m["tn"] + m["fp"], m["tp"] + m["fn"]
    m["recall_fake"] = m["tn"] / negatives if negatives else None
    m["recall_real"] = m["recall"] if positives else None
    return m


def pixel_hashes(x: np.ndarray) -> list[bytes]:
    return [hashlib.sha1(image.tobytes()).digest() for image in x]


def predict_batches(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict`` without its per-call data pipeline: the compiled predict step on
    each batch (about 20% less time for a small detector on CPU, and steadier)."""
    return np.concatenate(
        [
            np.asarray(model.predict_on_batch(x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
    )


def _check_detector(prob: Any) -> np.ndarray:
    out = np.asarray(prob)
    if out.ndim != 2 or out.shape[1] != 1 or not np.all((out >= 0) & (out <= 1)):
        raise CifakeError(
            f"the model is not a binary detector: its output has shape {out.shape[1:]} and "
            f"range [{out.min():.3g}, {out.max():.3g}]; expected one probability of REAL per "
            "image, in [0, 1]"
        )
    return out[:, 0].astype(np.float64)


@dataclass
class Evaluated:
    out: Path
    report: dict[str, Any]


@writes("out")
def evaluate_model(
    model_spec: str | Path,
    config: EvaluateConfig,
    out: str | Path | None = None,
    say: Callable[[str], None] | None = None,
) -> Evaluated:
    """Evaluate the detector ``model_spec`` (see the module docstring) into ``out`` (default:
    the run folder's ``evaluation/``)."""
    from cifake_hub.training.models import load_model, resolve_model

    say = say or (lambda _msg: None)
    conditions = config.parsed_conditions()
    run, folder, target = _where(model_spec, out)
    settings = run.config() if run and run.exists() else {}  # the run's search settings
    dataset = config.dataset or settings.get("dataset")
    if not dataset:
        raise ConfigError("give --dataset: the model does not say which dataset it was made on")
    model = load_model(resolve_model(model_spec))

    clock = {"start": time.perf_counter()}
    say("decoding the dataset")
    rows = _rows(dataset, config, run)
    validation, leaked = _leakage(rows, folder if run is not None else None, config, say)
    clock["conditions"] = time.perf_counter()
    results, probs = _score(model, conditions, rows, leaked, config, say)
    clock["bootstrap"] = time.perf_counter()
    if config.bootstrap:
        say(f"bootstrap intervals ({config.bootstrap} resamples per condition)")
        for name, result in results.items():
            result["interval_95"] = calibration.bootstrap(
                rows.y, probs[name], config.bootstrap, config.seed
            )
    clock["end"] = time.perf_counter()
    y, clean_prob = rows.y, probs["clean"]
    report: dict[str, Any] = {
        "model": str(model_spec),
        "dataset": str(dataset),
        "split": config.split,
        "fingerprint": dataset_fingerprint(rows.ds),
        "rows": int(len(y)),
        "config": config.to_dict(),
        "conditions": _with_drops(results),
        "calibration": _calibration(y, clean_prob, model, validation, config, rows.same_as_train),
        "leakage": {
            "rows_also_in_train": int(leaked.sum()),
            "by_label": {LABEL_NAMES[v]: int(leaked[y == v].sum()) for v in (0, 1)},
            "rows": [int(r) for r in rows.rows[leaked]],
        },
        "per_class": _per_class(y, rows.category, clean_prob),
        "per_generator": per_generator(y, rows.generators, clean_prob),
        "seconds": {
            "decoding_and_leakage": clock["conditions"] - clock["start"],
            "conditions": clock["bootstrap"] - clock["conditions"],
            "bootstrap": clock["end"] - clock["bootstrap"],
        },
    }
    _write(target, report, model, config)
    return Evaluated(target, report)


def _where(model_spec: str | Path, out: str | Path | None) -> tuple[RunFolder | None, Path, Path]:
    """(the model's run folder if it has one, its folder, the evaluation folder to write),
    refusing now, not after the work, a folder another process writes."""
    from cifake_hub.training.models import shipped_run

    shipped = shipped_run(model_spec)
    folder = shipped or Path(model_spec)
    run = RunFolder(folder) if folder.is_dir() else None
    if out is None:
        if run is None or shipped is not None:
            what = "a shipped detector" if shipped else "not a run folder"
            raise ConfigError(f"give --out: {model_spec} is {what} to write into")
        out = run.path / RunFolder.EVALUATION
    target = output_path(out)
    with output_lock(target, "evaluation folder"):
        pass
    return run, folder, target


@dataclass
class _Rows:
    """The rows evaluated, decoded, and where they come from."""

    splits: Any  # the dataset's splits
    ds: Any  # the split evaluated
    rows: np.ndarray  # its row indices
    x: np.ndarray
    y: np.ndarray
    category: np.ndarray
    generators: np.ndarray
    held: np.ndarray | None  # the run's validation slice of train (rows it never trained on)

    @property
    def same_as_train(self) -> bool:
        return self.held is not None and self.ds is self.splits["train"]


def _rows(dataset: str, config: EvaluateConfig, run: RunFolder | None) -> _Rows:
    from cifake_hub.training.data import (
        DataOptions,
        labels_and_classes,
        load_splits,
        stratified_subset,
        to_arrays,
    )

    splits = load_splits(dataset)
    held = None
    if "train" in splits:
        tl, tc = labels_and_classes(splits["train"])
        if run and run.exists():
            held = run.validation_rows(tl, tc)
        else:
            _, held = DataOptions().carve(tl, tc)
    if config.split == "validation" and "validation" not in splits and held is not None:
        ds, pool_rows = splits["train"], held
    elif config.split in splits:
        ds = splits[config.split]
        pool_rows = np.arange(ds.num_rows)
    else:
        raise ConfigError(f"dataset {dataset} has no {config.split!r} split; it has {list(splits)}")
    rows = pool_rows
    if config.max_rows is not None:
        label_all, category_all = labels_and_classes(ds)
        pick = stratified_subset(
            label_all[pool_rows], category_all[pool_rows], config.max_rows, seed=config.seed
        )
        rows = pool_rows[pick]
    arrays = to_arrays(ds, rows)
    y = arrays.y
    if len(set(y.tolist())) < 2:
        raise ConfigError(
            f"the {config.split!r} rows hold only {LABEL_NAMES[int(y[0])]} images; evaluating "
            "a detector needs both labels"
        )
    generators = row_generators(ds, rows, y)
    return _Rows(splits, ds, rows, arrays.x, y, arrays.category, generators, held)


def _leakage(
    rows: _Rows, folder: Path | None, config: EvaluateConfig, say: Callable[[str], None]
) -> tuple[Any, np.ndarray]:
    """(the validation slice's arrays or None, which evaluated rows the model trained on)."""
    from cifake_hub.training.data import Arrays, to_arrays
    from cifake_hub.training.leakage import seen_in_training, training_hashes

    validation = None
    leaked = np.zeros(len(rows.y), dtype=bool)
    if rows.held is not None and config.split != "train":
        say("decoding the validation slice and hashing train for leakage")
        train = rows.splits["train"]
        # Leakage: pixels of the rows the model trained on (train less its validation slice).
        trained = None
        if rows.same_as_train:
            validation = Arrays(rows.x, rows.y, rows.category, np.full(len(rows.y), -1))
            trained = np.setdiff1d(np.arange(train.num_rows), rows.held)
        else:
            validation = to_arrays(train, rows.held)
        train_hashes = set(pixel_hashes(to_arrays(train, trained).x))
        leaked = np.array([h in train_hashes for h in pixel_hashes(rows.x)], dtype=bool)
    recorded = training_hashes(folder) if folder is not None else None
    if recorded is not None:
        # The rows the model itself trained on, whatever dataset it is scored on now (a
        # shipped detector scored on the embedded sample, which comes from its train split).
        leaked |= seen_in_training(recorded, rows.x)
    return validation, leaked


def _score(
    model: Any,
    conditions: list[Condition],
    rows: _Rows,
    leaked: np.ndarray,
    config: EvaluateConfig,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every condition's scores and P(REAL) per row."""
    x, y = rows.x, rows.y
    results: dict[str, Any] = {}
    probs: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(1) as pool:
        # A thread degrades the next condition while the model predicts this one: Pillow,
        # libjpeg-turbo, NumPy and TensorFlow release the GIL in their loops, and a thread
        # shares the arrays a process would have to copy.
        pending: Future[np.ndarray] | None = None
        for i, condition in enumerate(conditions):
            say(f"condition {i + 1}/{len(conditions)}: {condition.name}")
            degraded = pending.result() if pending is not None else condition.apply(x, rows.rows)
            nxt = conditions[i + 1] if i + 1 < len(conditions) else None
            pending = pool.submit(nxt.apply, x, rows.rows) if nxt is not None else None
            prob = _check_detector(predict_batches(model, degraded, config.batch_size))
            probs[condition.name] = prob
            results[condition.name] = _condition_result(condition, y, prob, leaked)
    return results, probs


def _with_drops(results: dict[str, Any]) -> dict[str, Any]:
    """Each condition's drop against clean, in accuracy and ROC AUC."""
    clean = results["clean"]["metrics"]
    for r in results.values():
        r["drop"] = {
            k: None if r["metrics"][k] is None or clean[k] is None else clean[k] - r["metrics"][k]
            for k in ("accuracy", "roc_auc")
        }
    return results


def _write(target: Path, report: dict[str, Any], model: Any, config: EvaluateConfig) -> None:
    from cifake_hub.evaluate import render

    with Replacement(target, EVALUATION_KIND, overwrite=True, what="evaluation folder") as staged:
        (staged / RunFolder.EVALUATION_REPORT).write_text(json_text(report))
        typed = EvaluationReport.from_dict(report)
        render.robustness(typed, staged / render.ROBUSTNESS)
        render.reliability_diagram(typed.calibration, staged / render.RELIABILITY)
        render.per_class(typed.per_class, staged / render.PER_CLASS)
        if config.calibrate:
            t = report["calibration"]["temperature"]
            calibrated_model(model, t).save(staged / CALIBRATED_MODEL)


def row_generators(ds: Any, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The generator of each FAKE row ("" for REAL rows and unknown ones): the ``generator``
    column, or ``model_id`` in datasets made before it existed."""
    from cifake_hub.training.data import generator_index

    names = dataset_generators(ds.features)
    if names:
        values = [names[i] if i >= 0 else None for i in generator_index(ds)[rows]]
    elif "model_id" in ds.column_names:
        values = ds.select_columns(["model_id"]).select(rows).to_dict()["model_id"]
    else:
        return np.full(len(y), "", dtype=object)
    return np.array(
        [(v or "") if label == 0 else "" for v, label in zip(values, y, strict=True)], dtype=object
    )


def _condition_result(
    condition: Condition, y: np.ndarray, prob: np.ndarray, leaked: np.ndarray
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "definition": condition.definition,
        "kind": condition.kind,
        "severity": condition.severity,
        "metrics": label_metrics(y, prob),
    }
    keep = ~leaked
    if leaked.any() and len(set(y[keep].tolist())) == 2:
        result["metrics_without_leaked"] = label_metrics(y[keep], prob[keep])
    return result


def _calibration(
    y: np.ndarray,
    prob: np.ndarray,
    model: Any,
    validation: Any,
    cfg: EvaluateConfig,
    same_rows: bool,
) -> dict[str, Any]:
    def scores(labels: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        rel = calibration.reliability(labels, p)
        return {
            "ece": rel.ece,
            "brier": calibration.brier(labels, p),
            "nll": calibration.nll(labels, p),
            "reliability": dataclasses.asdict(rel),
        }

    result: dict[str, Any] = {"bins": calibration.ECE_BINS, "before": scores(y, prob)}
    if validation is None:
        result.update(temperature=1.0, note="no train split: no validation slice to fit on")
        return result
    val_prob = _check_detector(predict_batches(model, validation.x, cfg.batch_size))
    t = calibration.fit_temperature(validation.y, val_prob)
    threshold = calibration.best_threshold(validation.y, val_prob)
    result.update(
        temperature=t,
        after=scores(y, calibration.scale(prob, t)),
        validation_rows=int(len(validation.y)),
        threshold=threshold,
        accuracy_at_threshold=float(np.mean((prob >= threshold) == (y == 1))),
        note="temperature and threshold fitted on the run's validation slice of train"
        + (
            ", the rows evaluated here: the numbers after scaling and at the threshold are "
            "optimistic"
            if same_rows
            else ""
        ),
    )
    return result


def _per_class(y: np.ndarray, category: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
    out = {}
    # -1: brought images without a class.
    for c, name in [*enumerate(CLASS_NAMES), (-1, UNKNOWN_CLASS)]:
        mask = category == c
        if mask.any():
            m = label_metrics(y[mask], prob[mask])
            out[name] = {"rows": int(mask.sum())} | {
                k: m[k] for k in ("accuracy", "roc_auc", "recall_fake", "recall_real")
            }
    return out


def per_generator(
    y: np.ndarray, generators: np.ndarray, prob: np.ndarray, *, at_least: int = 2
) -> dict[str, Any]:
    """Each generator's FAKE rows against every REAL row (when there are ``at_least``
    generators): accuracy, ROC AUC and the share of its fakes caught."""
    from cifake_hub.training.metrics import binary_metrics

    names = sorted({g for g in generators.tolist() if g})
    if len(names) < at_least:
        return {}
    real = y == 1
    out = {}
    for name in names:
        mask = real | (generators == name)
        m = binary_metrics(y[mask], prob[mask])
        out[name] = {
            "fake_rows": int((generators == name).sum()),
            "recall_fake": float(np.mean(prob[generators == name] < 0.5)),
            "accuracy": m["accuracy"],
            "roc_auc": m["roc_auc"],
        }
    return out


def calibrated_model(model: Any, temperature: float) -> Any:
    """``model`` with its logit divided by ``temperature`` inside it (so predict, Grad-CAM and
    every other consumer use the calibrated probability unchanged)."""
    from cifake_hub.explain.gradcam import find_logit_layer, flat_layers
    from cifake_hub.training.backend import import_keras

    keras = import_keras()
    layers = flat_layers(model)
    head_layer, from_input = find_logit_layer(layers)
    if from_input:
        raise CifakeError(
            "calibrating needs the model's logit as its own layer (a Dense before a sigmoid "
            "Activation), as cifake's models have"
        )
    scale = keras.layers.Rescaling(1 / temperature, name="temperature")
    sigmoid = keras.layers.Activation("sigmoid", name="probability_calibrated")
    if isinstance(model, keras.Sequential):
        # The same (trained) layer objects, one new path: a model reloaded from disk has no
        # usable symbolic outputs to branch from.
        head = layers[: layers.index(head_layer) + 1]
        inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="image")
        return keras.Sequential([inputs, *head, scale, sigmoid], name=f"{model.name}_calibrated")
    logit = model.get_layer(head_layer.name).output
    return keras.Model(model.inputs, sigmoid(scale(logit)), name=f"{model.name}_calibrated")
