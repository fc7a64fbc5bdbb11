"""FAKE work in checkpointed units: what makes `cifake build` resumable and shardable.

A unit is (split, class, generator, block of ``unit_size`` indices). A finished unit is one
Parquet file in the dataset folder's work directory (written to a temporary name, then
renamed), so a run killed at any moment and started again skips finished units and neither
loses nor duplicates rows. Units are dealt to processes round-robin: with torchrun or
``accelerate launch`` every process takes its share (or ``--num-shards/--shard-index`` by
hand, e.g. one per node); shard 0 waits for the others and assembles the dataset
(:mod:`cifake_hub.builders.cifake`).

With several generators (``--generator A --generator B``), each class's FAKE quota is split
between them (evenly, or by the shares ``A:N``), in consecutive index ranges: image ``i`` of
a class has the same prompt and seed whichever generator makes it, and a one-generator build
is exactly the paper's. The plan (generators, quotas, settings) is recorded in the work
directory; resuming with another plan is refused rather than mixing two builds.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifake_hub.builders.encoding import AUTO, Encoding
from cifake_hub.builders.generate import (
    DEFAULT_MODEL,
    GeneratorConfig,
    GeneratorSpec,
    Job,
    recorded_id,
)
from cifake_hub.builders.imported import ImportedSpec
from cifake_hub.builders.sources import DEFAULT_REAL_SOURCE
from cifake_hub.builders.zoo_generator import RealRows, open_generator
from cifake_hub.config import Config, option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.outputs import atomic_write_text, json_text, read_json
from cifake_hub.schema import CLASS_NAMES, SPLITS, features, generator_names

PAPER_PER_CLASS = {"train": 5_000, "test": 1_000}


@dataclass(frozen=True)
class BuildConfig(Config):
    out: str = option(help="output dataset folder")
    real: tuple[str, ...] = option(
        (DEFAULT_REAL_SOURCE,),
        "REAL source: CIFAR-10 as hub:ID, cifar-tar:PATH or dir:PATH, and/or your own images as "
        "dir:PATH@NAME, parquet:PATH@NAME or hub:REPO[:SPLIT][:COLUMN]@NAME (then :N for at "
        "most N per class and split)",
        metavar="SOURCE",
    )
    fake: tuple[str, ...] = option(
        (),
        "FAKE images you bring, beside the generated ones: dir:PATH@NAME, parquet:PATH@NAME or "
        "hub:REPO[:SPLIT][:COLUMN]@NAME (then :N for at most N per class and split); NAME "
        "fills the generator column",
        metavar="SOURCE",
    )
    test_fraction: float = option(
        1 / 6, "share of each class of a brought source without splits that goes to test"
    )
    encoding: str = option(
        "auto", "encoding of every row: png, jpeg:Q, or auto (the first REAL source's)"
    )
    generators: tuple[str, ...] = option(
        (DEFAULT_MODEL,),
        "FAKE generator: a diffusers text-to-image model id or local folder, or tiny, "
        "tiny-sdxl, tiny-pixart (random weights, offline); repeat it for a mixed build. "
        "MODEL[:N][,steps=S][,guidance=G][,size=R]: N is its share of each class's FAKE "
        "images (default: even shares), the settings are for it alone",
        flag="--generator",
        metavar="MODEL",
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
        if isinstance(self.real, str):  # build_config.json of builds before --real repeated
            object.__setattr__(self, "real", (self.real,))
        if self.per_class_train + self.per_class_test == 0 and not self.imported():
            raise ConfigError(
                "per-class counts are both 0 and no --fake/--real @NAME: nothing to build"
            )
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test fraction must be in (0, 1), got {self.test_fraction}")
        if self.encoding != AUTO:
            Encoding.parse(self.encoding)
        if len(self.cifar_sources) > 1:
            raise ConfigError(
                f"give at most one CIFAR-10 --real source, got {', '.join(self.cifar_sources)}"
            )
        names = [s.name for _, s in self.imported()]
        clash = sorted(
            {n for n in names if names.count(n) > 1} | (set(names) & set(self.generated_names))
        )
        if clash:
            raise ConfigError(
                f"source name {clash[0]!r} is used twice (by another @NAME or a --generator); "
                "give each source its own name"
            )
        if self.unit_size < 1:
            raise ConfigError(f"unit size must be >= 1, got {self.unit_size}")
        if not 0 <= self.rank < self.world:
            raise ConfigError(f"shard index {self.shard_index} is not in [0, {self.num_shards})")
        specs = self.specs
        if not specs:
            raise ConfigError("no --generator given")
        ids = [recorded_id(s.model_id) for s in specs]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ConfigError(
                f"--generator {twice[0]!r} is given twice; give each model once (its share "
                "sets how many images it makes)"
            )
        if len({s.share is None for s in specs}) > 1:
            raise ConfigError(
                "give a share N for every --generator MODEL:N, or for none (even shares)"
            )

    # Derived from the frozen fields once: units, quotas and names ask for them often.
    @functools.cached_property
    def specs(self) -> tuple[GeneratorSpec, ...]:
        return tuple(GeneratorSpec.parse(text) for text in self.generators)

    @property
    def cifar_sources(self) -> tuple[str, ...]:
        """The CIFAR-10 REAL sources (no ``@NAME``)."""
        return tuple(s for s in self.real if "@" not in s)

    def imported(self) -> list[tuple[str, ImportedSpec]]:
        """("REAL" or "FAKE", spec) of every source of brought images, in command-line order."""
        return [("REAL", ImportedSpec.parse(s, "real")) for s in self.real if "@" in s] + [
            ("FAKE", ImportedSpec.parse(s, "fake")) for s in self.fake
        ]

    @functools.cached_property
    def generated_names(self) -> tuple[str, ...]:
        """The model ids of the generators that make images in this build."""
        return tuple(
            recorded_id(s.model_id)
            for g, s in enumerate(self.specs)
            if any(self.quotas(split)[g] for split in SPLITS)
        )

    @functools.cached_property
    def generator_names(self) -> tuple[str, ...]:
        """The ``generator`` ClassLabel names of the dataset this build writes: generated
        and brought FAKE sources."""
        brought = [s.name for role, s in self.imported() if role == "FAKE"]
        return generator_names([*self.generated_names, *brought])

    def quotas(self, split: str) -> list[int]:
        """Each generator's FAKE images per class in ``split``: the per-class count split by
        the shares, largest remainders first (ties to the generator given first)."""
        n = self.per_class(split)
        shares = [s.share or 1 for s in self.specs]
        exact = [n * w / sum(shares) for w in shares]
        counts = [int(e) for e in exact]
        order = sorted(range(len(shares)), key=lambda g: (-(exact[g] - counts[g]), g))
        for g in order[: n - sum(counts)]:
            counts[g] += 1
        return counts

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


@dataclass(frozen=True)
class Unit:
    name: str
    generator: int  # index into BuildConfig.specs
    jobs: tuple[Job, ...]


def units(config: BuildConfig) -> list[Unit]:
    """Every FAKE unit, in the order rows are written (split, class, generator, index)."""
    slugs = [
        re.sub(r"[^a-z0-9]+", "-", recorded_id(s.model_id).lower()).strip("-")[-40:]
        for s in config.specs
    ]
    out = []
    for split in SPLITS:
        quotas = config.quotas(split)
        for category in range(len(CLASS_NAMES)):
            first = 0
            for g, quota in enumerate(quotas):
                stop = first + quota
                for start in range(first, stop, config.unit_size):
                    jobs = tuple(
                        Job(split, category, i)
                        for i in range(start, min(stop, start + config.unit_size))
                    )
                    name = f"{split}-{category:02d}-g{g}-{slugs[g]}-{start:06d}"
                    out.append(Unit(name, g, jobs))
                first = stop
    return out


def shard_images(config: BuildConfig) -> int:
    """How many FAKE images this process is responsible for."""
    return sum(len(u.jobs) for i, u in enumerate(units(config)) if config.mine(i))


def unit_path(out: Path, name: str) -> Path:
    return DatasetFolder(out).work_dir / f"{name}.parquet"


PLAN = "plan.json"
UNIT_META = b"cifake_unit"  # Parquet metadata key of a unit file: how it was made


def plan_record(config: BuildConfig, shared: GeneratorConfig) -> dict[str, Any]:
    """What fixes every FAKE row of a build: resuming must not change any of it."""
    return {
        "generators": list(config.generators),
        "generator_names": list(config.generator_names),
        "per_class": {split: config.per_class(split) for split in SPLITS},
        "unit_size": config.unit_size,
        "seed": shared.seed,
        "steps": shared.steps,
        "guidance_scale": shared.guidance_scale,
        "render_size": shared.render_size,
    }


def check_plan(config: BuildConfig, shared: GeneratorConfig, *, overwrite: bool) -> None:
    """Record the plan of this build, or check it against the one its checkpoints were made
    with. ``overwrite`` drops checkpoints of another plan (the toolkit wrote them)."""
    work = DatasetFolder(config.out).work_dir
    path = work / PLAN
    plan = plan_record(config, shared)
    earlier = read_json(path) if path.exists() else None
    if earlier == plan:
        return
    stale = sorted(work.glob("*.parquet"))
    if earlier is not None and not overwrite:
        changed = sorted(k for k in plan if plan[k] != earlier.get(k))
        raise ConfigError(
            f"{config.out} holds checkpoints of a build with other {', '.join(changed)}; "
            "run it again with the same options, or add --overwrite to start over"
        )
    if stale and not overwrite:
        # Checkpoints from before plans were recorded: what made them is unknown.
        raise ConfigError(
            f"{config.out} holds checkpoints with no recorded plan; add --overwrite to start over"
        )
    for unit in stale:
        unit.unlink()
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json_text(plan))


def unit_record(path: Path) -> dict[str, Any]:
    """How a finished unit was made (generator, family, device, seconds, images)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return dict(json.loads(meta[UNIT_META])) if UNIT_META in meta else {}


def make_units(
    config: BuildConfig,
    shared: GeneratorConfig,
    progress: Callable[[int], None] | None = None,
    real_rows: RealRows | None = None,
) -> tuple[int, int]:
    """Generate this shard's unfinished units, one generator at a time (each pipeline is
    loaded once, and only when it has work here). ``real_rows`` gives aligned generators
    the build's REAL rows. Returns (images made, blacked-out renders made again)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = config.generator_names
    schema = features(names).arrow_schema
    todo = [
        u
        for i, u in enumerate(units(config))
        if config.mine(i) and not unit_path(Path(config.out), u.name).exists()
    ]
    made = blacked_out = 0
    for g, spec in enumerate(config.specs):
        mine = [u for u in todo if u.generator == g]
        if not mine:
            continue
        label = names.index(recorded_id(spec.model_id))
        generator = open_generator(spec.config(shared), label, real_rows)
        size = generator.config.batch_size
        for unit in mine:
            started = time.perf_counter()
            rows = []
            for start in range(0, len(unit.jobs), size):
                batch = list(unit.jobs[start : start + size])
                rows += [made_row.row for made_row in generator.generate(batch)]
                if progress:
                    progress(min(size, len(unit.jobs) - start))
            record = {
                "generator": names[label],
                "family": generator.settings.family,
                "device": generator.device,
                "images": len(rows),
                "seconds": round(time.perf_counter() - started, 3),
            }
            if hasattr(generator, "summary"):  # a zoo generator: its training, for the card
                record["zoo"] = generator.summary
            table = pa.Table.from_pylist(rows, schema=schema)
            table = table.replace_schema_metadata(
                {**(schema.metadata or {}), UNIT_META: json.dumps(record).encode()}
            )
            path = unit_path(Path(config.out), unit.name)
            tmp = path.with_name(f".{unit.name}.{os.getpid()}.tmp")
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp)
            os.replace(tmp, path)  # atomic: a unit file is either whole or absent
            made += len(rows)
        blacked_out += generator.blacked_out
        del generator  # one pipeline in memory at a time
        gc.collect()
    return made, blacked_out


def wait_for_units(config: BuildConfig, timeout_s: float = 7 * 24 * 3600) -> None:
    missing = [u.name for u in units(config) if not unit_path(Path(config.out), u.name).exists()]
    deadline = time.monotonic() + timeout_s
    while missing:
        if time.monotonic() > deadline:
            raise CifakeError(
                f"{len(missing)} FAKE units never appeared in {DatasetFolder(config.out).work_dir}"
            )
        time.sleep(5)
        missing = [n for n in missing if not unit_path(Path(config.out), n).exists()]
