"""The writer of dataset folders (layout: :mod:`cifake_hub.dataset_folder`): Parquet shards
per split and the card YAML that ``datasets.load_dataset(DIR)`` and the Hub read.

Rows are streamed into row groups, so memory stays bounded whatever the size of the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cifake_hub.dataset_folder import DatasetFolder, set_dataset_yaml
from cifake_hub.errors import DatasetFolderError
from cifake_hub.outputs import Replacement
from cifake_hub.schema import COLUMNS, SPLITS, features

# Small row groups keep the Hub viewer and random access cheap for image tables.
ROW_GROUP_ROWS = 1_000
SHARD_ROWS = 50_000


@dataclass
class SplitStats:
    num_examples: int = 0
    num_bytes: int = 0  # Arrow size, as datasets counts it
    shards: list[str] = field(default_factory=list)
    file_bytes: int = 0  # Parquet size on disk


class _SplitWriter:
    """Appends rows of one split to numbered Parquet shards."""

    def __init__(self, data_dir: Path, split: str, schema: pa.Schema, shard_rows: int):
        self.data_dir, self.split, self.schema, self.shard_rows = (
            data_dir,
            split,
            schema,
            shard_rows,
        )
        self.stats = SplitStats()
        self._buffer: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        self._buffered = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_shard = 0

    def add(self, row: Mapping[str, Any]) -> None:
        for c in COLUMNS:
            self._buffer[c].append(row[c])
        self._buffered += 1
        if self._buffered >= min(ROW_GROUP_ROWS, self.shard_rows - self._rows_in_shard):
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        table = pa.Table.from_pydict(self._buffer, schema=self.schema)
        if self._writer is None:
            path = self.data_dir / f"{self.split}-{len(self.stats.shards):05d}.parquet.tmp"
            self.stats.shards.append(path.name)
            self._writer = pq.ParquetWriter(path, self.schema)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.stats.num_examples += table.num_rows
        self.stats.num_bytes += table.nbytes
        self._rows_in_shard += table.num_rows
        self._buffer = {c: [] for c in COLUMNS}
        self._buffered = 0
        if self._rows_in_shard >= self.shard_rows:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._rows_in_shard = 0

    def close(self) -> SplitStats:
        self._flush()
        self._close_shard()
        # Shard names carry the total ("-of-N"), known only now.
        total = len(self.stats.shards)
        final = []
        for i, tmp in enumerate(self.stats.shards):
            name = DatasetFolder.shard_name(self.split, i, total)
            (self.data_dir / tmp).rename(self.data_dir / name)
            self.stats.file_bytes += (self.data_dir / name).stat().st_size
            final.append(name)
        self.stats.shards = final
        return self.stats


class DatasetFolderWriter:
    """Streams rows into a dataset folder that replaces ``out_dir`` atomically.

    Rows go to a marked staging folder beside ``out_dir`` (:attr:`folder`; callers put their
    own files there too, e.g. a report); :meth:`close` writes the card YAML. Leaving the
    ``with`` block after :meth:`close` swaps the new folder in; an exception (or no
    :meth:`close`) removes it and leaves ``out_dir`` as it was. ``overwrite`` permits replacing
    a finished dataset; ``keep`` names entries of the old folder carried over (a build's
    checkpoints). See :mod:`cifake_hub.outputs` for what may be replaced.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        overwrite: bool = False,
        keep: tuple[str, ...] = (),
        shard_rows: int = SHARD_ROWS,
        generators: Sequence[str] = (),
    ):
        if shard_rows < 1:
            raise DatasetFolderError(f"shard_rows must be >= 1, got {shard_rows}")
        self.out_dir = Path(out_dir)
        self._target = Replacement(out_dir, DatasetFolder.KIND, overwrite=overwrite, keep=keep)
        self.folder = self._target.staging
        self.data_dir = DatasetFolder(self.folder).data_dir
        self.data_dir.mkdir()
        self.features = features(generators)
        self.schema = self.features.arrow_schema
        self.shard_rows = shard_rows
        self._splits: dict[str, _SplitWriter] = {}
        self.stats: dict[str, SplitStats] = {}
        self._closed = False

    def add(self, split: str, row: Mapping[str, Any]) -> None:
        writer = self._splits.get(split)
        if writer is None:
            if split not in SPLITS:
                raise DatasetFolderError(f"unknown split {split!r}; expected one of {SPLITS}")
            writer = self._splits[split] = _SplitWriter(
                self.data_dir, split, self.schema, self.shard_rows
            )
        writer.add(row)

    def add_many(self, split: str, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(split, row)

    def close(
        self, *, pretty_name: str = "CIFAKE", body: str | None = None
    ) -> dict[str, SplitStats]:
        for split in SPLITS:
            if split in self._splits:
                self.stats[split] = self._splits[split].close()
        if not self.stats:
            raise DatasetFolderError(f"no rows were written to {self.out_dir}")
        write_card_yaml(self.folder, self.stats, self.features, pretty_name=pretty_name, body=body)
        self._closed = True
        return self.stats

    def abort(self) -> None:
        for writer in self._splits.values():
            writer._close_shard()
        self._target.abort()

    def __enter__(self) -> DatasetFolderWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._closed:
            self.abort()
            return
        try:
            self._target.commit()
        except BaseException:
            self._target.abort()  # the staging folder goes; the old output stays
            raise


def write_card_yaml(
    out_dir: Path,
    stats: Mapping[str, SplitStats],
    row_features: Any,
    *,
    pretty_name: str,
    body: str | None,
) -> Path:
    """Write ``README.md`` whose YAML declares our features, splits, sizes and data files.

    The body is a short stub (or ``body``): a card with statistics of earlier rows would
    describe data that is no longer there. ``cifake card dataset`` renders the full card.
    """
    import datasets
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = DatasetFolder(out_dir)
    first = DatasetCardData(pretty_name=pretty_name, license="mit")
    card = DatasetCard(f"---\n{first.to_yaml()}\n---\n" + (body or _default_body(pretty_name)))
    data = card.data
    splits = datasets.SplitDict()
    for name, s in stats.items():
        splits.add(
            datasets.SplitInfo(name=name, num_bytes=s.num_bytes, num_examples=s.num_examples)
        )
    size = sum(f.stat().st_size for f in folder.shards())
    set_dataset_yaml(data, row_features, splits, size)
    card.data = data
    card.save(folder.card)
    return folder.card


def _default_body(pretty_name: str) -> str:
    return (
        f"\n# {pretty_name}\n\n"
        "REAL (CIFAR-10) and FAKE (Stable Diffusion) 32x32 images with CIFAR-10 classes, "
        "in the layout of the CIFAKE study (Bird & Lotfi 2023). "
        "Render the full card with `cifake card dataset DIR`.\n"
    )
