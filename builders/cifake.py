"""The CIFAKE ``datasets`` builder: REAL rows from a CIFAR-10 source, FAKE rows straight from
the diffusion generator's checkpointed units (:mod:`cifake_hub.builders.units`), written as a
dataset folder (Parquet shards + card YAML).

The builder is the writer: its example generator feeds the folder writer directly, one
pass, no Arrow cache. ``CifakeBuilder`` is also a regular ``GeneratorBasedBuilder`` for
whoever wants ``download_and_prepare``. Rows come out in a fixed order, so any number of
processes gives the same dataset as one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from cifake_hub._compat import builder_rows
from cifake_hub.builders.encoding import RowFinisher
from cifake_hub.builders.folder import DatasetFolderWriter
from cifake_hub.builders.generate import GeneratorConfig, recorded_id
from cifake_hub.builders.imported import ImportedSpec, SourceReport, Taken, read_source
from cifake_hub.builders.sources import parse_source
from cifake_hub.builders.units import (
    BuildConfig,
    check_plan,
    make_units,
    shard_images,
    unit_path,
    unit_record,
    units,
    wait_for_units,
)
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.images import encode_png
from cifake_hub.outputs import atomic_write_text, check_replaceable, claim, json_text, writes
from cifake_hub.schema import FAKE, REAL, SPLITS, features, make_row


class CifakeBuilder(datasets.GeneratorBasedBuilder):
    """REAL rows from the CIFAR-10 source and the brought REAL sources, then FAKE rows from
    the checkpointed units and the brought FAKE sources."""

    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args: Any, build_config: BuildConfig, **kwargs: Any):
        self.build_config = build_config
        # Each brought source is read (and checked) once, for both splits.
        self._brought: dict[str, tuple[str, ImportedSpec, list[Taken], SourceReport]] = {}
        super().__init__(*args, **kwargs)

    def brought(self) -> list[tuple[str, ImportedSpec, list[Taken], SourceReport]]:
        for role, spec in self.build_config.imported():
            if spec.name not in self._brought:
                taken, report = read_source(spec, role, self.build_config.test_fraction)
                self._brought[spec.name] = (role, spec, taken, report)
        return list(self._brought.values())

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(features=features(self.build_config.generator_names))

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": split})
            for split in SPLITS
            if self.build_config.per_class(split) > 0
            or any(t.split == split for _, _, taken, _ in self.brought() for t in taken)
        ]

    def real_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The REAL rows of ``split``: the CIFAR-10 source's, then the brought ones."""
        cfg = self.build_config
        for spec in cfg.cifar_sources:
            for row in parse_source(spec).rows(split, per_class=cfg.per_class(split)):
                yield f"REAL/{row['category']}/{row['source_index']}", row
        yield from self._brought_rows(split, "REAL")

    def real_rows_by_class(self, split: str) -> dict[int, list[dict[str, Any]]]:
        """The REAL rows of ``split`` by class, in the order they are written (aligned
        twins pair with them); rows without a class are left out."""
        by_class: dict[int, list[dict[str, Any]]] = {}
        for _, row in self.real_examples(split):
            if row["category"] is not None:
                by_class.setdefault(row["category"], []).append(row)
        return by_class

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        cfg = self.build_config
        yield from self.real_examples(split)
        for unit in units(cfg):
            if unit.jobs[0].split != split:
                continue
            table = pq.read_table(unit_path(Path(cfg.out), unit.name))
            for row in table.to_pylist():
                yield f"FAKE/{row['category']}/{row['source_index']}", row
        yield from self._brought_rows(split, "FAKE")

    def _brought_rows(self, split: str, role: str) -> Iterator[tuple[str, dict[str, Any]]]:
        names = self.build_config.generator_names
        for source_role, spec, taken, _ in self.brought():
            if source_role != role:
                continue
            for t in taken:
                if t.split != split:
                    continue
                data = encode_png(t.pixels) if t.resized_from else t.original
                row = make_row(
                    data,
                    FAKE if role == "FAKE" else REAL,
                    t.category,
                    image_path=t.key.rsplit("/", 1)[-1],
                    generator=names.index(spec.name) if role == "FAKE" else None,
                    source=spec.name,
                    source_file=t.key,
                    source_index=t.index,
                )
                yield f"{role}/{spec.name}/{t.index}", row


def assemble(
    config: BuildConfig, overwrite: bool = False, extra: Callable[[Path], None] | None = None
) -> tuple[dict[str, int], dict[str, Any]]:
    """Write the dataset folder from the builder's examples (REAL + finished FAKE units +
    brought sources); returns the rows per split and the build report.

    The folder is replaced atomically with the checkpoints carried over; ``extra`` writes
    more files (the configs) into the new folder before the swap.
    """
    dataset = DatasetFolder(config.out)
    with (
        # The builder is used for its split and example generators only; datasets still puts
        # a lock file into its cache folder, which must not end up among the checkpoints.
        tempfile.TemporaryDirectory(prefix="cifake-builder-") as cache,
        DatasetFolderWriter(
            dataset.path,
            overwrite=overwrite,
            keep=(dataset.WORK,),
            generators=config.generator_names,
        ) as writer,
    ):
        builder = CifakeBuilder(cache_dir=cache, build_config=config)
        finisher = RowFinisher(config.encoding)
        for split, row in builder_rows(builder):
            source = row["model_id"] or row["source"] or "unknown"
            writer.add(split, finisher.finish(split, row, source))
        stats = writer.close(pretty_name="CIFAKE (generated)")
        sources = [r for _, _, _, r in builder.brought()]
        for r in sources:  # as found, not as the resized intermediate the finisher saw
            finisher.before[r.name] = r.encodings.copy()
        report = {**build_report(config, sources), **finisher.report()}
        atomic_write_text(
            DatasetFolder(writer.folder).file(DatasetFolder.BUILD_REPORT), json_text(report)
        )
        if extra is not None:
            extra(writer.folder)
    return {split: s.num_examples for split, s in stats.items()}, report


def build_report(config: BuildConfig, sources: list[SourceReport]) -> dict[str, Any]:
    """Per generator: its ``--generator`` value, FAKE images per class and split, the family
    of its settings, and images, generation seconds and devices summed over its unit files
    (so a resumed or sharded build reports all of its work); brought FAKE sources as
    generators of the family "imported"; and each brought source's report."""
    entries: list[dict[str, Any]] = [
        {"generator": r.name, "spec": r.spec, "per_class": None, "family": "imported"}
        for r in sources
        if r.role == "FAKE"
    ]
    every = units(config)
    for g, spec in enumerate(config.specs):
        if recorded_id(spec.model_id) not in config.generated_names:
            continue
        records = [
            unit_record(unit_path(Path(config.out), u.name)) for u in every if u.generator == g
        ]
        # Units written before units recorded how they were made have no record.
        records = [r for r in records if r]
        images = sum(r["images"] for r in records)
        seconds = round(sum(r["seconds"] for r in records), 3)
        entries.append(
            {
                "generator": recorded_id(spec.model_id),
                "spec": config.generators[g],
                "per_class": {split: config.quotas(split)[g] for split in SPLITS},
                "family": records[0]["family"] if records else None,
                "zoo": records[0].get("zoo") if records else None,
                "devices": sorted({r["device"] for r in records}),
                "images_timed": images,
                "seconds": seconds,
                "seconds_per_image": round(seconds / images, 4) if images else None,
            }
        )
    return {
        "generators": sorted(entries, key=lambda e: e["generator"]),
        "sources": [r.to_dict() for r in sources],
    }


@dataclass
class BuildOutcome:
    made: int  # FAKE images generated by this process
    todo: int  # FAKE images this process was responsible for
    blacked_out: int  # renders the safety checker blacked out, made again
    rows: dict[str, int] | None  # rows per split; None on shards other than 0
    report: dict[str, Any] | None = None  # build_report.json; None on shards other than 0


@writes("config.out", shared=lambda config, *args, **kwargs: config.world > 1)
def build_dataset(
    config: BuildConfig,
    gen_config: GeneratorConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BuildOutcome:
    """``cifake build``: this shard's FAKE units, then (shard 0) the dataset folder.

    ``config.out`` is an output folder (cifake_hub.outputs): a new or empty one, or one an
    earlier build wrote (resumed); a finished dataset is replaced only with ``overwrite``.
    """
    claim(config.out, DatasetFolder.KIND)
    check_replaceable(
        config.out, DatasetFolder.KIND, overwrite=overwrite, keep=(DatasetFolder.WORK,)
    )
    check_plan(config, gen_config, overwrite=overwrite)
    todo = shard_images(config)
    with tempfile.TemporaryDirectory(prefix="cifake-builder-") as cache:
        builder = CifakeBuilder(cache_dir=cache, build_config=config)
        made, blacked_out = make_units(
            config, gen_config, progress=progress, real_rows=builder.real_rows_by_class
        )
    outcome = BuildOutcome(made, todo, blacked_out, None)
    if config.rank != 0:
        return outcome
    wait_for_units(config)

    def save_configs(folder: Path) -> None:
        gen_config.save(folder / DatasetFolder.GENERATOR_CONFIG)
        config.save(folder / DatasetFolder.BUILD_CONFIG)

    outcome.rows, outcome.report = assemble(config, overwrite=overwrite, extra=save_configs)
    return outcome
