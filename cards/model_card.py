"""The model card of a run folder: metrics (model-index), topology, settings, the search's
tables and plots, Grad-CAM gallery and faithfulness, usage, limitations, citations."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cifake_hub.cards.common import (
    CITATIONS,
    TEMPLATES,
    check_repo_ids,
    fmt_change,
    fmt_interval,
)
from cifake_hub.cards.gradcam_card import METHOD_NAMES, write_gradcam_card
from cifake_hub.cards.study_card import study_table
from cifake_hub.evaluate.report import EvaluationReport
from cifake_hub.explain.summary import GradcamSummary
from cifake_hub.formatting import fmt_int, fmt_pct
from cifake_hub.outputs import atomic_write_text, read_json, writes
from cifake_hub.training.run_folder import RecipeResult, RunFolder
from cifake_hub.training.topology import Topology

TEMPLATE = TEMPLATES / "model_card.md.j2"
CARD_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
_SETTINGS = (
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "padding",
    "patience",
    "input_scaling",
    "val_fraction",
    "max_train",
    "seed",
    "select_on",
)


def _describe(t: Topology) -> str:
    conv = (
        f"{t.conv_layers} conv layer{'s' if t.conv_layers > 1 else ''} of {t.conv_filters} "
        "3x3 ReLU filters, each followed by 2x2 max pooling"
    )
    if not t.dense_layers:
        return conv + ", flattened into one sigmoid neuron"
    return (
        conv + f", then {t.dense_layers} dense ReLU layer{'s' if t.dense_layers > 1 else ''} "
        f"of {t.dense_units} units and one sigmoid neuron"
    )


def render_model_card(
    run_dir: str | Path,
    *,
    repo_id: str | None = None,
    dataset_repo: str | None = None,
    endpoint: str = "https://huggingface.co",
) -> Any:
    """The card of a search run or of a recipe run (`cifake train`)."""
    from huggingface_hub import ModelCard, ModelCardData

    check_repo_ids(repo_id=repo_id, dataset_repo=dataset_repo)
    run = RunFolder(run_dir)
    config = run.config()
    test = run.test_results()
    model = _recipe_model(run, config) if run.recipe_result_path.exists() else _search_model(run)
    if test.final is not None:
        metrics, split = test.final.metrics, "test"
        eval_note = f"Scored once on the test split, after selection. {test.selection_sentence}"
    else:
        metrics, split = model["selected"], model["selected_on"]
        eval_note = (
            f"The dataset has no test split: these are {split} numbers of the selected "
            "model, so they are slightly optimistic."
        )
    # A local folder is named by its last part: a card must not leak local paths.
    dataset_name = dataset_repo or Path(config.get("dataset") or "cifake").name
    report = EvaluationReport.of_run(run)
    card_data = ModelCardData(
        library_name="keras",
        pipeline_tag="image-classification",
        license="mit",
        datasets=[dataset_repo] if dataset_repo else None,
        metrics=list(CARD_METRICS),
        tags=["keras", "cifake", "ai-generated-image-detection", "grad-cam"],
        model_name=repo_id or "cifake-cnn",
        eval_results=_eval_results(metrics, split, dataset_name)
        + _condition_results(report, dataset_name),
    )
    study = run.study()
    study_row = next(
        (d for d in (study or {}).get("detectors", []) if d["name"] == run.path.name), None
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        dataset_repo=dataset_repo,
        dataset_url=f"{endpoint}/datasets/{dataset_repo}" if dataset_repo else None,
        eval_note=eval_note,
        eval_split=split,
        m={k: _fmt_metric(k, metrics[k]) for k in (*CARD_METRICS, "average_precision", "loss")},
        gradcam=_gradcam(GradcamSummary.of_run(run)),
        evaluation=evaluation_summary(report),
        study=study_table(study) if study else None,
        study_plot=RunFolder.STUDY_PLOT,
        study_row=" + ".join(study_row["trained_on"]) if study_row else None,
        repo_id=repo_id or "NAMESPACE/MODEL",
        selection_warning=test.selection_sentence,
        citations=CITATIONS,
        **model,
    )


def _eval_results(metrics: dict[str, Any], split: str, dataset_name: str) -> list[Any]:
    """The headline numbers as model-index results."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="image-classification",
            task_name="Real vs AI-generated image detection",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=name,
            metric_name=name,
            metric_value=round(float(metrics[name]), 4),
        )
        for name in CARD_METRICS
        if metrics[name] is not None
    ]


def _gradcam(summary: GradcamSummary | None) -> dict[str, Any] | None:
    """The card's Grad-CAM section: method, deletion test, sanity check, the paper's claim."""
    if summary is None:
        return None
    f = summary.faithfulness
    return {
        "method": METHOD_NAMES.get(summary.method, summary.method),
        "layer": summary.layer,
        "images": summary.images,
        "split": summary.split,
        "fraction": f"{f['fraction']:.0%}",
        "drop_gradcam": fmt_change(f["mean_drop_gradcam"]),
        "drop_random": fmt_change(f["mean_drop_random"]),
        "faithful": f["mean_drop_gradcam"] > f["mean_drop_random"],
        "sanity": _sanity(summary.sanity),
        "claim": _claim(summary.claim),
    }


def _search_model(run: RunFolder) -> dict[str, Any]:
    """The card's model part for a `cifake search` run: the topology and the search."""
    from cifake_hub.training.report import TABLES, heatmap_path

    config = run.config()
    results = run.results()
    best = run.best()
    stage2 = [r for r in results if r.stage == 2]
    return {
        "title": f"CIFAKE detector: {best.topology}",
        "selected": best.selected,
        "selected_on": best.selected_on,
        "topology": best.topology,
        "description": _describe(Topology.parse(best.topology)),
        "params": fmt_int(best.params),
        "settings": [(k, "all rows" if config.get(k) is None else config.get(k)) for k in _SETTINGS]
        + [
            ("epochs run (early stopping)", best.epochs_run),
            ("training time", f"{best.train_seconds:.0f} s"),
        ],
        "search": {
            "n_trained": len(results),
            "extractor": f"conv={stage2[0].conv_filters}x{stage2[0].conv_layers}" if stage2 else "",
            "selection_split": best.selected_on,
            "tables_markdown": (run.tables_dir / RunFolder.TABLES_MD).read_text(),
            "heatmaps": [
                heatmap_path(run, spec).relative_to(run.path).as_posix()
                for spec in TABLES
                if heatmap_path(run, spec).exists()
            ],
        },
    }


def _recipe_model(run: RunFolder, config: dict[str, Any]) -> dict[str, Any]:
    """The card's model part for a `cifake train` run: the recipe and its cost."""
    result = RecipeResult.from_dict(read_json(run.recipe_result_path))
    recipe = dict(config["recipe_data"])
    skip = ("name", "description")
    settings = [(k.replace("_", " "), v) for k, v in recipe.items() if k not in skip]
    settings += [
        ("validation", f"{config['val_fraction']:.0%} of train, stratified by label and class"),
        ("train rows", "all" if config.get("max_train") is None else config["max_train"]),
        ("seed", config["seed"]),
        (
            ("epoch kept (best on a held-out family)", result.selection["why"])
            if result.selection
            else (
                "epoch kept (lowest validation loss)",
                f"{result.best_epoch} of {result.epochs_run}",
            )
        ),
        ("training time", f"{result.train_seconds:,.0f} s ({result.train_seconds / 3600:.2f} h)"),
        ("training throughput", f"{result.train_images_per_second:,.0f} images/s"),
        ("precision", result.precision),
    ]
    if result.train_generators:
        counts = ", ".join(f"{g} {n:,}" for g, n in result.train_generators.items())
        settings.append(("FAKE training rows per generator", counts))
    return {
        "title": f"CIFAKE detector: recipe {result.recipe}",
        "selected": result.validation,
        "selected_on": "validation",
        "recipe": {"name": result.recipe, "description": recipe["description"]},
        "params": fmt_int(result.params),
        "settings": settings,
    }


def _sanity(sanity: dict[str, Any] | None) -> dict[str, Any] | None:
    if not sanity:
        return None
    method, edges = sanity["results"]
    return {
        "images": sanity["images"],
        "pass_below": sanity["pass_below"],
        "final": f"{method['spearman'][-1]:.2f}",
        "verdict": "passes" if method["passed"] else "fails",
        "edges": f"{edges['spearman'][-1]:.2f}",
    }


def _claim(claim: dict[str, Any] | None) -> dict[str, Any] | None:
    if not claim:
        return None
    if not claim.get("by_label"):
        return {"images": claim["images"], "verdict": claim["verdict"]}

    by_label, diff = claim["by_label"], claim["real_minus_fake"]
    return {
        "images": claim["images"],
        "verdict": claim["verdict"],
        "area_real": fmt_interval(by_label["area_above_half"]["REAL"]),
        "area_fake": fmt_interval(by_label["area_above_half"]["FAKE"]),
        "area_diff": fmt_interval(diff["area_above_half"]),
        "entropy_real": fmt_interval(by_label["entropy"]["REAL"]),
        "entropy_fake": fmt_interval(by_label["entropy"]["FAKE"]),
        "entropy_diff": fmt_interval(diff["entropy"]),
    }


def evaluation_summary(report: EvaluationReport | None) -> dict[str, Any] | None:
    """The card's view of `cifake evaluate`'s report."""
    if report is None:
        return None
    cal = report.calibration
    without = report.clean_without_leaked()
    return {
        "rows": fmt_int(report.rows),
        "split": report.split,
        "resamples": report.resamples,
        "conditions": [dataclasses.asdict(row) for row in report.table()],
        "ece_before": f"{cal['before']['ece']:.4f}",
        "brier_before": f"{cal['before']['brier']:.4f}",
        "temperature": f"{cal['temperature']:.3f}" if "after" in cal else None,
        "ece_after": f"{cal['after']['ece']:.4f}" if "after" in cal else None,
        "threshold": f"{report.threshold or 0.5:.3f}",
        "accuracy_at_threshold": fmt_pct(cal.get("accuracy_at_threshold")),
        "leaked": fmt_int(report.leaked_rows),
        "per_generator": [
            {
                "name": name,
                "fake_rows": fmt_int(g["fake_rows"]),
                "accuracy": fmt_pct(g["accuracy"]),
                "auc": "n/a" if g["roc_auc"] is None else f"{g['roc_auc']:.4f}",
                "caught": fmt_pct(g["recall_fake"]),
            }
            for name, g in report.per_generator.items()
        ],
        "clean_without_leaked": fmt_pct(without) if without is not None else None,
    }


def _condition_results(report: EvaluationReport | None, dataset_name: str) -> list[Any]:
    """model-index results per condition, each naming its condition in the dataset's config
    and args so that the Hub shows them apart."""
    from huggingface_hub import EvalResult

    if report is None:
        return []
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Real vs AI-generated image detection",
            dataset_type=dataset_name,
            dataset_name=f"{dataset_name} ({name})",
            dataset_config=name,
            dataset_split=report.split,
            dataset_args={"condition": c.definition},
            metric_type=metric,
            metric_name=f"{metric} ({name})",
            metric_value=round(float(c.metrics[metric]), 4),
        )
        for name, c in report.conditions.items()
        for metric in ("accuracy", "roc_auc")
        if c.metrics[metric] is not None
    ]


def _fmt_metric(name: str, value: float | None) -> str:
    if value is None:
        return "undefined"
    return f"{100 * value:.2f}%" if name == "accuracy" else f"{value:.4f}"


@writes("run_dir")
def write_model_card(run_dir: str | Path, **kwargs: Any) -> Path:
    run = RunFolder(run_dir).require_ours()
    card = render_model_card(run_dir, **kwargs)
    if run.gradcam_summary() is not None:
        write_gradcam_card(run.path)
    return atomic_write_text(run.card, str(card))
