"""The dataset card: composition, provenance, encoding, duplicates, loading, citations.

Every number comes from the Parquet files (and the import report when there is one); the
YAML keeps the ``dataset_info`` and ``configs`` that ``load_dataset(DIR)`` needs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from cifake_hub.cards.common import CITATIONS, TEMPLATES, check_repo_ids, size_category
from cifake_hub.cards.study_card import study_table
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import DatasetFolderError
from cifake_hub.formatting import fmt_int
from cifake_hub.images import describe_encoding
from cifake_hub.outputs import atomic_write_text, writes
from cifake_hub.schema import (
    CLASS_NAMES,
    GENERATOR,
    KAGGLE_SOURCE,
    LABEL_NAMES,
    SPLITS,
    TINY_MODEL_IDS,
    UNKNOWN_CLASS,
    dataset_generators,
)

TEMPLATE = TEMPLATES / "dataset_card.md.j2"


# What the card counts, and the settings that tell one generator's rows from another's.
GENERATOR_SETTINGS = ("model_id", "scheduler", "steps", "guidance_scale", "render_size")
STATS_COLUMNS = ("image", "label", "category", "source", "prompt", *GENERATOR_SETTINGS)


def dataset_stats(folder: Path) -> dict[str, Any]:
    """Counts per split/label/class, sources, generator settings, prompts and encodings."""
    files = DatasetFolder(folder).shards()
    if not files:
        raise DatasetFolderError(
            f"{folder} has no {DatasetFolder.DATA}/*.parquet; is it a dataset folder?"
        )
    cells: Counter[tuple[str, int, int]] = Counter()
    sources: Counter[tuple[int, str]] = Counter()
    generators: Counter[tuple[Any, ...]] = Counter()
    prompts: Counter[tuple[int, str]] = Counter()
    encodings: Counter[tuple[int, str, str, str]] = Counter()
    per_generator: Counter[tuple[str, str]] = Counter()  # (generator, split)
    for path in files:
        split = path.name.split("-")[0]
        names = dataset_generators(datasets.Features.from_arrow_schema(pq.read_schema(path)))
        table = pq.read_table(path, columns=[*([GENERATOR] if names else []), *STATS_COLUMNS])
        cols = {
            name: table.column(name).to_pylist() for name in table.column_names if name != "image"
        }
        blobs = table.column("image").combine_chunks().field("bytes").to_pylist()
        for i, label in enumerate(cols["label"]):
            row = {name: values[i] for name, values in cols.items()}
            cells[(split, label, row["category"])] += 1
            sources[(label, row["source"] or "unknown")] += 1
            if row["model_id"] and row["scheduler"]:
                generators[tuple(row[k] for k in GENERATOR_SETTINGS)] += 1
            if row["prompt"]:
                prompts[(row["category"], row["prompt"])] += 1
            encodings[(label, *describe_encoding(blobs[i] or b""))] += 1
            if names and row.get(GENERATOR) is not None:
                per_generator[(names[row[GENERATOR]], split)] += 1
    return {
        "cells": cells,
        "sources": sources,
        "generators": generators,
        "prompts": prompts,
        "encodings": encodings,
        "per_generator": per_generator,
    }


def _brought(built: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The card's rows for the sources of brought images (`cifake build --fake/--real @NAME`)."""
    out = []
    for r in (built or {}).get("sources", []):
        out.append(
            {
                **r,
                "taken": " / ".join(fmt_int(r["taken"].get(split, 0)) for split in SPLITS),
                "found_as": _counted(r["encodings_found"]) or "-",
                "skipped_count": fmt_int(len(r["skipped"])),
                "skipped_why": "; ".join(
                    f"{k}: {n}" for k, n in Counter(s["problem"] for s in r["skipped"]).items()
                ),
            }
        )
    return out


def _counted(counts: dict[str, int]) -> str:
    """``{"png": 8, "jpeg:85": 1}`` as ``png (8), jpeg:85 (1)``."""
    return ", ".join(f"{name} ({fmt_int(n)})" for name, n in counts.items())


def _encoding_record(built: dict[str, Any] | None) -> dict[str, Any] | None:
    """How a build stored its rows (one encoding) and what it re-encoded."""
    if not built or "encoding" not in built:
        return None
    return {
        "target": built["encoding"],
        "differed": built["sources_differed"],
        "before": [
            {"source": s, "found": _counted(c)} for s, c in built["encodings_before"].items()
        ],
        "reencoded": sum(built["reencoded"].values()),
    }


def generator_table(folder: Path, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per generator of the ``generator`` column: FAKE images per split, the
    settings its rows record, and (for `cifake build`) how it was given, its family and
    the generation time per image from the build report."""
    counts: Counter[tuple[str, str]] = stats["per_generator"]
    report = DatasetFolder(folder).build_report()
    built = {g["generator"]: g for g in report["generators"]} if report else {}
    out = []
    for name in sorted({g for g, _ in counts}):
        entry = built.get(name, {})
        settings = (
            [zoo_settings(entry["zoo"])]
            if entry.get("zoo")
            else sorted(
                f"{sched}, {steps} steps, guidance {guid:g}, {size} px"
                for (m, sched, steps, guid, size) in stats["generators"]
                if m == name
            )
        )
        seconds = entry.get("seconds_per_image")
        out.append(
            {
                "name": name,
                "spec": f"`{entry['spec']}`" if entry else "-",
                "family": entry.get("family") or "-",
                "counts": [fmt_int(counts.get((name, split), 0)) for split in SPLITS],
                "settings": "; ".join(settings) or "not recorded",
                "seconds": f"{seconds:.3g} s" if seconds else "-",
                "devices": ", ".join(entry.get("devices", [])) or "-",
            }
        )
    return out


def zoo_settings(zoo: dict[str, Any]) -> str:
    """A zoo generator's row of the table: how its images were made, its training, where it
    is (a Hub repo linked, a local folder named)."""
    from huggingface_hub import constants

    how = f"noised to t={zoo['t']}, then DDIM" if zoo.get("t") else "encoded and decoded"
    made = f"twins of the REAL rows ({how})" if zoo.get("aligned") else "samples, one seed each"
    trained = (
        f"trained {zoo.get('epochs')} epochs on {fmt_int(zoo.get('train_images') or 0)} REAL "
        f"images ({(zoo.get('train_seconds') or 0) / 3600:.2f} h)"
    )
    quality = f"SWD {zoo['swd']} (REAL vs REAL {zoo['swd_real_vs_real']})" if zoo.get("swd") else ""
    where = (
        f"[{zoo['repo_id']}]({constants.ENDPOINT}/{zoo['repo_id']})"
        if zoo.get("repo_id")
        else f"folder `{zoo.get('folder')}`"
    )
    parts = [
        f"zoo `{zoo['family']}`: {made}",
        trained,
        quality,
        f"weights {zoo['weights_sha256']}",
        where,
    ]
    return "; ".join(p for p in parts if p)


def _encoding_note(encodings: Counter[tuple[int, str, str, str]]) -> str:
    per_label = {label: {k[1:] for k in encodings if k[0] == label} for label in (0, 1)}
    if not per_label[0] or not per_label[1]:
        return "Only one label is present, so there is no encoding difference to compare."
    if per_label[0] == per_label[1]:
        return (
            "REAL and FAKE images are stored with the same encoding, so a detector cannot "
            "separate them by file format alone."
        )
    return (
        "**Encoding bias:** REAL and FAKE images are stored with different encodings (below). "
        "A detector can learn the format instead of real-vs-fake; re-encode one side or "
        "evaluate with that in mind."
    )


def render_dataset_card(
    folder: str | Path,
    *,
    repo_id: str | None = None,
    model_repo: str | None = None,
    endpoint: str = "https://huggingface.co",
    pretty_name: str = "CIFAKE",
) -> Any:
    from huggingface_hub import DatasetCard, DatasetCardData

    check_repo_ids(repo_id=repo_id, model_repo=model_repo)
    dataset = DatasetFolder(folder)
    folder = dataset.path
    stats = dataset_stats(folder)
    cells = stats["cells"]
    total = sum(cells.values())
    existing = DatasetCard.load(dataset.card).data.to_dict() if dataset.card.exists() else {}
    keep = {k: existing[k] for k in ("dataset_info", "configs") if k in existing}
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license="mit",
        task_categories=["image-classification"],
        size_categories=[size_category(total)],
        tags=["ai-generated-image-detection", "synthetic", "cifar10", "cifake"],
        **keep,
    )
    # Brought images without a class have a null category: a column of their own.
    unknown = any(c is None for _, _, c in cells)
    built = dataset.build_report()
    generators = _generators(stats)
    tiny = set(TINY_MODEL_IDS.values())
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        pretty_name=pretty_name,
        noise_warning=next((g["model_id"] for g in generators if g["model_id"] in tiny), None),
        model_repo=model_repo,
        model_url=f"{endpoint}/{model_repo}" if model_repo else None,
        total_rows=fmt_int(total),
        class_names=[*CLASS_NAMES, *([UNKNOWN_CLASS] if unknown else [])],
        brought=_brought(built),
        encoding=_encoding_record(built),
        composition=_composition(cells, unknown),
        **_sources(stats["sources"]),
        generators=generators,
        generator_table=generator_table(folder, stats),
        study=study_table(study) if (study := dataset.study()) else None,
        splits=SPLITS,
        prompts=[
            {"category": CLASS_NAMES[c], "prompt": p, "count": fmt_int(n)}
            for (c, p), n in sorted(stats["prompts"].items())
        ],
        encoding_note=_encoding_note(stats["encodings"]),
        encodings=_encodings(stats["encodings"]),
        duplicates=_duplicates(dataset),
        load_id=repo_id or str(folder),
        citations=CITATIONS,
    )


def _composition(cells: Counter[Any], unknown: bool) -> list[dict[str, Any]]:
    """Rows per split, label and class (a null class last, when there is one)."""
    columns = [*range(len(CLASS_NAMES)), *([None] if unknown else [])]
    composition = []
    for split in SPLITS:
        for label in (1, 0):
            counts = [cells.get((split, label, c), 0) for c in columns]
            if sum(counts):
                composition.append(
                    {
                        "split": split,
                        "label": LABEL_NAMES[label],
                        "counts": [fmt_int(n) for n in counts],
                        "total": fmt_int(sum(counts)),
                    }
                )
    return composition


def _duplicates(dataset: DatasetFolder) -> dict[str, Any] | None:
    """What the import or build found duplicated (None: nothing)."""
    report = dataset.report() or dataset.build_report()
    if report is None or "duplicates" not in report or not report["duplicates"]["groups"]:
        return None
    dup = report["duplicates"]
    return {
        **dup,
        "what": "The import" if dataset.report() else "The build",
        "basis": dup.get("basis", "bytes"),
        "per_cell": dup["extra_copies_per_split_label_class"],
    }


def _sources(sources: Counter[Any]) -> dict[str, Any]:
    def named(label: int) -> list[dict[str, str]]:
        return [{"name": s, "count": fmt_int(n)} for (lab, s), n in sorted(sources.items())
                if lab == label]  # fmt: skip

    return {
        "real_sources": named(1),
        "fake_sources": named(0),
        "kaggle": any(s == KAGGLE_SOURCE for _, s in sources),
    }


def _generators(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "model_id": m,
            "scheduler": s,
            "steps": st,
            "guidance_scale": g,
            "render_size": r,
            "count": fmt_int(n),
        }
        for (m, s, st, g, r), n in sorted(stats["generators"].items(), key=lambda kv: str(kv[0]))
    ]


def _encodings(encodings: Counter[Any]) -> list[dict[str, Any]]:
    return [
        {"label": LABEL_NAMES[lab], "format": f, "quality": q, "subsampling": sub,
         "count": fmt_int(n)}
        for (lab, f, q, sub), n in sorted(encodings.items(), key=lambda kv: (-kv[0][0], kv[0]))
    ]  # fmt: skip


@writes("folder")
def write_dataset_card(folder: str | Path, **kwargs: Any) -> Path:
    """Render the card into ``folder/README.md``, keeping its ``dataset_info``/``configs``."""
    dataset = DatasetFolder(folder).require_ours()
    card = render_dataset_card(folder, **kwargs)
    return atomic_write_text(dataset.card, str(card))
