"""The dataset card: composition, provenance, encoding, duplicates, loading, citations.

Every number comes from the Parquet files (and the import report when there is one); the
YAML keeps the ``dataset_info`` and ``configs`` that ``load_dataset(DIR)`` needs.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from cifake_hub.cards.common import CITATIONS, TEMPLATES, fmt_int, size_category
from cifake_hub.cards.study_card import study_table

from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import DatasetFolderError
from cifake_hub.outputs import atomic_write_text
from cifake_hub.schema import (
    CLASS_NAMES,
    GENERATOR,
    KAGGLE_SOURCE,
    LABEL_NAMES,
    SPLITS,
    TINY_MODEL_IDS,
    dataset_generators,
)

TEMPLATE = TEMPLATES / "dataset_card.md.j2"
_STANDARD_LUMA = (  # the JPEG standard's luminance table (Annex K), in zig-zag order
    16,
    11,
    12,
    14,
    12,
    10,
    16,
    14,
    13,
    14,
    18,
    17,
    16,
    19,
    24,
    40,
    26,
    24,
    22,
    22,
    24,
    49,
    35,
    37,
    29,
    40,
    58,
    51,
    61,
    60,
    57,
    51,
    56,
    55,
    64,
    72,
    92,
    78,
    64,
    68,
    87,
    69,
    55,
    56,
    80,
    109,
    81,
    87,
    95,
    98,
    103,
    104,
    103,
    62,
    77,
    113,
    121,
    112,
    100,
    120,
    92,
    101,
    103,
    99,
)


def jpeg_quality(data: bytes) -> int | None:
    """The IJG quality whose scaled standard table best matches the first quantisation
    table of a baseline JPEG, or None when there is none."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDB and length >= 67 and data[i + 4] >> 4 == 0:
            return _closest_quality(data[i + 5 : i + 69])
        if marker == 0xDA:
            break
        i += 2 + length
    return None


@functools.lru_cache(maxsize=4096)
def _closest_quality(table: bytes) -> int:
    # A dataset holds few distinct tables (one per encoder setting): match each once.
    return min(
        range(1, 101),
        key=lambda q: sum(
            abs(_scaled(s, q) - t) for s, t in zip(_STANDARD_LUMA, table, strict=True)
        ),
    )


def _scaled(base: int, quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return min(255, max(1, (base * scale + 50) // 100))


def _describe_encoding(data: bytes) -> tuple[str, str, str]:
    if data[:2] == b"\xff\xd8":
        import simplejpeg

        try:
            subsampling = simplejpeg.decode_jpeg_header(data)[3]
        except ValueError:
            subsampling = "?"
        quality = jpeg_quality(data)
        return "JPEG", f"q{quality}" if quality else "?", subsampling
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG", "lossless", "none"
    return "other", "-", "-"


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
        table = pq.read_table(
            path,
            columns=[
                *([GENERATOR] if names else []),
                "image",
                "label",
                "category",
                "source",
                "prompt",
                "model_id",
                "scheduler",
                "steps",
                "guidance_scale",
                "render_size",
            ],
        )
        cols = {
            name: table.column(name).to_pylist() for name in table.column_names if name != "image"
        }
        blobs = table.column("image").combine_chunks().field("bytes").to_pylist()
        for i, label in enumerate(cols["label"]):
            cells[(split, label, cols["category"][i])] += 1
            sources[(label, cols["source"][i] or "unknown")] += 1
            if cols["model_id"][i] and cols["scheduler"][i]:
                generators[
                    (
                        cols["model_id"][i],
                        cols["scheduler"][i],
                        cols["steps"][i],
                        cols["guidance_scale"][i],
                        cols["render_size"][i],
                    )
                ] += 1
            if cols["prompt"][i]:
                prompts[(cols["category"][i], cols["prompt"][i])] += 1
            encodings[(label, *_describe_encoding(blobs[i] or b""))] += 1
            if names and cols[GENERATOR][i] is not None:
                per_generator[(names[cols[GENERATOR][i]], split)] += 1
    return {
        "cells": cells,
        "sources": sources,
        "generators": generators,
        "prompts": prompts,
        "encodings": encodings,
        "per_generator": per_generator,
    }


def generator_table(folder: Path, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per generator of the ``generator`` column: FAKE images per split, the
    settings its rows record, and (for `cifake build`) how it was given, its family and
    the generation time per image from the build report."""
    counts: Counter[tuple[str, str]] = stats["per_generator"]
    report_path = DatasetFolder(folder).file(DatasetFolder.BUILD_REPORT)
    built = (
        {g["generator"]: g for g in json.loads(report_path.read_text())["generators"]}
        if report_path.exists()
        else {}
    )
    out = []
    for name in sorted({g for g, _ in counts}):
        settings = sorted(
            f"{sched}, {steps} steps, guidance {guid:g}, {size} px"
            for (m, sched, steps, guid, size) in stats["generators"]
            if m == name
        )
        entry = built.get(name, {})
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
    composition = []
    for split in SPLITS:
        for label in (1, 0):
            counts = [cells.get((split, label, c), 0) for c in range(len(CLASS_NAMES))]
            if sum(counts):
                composition.append(
                    {
                        "split": split,
                        "label": LABEL_NAMES[label],
                        "counts": [fmt_int(n) for n in counts],
                        "total": fmt_int(sum(counts)),
                    }
                )
    report = dataset.report()
    duplicates = None
    if report is not None:
        dup = report["duplicates"]
        if dup["groups"]:
            duplicates = {**dup, "per_cell": dup["extra_copies_per_split_label_class"]}
    sources = stats["sources"]
    generators = [
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
    tiny = set(TINY_MODEL_IDS.values())
    noise = next((g["model_id"] for g in generators if g["model_id"] in tiny), None)
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        pretty_name=pretty_name,
        noise_warning=noise,
        model_repo=model_repo,
        model_url=f"{endpoint}/{model_repo}" if model_repo else None,
        total_rows=fmt_int(total),
        class_names=CLASS_NAMES,
        composition=composition,
        real_sources=[
            {"name": s, "count": fmt_int(n)} for (lab, s), n in sorted(sources.items()) if lab == 1
        ],
        fake_sources=[
            {"name": s, "count": fmt_int(n)} for (lab, s), n in sorted(sources.items()) if lab == 0
        ],
        kaggle=any(s == KAGGLE_SOURCE for _, s in sources),
        generators=generators,
        generator_table=generator_table(folder, stats),
        study=study_table(study) if (study := dataset.study()) else None,
        splits=SPLITS,
        prompts=[
            {"category": CLASS_NAMES[c], "prompt": p, "count": fmt_int(n)}
            for (c, p), n in sorted(stats["prompts"].items())
        ],
        encoding_note=_encoding_note(stats["encodings"]),
        encodings=[
            {
                "label": LABEL_NAMES[lab],
                "format": f,
                "quality": q,
                "subsampling": sub,
                "count": fmt_int(n),
            }
            for (lab, f, q, sub), n in sorted(
                stats["encodings"].items(), key=lambda kv: (-kv[0][0], kv[0])
            )
        ],
        duplicates=duplicates,
        load_id=repo_id or str(folder),
        citations=CITATIONS,
    )
    return card


def write_dataset_card(folder: str | Path, **kwargs: Any) -> Path:
    """Render the card into ``folder/README.md``, keeping its ``dataset_info``/``configs``."""
    dataset = DatasetFolder(folder).require_ours()
    card = render_dataset_card(folder, **kwargs)
    return atomic_write_text(dataset.card, str(card))
