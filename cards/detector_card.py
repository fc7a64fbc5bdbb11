"""The card of a detector shipped in the package (``cifake_hub/detectors/NAME/README.md``);
shipping one is :mod:`cifake_hub.ship`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifake_hub.cards.common import TEMPLATES
from cifake_hub.cards.model_card import evaluation_summary
from cifake_hub.cards.study_card import left_out_table
from cifake_hub.errors import CifakeError
from cifake_hub.evaluate.report import EvaluationReport
from cifake_hub.formatting import fmt_int, fmt_pct
from cifake_hub.outputs import read_json
from cifake_hub.shipped import DEFAULT_DETECTOR
from cifake_hub.training.run_folder import RecipeResult, RunFolder

TEMPLATE = TEMPLATES / "detector_card.md.j2"


def _training(run: RunFolder) -> tuple[str, str, dict[str, Any], int, list[tuple[str, Any]]]:
    """(what it is, params, validation metrics, validation images, training facts)."""
    if run.recipe_result_path.exists():
        r = RecipeResult.from_dict(read_json(run.recipe_result_path))
        recipe = run.config()["recipe_data"]
        what = f"Recipe `{r.recipe}`: {recipe['description']}."
        kept = (
            r.selection["why"] if r.selection else f"epoch {r.best_epoch}, lowest validation loss"
        )
        facts = [("epochs", f"{r.epochs_run} (kept: {kept})")]
        if r.epoch_images:
            facts.append(("images per epoch", f"{r.epoch_images:,}"))
        return what, fmt_int(r.params), r.validation, r.validation_images, facts + _cost(r)
    best = run.best()
    what = (
        f"The CIFAKE paper's final topology, `{best.topology}`, trained by `cifake search` "
        "(the paper's model, for comparison: it is not robust to blur or resizing)."
    )
    facts = [("epochs", f"{best.epochs_run} (early stopping on validation loss)")]
    return what, fmt_int(best.params), best.validation, best.validation_images, facts + _cost(best)


CIFAKE_ONLY = (
    "the Kaggle CIFAKE train split only (REAL: CIFAR-10 train photographs; FAKE: Stable "
    "Diffusion 1.4 images)"
)


def _data_seen(run: RunFolder) -> tuple[str, bool]:
    """(what the detector trained on, in words; whether that was several FAKE families)."""
    if not run.recipe_result_path.exists():
        return CIFAKE_ONLY, False
    r = RecipeResult.from_dict(read_json(run.recipe_result_path))
    if not r.train_generators or len(r.train_generators) < 2:
        return CIFAKE_ONLY, False
    fakes = ", ".join(f"`{g}` ({n:,})" for g, n in r.train_generators.items())
    held = (
        f"; FAKE family `{r.selection['family']}` was left out of training and only chose the "
        "kept epoch"
        if r.selection
        else ""
    )
    return (
        f"a mixed dataset of several FAKE generators (training rows of each: {fakes}){held}",
        True,
    )


def _cost(r: Any) -> list[tuple[str, Any]]:
    return [
        ("training images", f"{r.train_images:,}"),
        ("training time", f"{r.train_seconds:,.0f} s ({r.train_seconds / 3600:.2f} h)"),
        ("throughput", f"{r.train_images_per_second:,.0f} images/s"),
    ]


def render_detector_card(
    run_dir: str | Path, name: str, retrain: str, notes: str | None = None
) -> str:
    """The card of ``run_dir`` shipped as ``name``: ``retrain`` is the commands that make it
    again, ``notes`` (Markdown) what its targets were and how far it got."""
    from jinja2 import Template

    run = RunFolder(run_dir)
    what, params, m, validation_images, training = _training(run)
    negatives, positives = m["tn"] + m["fp"], m["tp"] + m["fn"]
    metrics = {
        "accuracy": fmt_pct(m["accuracy"]),
        "roc_auc": f"{m['roc_auc']:.4f}",
        "f1": f"{m['f1']:.4f}",
        "recall_real": fmt_pct(m["tp"] / positives if positives else None),
        "recall_fake": fmt_pct(m["tn"] / negatives if negatives else None),
    }
    data_seen, mixed = _data_seen(run)
    report = EvaluationReport.of_run(run)
    if report is not None and report.split != "validation":
        raise CifakeError(
            f"{run.path}'s evaluation is on {report.split!r}; a shipped card reports the "
            "validation slice: run `cifake evaluate RUN --split validation` first"
        )
    return Template(TEMPLATE.read_text()).render(
        name=name,
        default=name == DEFAULT_DETECTOR,
        what=what,
        params=params,
        val_share=f"{run.config()['val_fraction']:.0%}",
        validation_images=f"{validation_images:,}",
        m=metrics,
        evaluation=evaluation_summary(report),
        training=training,
        retrain=retrain,
        notes=notes,
        data_seen=data_seen,
        mixed=mixed,
        study=_study(run),
        ablation=ablation_table(read_json(run.file(RunFolder.ABLATION)))
        if run.file(RunFolder.ABLATION).exists()
        else None,
    )


def _study(run: RunFolder) -> str | None:
    record = run.study()
    return None if record is None else left_out_table(record)


def ablation_table(record: dict[str, Any]) -> str:
    """bench/general_ablation.py's arms as a Markdown table: ROC AUC (95% bootstrap interval)
    on each family no arm trained on, and CIFAKE's accuracy and AUC."""

    def auc(s: dict[str, Any]) -> str:
        low, high = s["interval"]
        return f"{s['roc_auc']:.3f} ({low:.3f}-{high:.3f})"

    unseen = record["unseen"]
    lines = [
        "| arm | FAKE trained on | "
        + " | ".join(f"unseen `{u}` AUC (95%)" for u in unseen)
        + " | CIFAKE `sd14` accuracy / AUC | kept epoch |",
        "|---|---|" + "---:|" * (len(unseen) + 2),
    ]
    for arm, a in record["arms"].items():
        s = a["scores"]
        change = ", ".join(f"{k} {v}" for k, v in a["change"].items())
        what = " + ".join(a["trained_on"]) + (f" ({change})" if change else "")
        lines.append(
            f"| {arm} | {what} | "
            + " | ".join(auc(s[u]) for u in unseen)
            + f" | {fmt_pct(s['sd14']['accuracy'])} / {s['sd14']['roc_auc']:.4f} | "
            f"{a['kept_epoch']}/{record['epochs']} |"
        )
    images = {a["epoch_images"] for a in record["arms"].values()}
    lines += [
        "",
        f"Budget per arm: {record['real_rows']:,} REAL training rows (the same for every arm), "
        f"{record['epochs']} epochs of {', '.join(f'{n:,}' for n in sorted(images))} images "
        "(as many FAKE as REAL, equal shares per generator); the epoch with the lowest "
        "validation loss kept.",
    ]
    return "\n".join(lines)
