"""FAKE work in checkpointed units: what makes `cifake build` resumable and shardable.

A unit is (split, class, block of ``unit_size`` indices). A finished unit is one Parquet file
in the dataset folder's work directory (written to a temporary name, then renamed), so a run
killed at any moment and started again skips finished units and neither loses nor
duplicates rows. Units are dealt to processes round-robin: with torchrun or ``accelerate
launch`` every process takes its share (or ``--num-shards/--shard-index`` by hand, e.g. one
per node); shard 0 waits for the others and assembles the dataset
(:mod:`cifake_hub.builders.cifake`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cifake_hub.builders.generate import FakeImageGenerator, Job
from cifake_hub.builders.sources import DEFAULT_REAL_SOURCE

from cifake_hub.config import Config, option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.schema import CLASS_NAMES, SPLITS, features

PAPER_PER_CLASS = {"train": 5_000, "test": 1_000}


@dataclass(frozen=True)
class BuildConfig(Config):
    out: str = option(help="output dataset folder")
    real: str = option(
        DEFAULT_REAL_SOURCE, "REAL source: hub:ID, cifar-tar:PATH or dir:PATH", metavar="SOURCE"
    )
    per_class_train: int = option(PAPER_PER_CLASS["train"], "train images per class and label")
    per_class_test: int = option(PAPER_PER_CLASS["test"], "test images per class and label")
    unit_size: int = option(100, "FAKE images per checkpoint")
    # None: from torchrun / accelerate launch (WORLD_SIZE, RANK), else one process.
    num_shards: int | None = option(None, "processes in all (default: torchrun's WORLD_SIZE)")
    shard_index: int | None = option(None, "this process (default: torchrun's RANK)")

    def __post_init__(self) -> None:
        # torchrun and accelerate launch both export these; no process group is needed,
        # since processes share work through the unit files only.
        if self.num_shards is None:
            object.__setattr__(self, "num_shards", int(os.environ.get("WORLD_SIZE", 1)))
        if self.shard_index is None:
            object.__setattr__(self, "shard_index", int(os.environ.get("RANK", 0)))
        if self.per_class_train < 0 or self.per_class_test < 0:
            raise ConfigError("per-class counts must be >= 0")
        if self.per_class_train + self.per_class_test == 0:
            raise ConfigError("per-class counts are both 0: nothing to build")
        if self.unit_size < 1:
            raise ConfigError(f"unit size must be >= 1, got {self.unit_size}")
        if not 0 <= self.rank < self.world:
            raise ConfigError(f"shard index {self.shard_index} is not in [0, {self.num_shards})")

    @property
    def rank(self) -> int:
        """This process's shard (``shard_index``, resolved)."""
        return int(self.shard_index or 0)

    @property
    def world(self) -> int:
        """Processes in all (``num_shards``, resolved)."""
        return int(self.num_shards or 1)

    def mine(self, unit: int) -> bool:
        """Whether the ``unit``-th unit is this process's (round-robin)."""
        return unit % self.world == self.rank

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


def shard_images(config: BuildConfig) -> int:
    """How many FAKE images this process is responsible for."""
    return sum(len(jobs) for i, (_, jobs) in enumerate(units(config)) if config.mine(i))


def unit_path(out: Path, name: str) -> Path:
    return DatasetFolder(out).work_dir / f"{name}.parquet"


def make_units(
    config: BuildConfig,
    generator: FakeImageGenerator,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Generate this shard's unfinished units; returns how many images were made."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features().arrow_schema
    made = 0
    for i, (name, jobs) in enumerate(units(config)):
        path = unit_path(Path(config.out), name)
        if not config.mine(i) or path.exists():
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
    missing = [n for n, _ in units(config) if not unit_path(Path(config.out), n).exists()]
    deadline = time.monotonic() + timeout_s
    while missing:
        if time.monotonic() > deadline:
            raise CifakeError(
                f"{len(missing)} FAKE units never appeared in {DatasetFolder(config.out).work_dir}"
            )
        time.sleep(5)
        missing = [n for n in missing if not unit_path(Path(config.out), n).exists()]
