"""The CIFAKE ``datasets`` builder: REAL rows from a CIFAR-10 source, FAKE rows straight from
the diffusion generator, written as a dataset folder (Parquet shards + card YAML).

FAKE work is split into units (split, class, block of ``unit_size`` indices). A finished unit
is checkpointed as one Parquet file under ``OUT/.work/`` (written to a temporary name, then
renamed), so a run killed at any moment and started again skips finished units and neither
loses nor duplicates rows. Units are dealt to processes round-robin: with torchrun or
``accelerate launch`` every process takes its share (or ``--num-shards/--shard-index`` by
hand, e.g. one per node), shard 0 waits for the others and assembles the dataset. Rows come
out in a fixed order, so any number of processes gives the same dataset as one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from cifake_hub.config import Config
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.folder import DATASET_KIND, DatasetFolderWriter
from cifake_hub.generate import FakeImageGenerator, GeneratorConfig, Job
from cifake_hub.outputs import check_replaceable, claim
from cifake_hub.schema import CLASS_NAMES, COLUMNS, SPLITS, features
from cifake_hub.sources import DEFAULT_REAL_SOURCE, parse_source

WORK_DIR = ".work"
BUILD_CONFIG_FILE = "build_config.json"
GENERATOR_CONFIG_FILE = "generator_config.json"
PAPER_PER_CLASS = {"train": 5_000, "test": 1_000}


@dataclass(frozen=True)
class BuildConfig(Config):
    out: str
    real: str = DEFAULT_REAL_SOURCE
    per_class_train: int = PAPER_PER_CLASS["train"]
    per_class_test: int = PAPER_PER_CLASS["test"]
    unit_size: int = 100  # FAKE images per checkpointed unit
    num_shards: int = 1
    shard_index: int = 0

    def __post_init__(self) -> None:
        if self.per_class_train < 0 or self.per_class_test < 0:
            raise ConfigError("per-class counts must be >= 0")
        if self.per_class_train + self.per_class_test == 0:
            raise ConfigError("per-class counts are both 0: nothing to build")
        if self.unit_size < 1:
            raise ConfigError(f"unit size must be >= 1, got {self.unit_size}")
        if not 0 <= self.shard_index < self.num_shards:
            raise ConfigError(f"shard index {self.shard_index} is not in [0, {self.num_shards})")

    def per_class(self, split: str) -> int:
        return self.per_class_train if split == "train" else self.per_class_test


def units(config: BuildConfig) -> list[tuple[str, list[Job]]]:
    """Every FAKE unit (name, jobs), in the order rows are written."""
    out = []
    for split in SPLITS:
        n = config.per_class(split)
        for category in range(len(CLASS_NAMES)):
            for start in range(0, n, config.unit_size):
                jobs = [
                    Job(split, category, i) for i in range(start, min(n, start + config.unit_size))
                ]
                out.append((f"{split}-{category:02d}-{start:06d}", jobs))
    return out


def _unit_path(out: Path, name: str) -> Path:
    return out / WORK_DIR / f"{name}.parquet"


def make_units(
    config: BuildConfig,
    generator: FakeImageGenerator,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Generate this shard's unfinished units; returns how many images were made."""
    schema = features().arrow_schema
    made = 0
    for i, (name, jobs) in enumerate(units(config)):
        path = _unit_path(Path(config.out), name)
        if i % config.num_shards != config.shard_index or path.exists():
            continue
        rows = []
        size = generator.config.batch_size
        for start in range(0, len(jobs), size):
            rows += [g.row for g in generator.generate(jobs[start : start + size])]
            if progress:
                progress(min(size, len(jobs) - start))
        table = pa.Table.from_pylist(rows, schema=schema)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # atomic: a unit file is either whole or absent
        made += len(rows)
    return made


def wait_for_units(config: BuildConfig, timeout_s: float = 7 * 24 * 3600) -> None:
    missing = [n for n, _ in units(config) if not _unit_path(Path(config.out), n).exists()]
    deadline = time.monotonic() + timeout_s
    while missing:
        if time.monotonic() > deadline:
            raise CifakeError(
                f"{len(missing)} FAKE units never appeared in {config.out}/{WORK_DIR}"
            )
        time.sleep(5)
        missing = [n for n in missing if not _unit_path(Path(config.out), n).exists()]


class CifakeBuilder(datasets.GeneratorBasedBuilder):
    """REAL rows from the CIFAR-10 source, then FAKE rows from the checkpointed units."""

    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args: Any, build_config: BuildConfig, **kwargs: Any):
        self.build_config = build_config
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(features=features())

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": split})
            for split in SPLITS
            if self.build_config.per_class(split) > 0
        ]

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        cfg = self.build_config
        for row in parse_source(cfg.real).rows(split, per_class=cfg.per_class(split)):
            yield f"REAL/{row['category']}/{row['source_index']}", row
        for name, _ in units(cfg):
            if not name.startswith(split + "-"):
                continue
            table = pq.read_table(_unit_path(Path(cfg.out), name))
            for row in table.to_pylist():
                yield f"FAKE/{row['category']}/{row['source_index']}", row


def assemble(
    config: BuildConfig, overwrite: bool = False, extra: Callable[[Path], None] | None = None
) -> dict[str, Any]:
    """Run the builder over REAL + finished FAKE units and write the dataset folder.

    The folder is replaced atomically with the checkpoints carried over; ``extra`` writes
    more files (the configs) into the new folder before the swap.
    """
    out = Path(config.out)
    cache = out / WORK_DIR / "cache"
    builder = CifakeBuilder(cache_dir=str(cache), build_config=config)
    builder.download_and_prepare()
    with DatasetFolderWriter(out, overwrite=overwrite, keep=(WORK_DIR,)) as writer:
        for split in builder.info.splits:
            ds = builder.as_dataset(split=split).cast_column("image", datasets.Image(decode=False))
            for batch in ds.with_format("arrow").iter(batch_size=1_000):
                for row in batch.select(list(COLUMNS)).to_pylist():
                    writer.add(split, row)
        stats = writer.close(pretty_name="CIFAKE (generated)")
        shutil.rmtree(cache, ignore_errors=True)
        if extra is not None:
            extra(writer.folder)
    return {split: s.num_examples for split, s in stats.items()}


@dataclass
class BuildOutcome:
    made: int  # FAKE images generated by this process
    todo: int  # FAKE images this process was responsible for
    blacked_out: int  # renders the safety checker blacked out, made again
    rows: dict[str, int] | None  # rows per split; None on shards other than 0


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
    claim(config.out, DATASET_KIND)
    check_replaceable(config.out, DATASET_KIND, overwrite=overwrite, keep=(WORK_DIR,))
    todo = sum(
        len(jobs)
        for i, (_, jobs) in enumerate(units(config))
        if i % config.num_shards == config.shard_index
    )
    generator = FakeImageGenerator(gen_config)
    made = make_units(config, generator, progress=progress)
    outcome = BuildOutcome(made, todo, generator.blacked_out, None)
    if config.shard_index != 0:
        return outcome
    wait_for_units(config)

    def save_configs(folder: Path) -> None:
        gen_config.save(folder / GENERATOR_CONFIG_FILE)
        config.save(folder / BUILD_CONFIG_FILE)

    outcome.rows = assemble(config, overwrite=overwrite, extra=save_configs)
    return outcome
