"""Images the user brings: FAKE or REAL sources from a folder, Parquet files or a Hub dataset.

On the command line (``cifake build --fake SPEC`` / ``--real SPEC``, repeatable)::

    dir:PATH@NAME[:N]                       a folder of image files
    parquet:PATH@NAME[:N]                   a Parquet file, or a folder of them
    hub:REPO[:SPLIT][:COLUMN]@NAME[:N]      a Hub dataset (its SPLIT, its image COLUMN)
    cifake:DATASET[:GENERATOR]@NAME[:N]     the FAKE rows of a CIFAKE dataset (folder or Hub
                                            id), all of them or those of one GENERATOR

``NAME`` fills the ``generator`` column of FAKE rows (and ``source`` of every row); ``N``
takes at most N images per class and split (those left out are counted). A row's class comes
from a sub-folder named after a CIFAR-10 class or a ``category``/``class`` column (names or
0-9); rows without one get a null class. Its split comes from a ``train``/``test`` folder, a
``split`` column or a Hub split of that name; otherwise a deterministic stratified share of
each class (``--test-fraction``) goes to test, chosen by a hash of the image's key.

Sources are read in a fixed order (sorted file names, Parquet row order), so a build that is
run again gives the same rows. Images are checked like the Kaggle importer's: unreadable
files and images that are not RGB are skipped and listed, never silently dropped; any size
is resized to 32x32 bilinearly, the way generated renders are (counted).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.builders.encoding import Encoding
from cifake_hub.errors import ClassNameError, SourceError
from cifake_hub.images import read_checked, read_regular
from cifake_hub.outputs import printable
from cifake_hub.schema import (
    CLASS_NAMES,
    FAKE,
    GENERATOR,
    SPLITS,
    category_index,
    dataset_generators,
)

CLASS_COLUMNS = ("category", "class")
SPLIT_COLUMN = "split"


@dataclass(frozen=True)
class ImportedSpec:
    kind: str
    location: str  # a path, or a Hub repo id
    name: str
    cap: int | None = None  # at most this many per class and split
    hub_split: str | None = None
    column: str = "image"
    generator: str | None = None  # cifake: only this generator's FAKE rows

    @classmethod
    def parse(cls, text: str, role: str) -> ImportedSpec:
        where, at, named = text.rpartition("@")
        kind, sep, location = where.partition(":")
        name, _, count = named.partition(":")
        if not at or not sep or kind not in FINDERS or not location or not name:
            raise SourceError(
                f"--{role} {text!r}: write dir:PATH@NAME, parquet:PATH@NAME, "
                "hub:REPO[:SPLIT][:COLUMN]@NAME or cifake:DATASET[:GENERATOR]@NAME (then :N "
                "for at most N per class and split)"
            )
        if count and not (count.isdigit() and int(count) >= 1):
            raise SourceError(f"--{role} {text!r}: the cap after the name must be N >= 1")
        extra: dict[str, Any] = {}
        if kind == "hub":
            repo, *rest = location.split(":")
            location = repo
            if len(rest) > 2:
                raise SourceError(f"--{role} {text!r}: hub:REPO[:SPLIT][:COLUMN]@NAME")
            if rest and rest[0]:
                extra["hub_split"] = rest[0]
            if len(rest) == 2 and rest[1]:
                extra["column"] = rest[1]
        elif kind == "cifake":
            location, _, generator = location.partition(":")
            if generator:
                extra["generator"] = generator
        return cls(kind, location, name, int(count) if count else None, **extra)

    @property
    def spec(self) -> str:
        """The spec without local paths (rows and cards name the source, not the disk)."""
        where = self.location if self.kind == "hub" else Path(self.location).name
        only = f":{self.generator}" if self.generator else ""
        return f"{self.kind}:{where}{only}@{self.name}"


@dataclass
class Found:
    """One image of a source, before checks."""

    key: str  # its file path in the folder, or "<file or split>/<row>"
    data: bytes | None  # None: it could not be read at all
    split: str | None
    category: int | None
    problem: str | None = None


@dataclass
class Taken:
    split: str
    category: int | None
    key: str
    index: int  # position in the source's fixed order
    pixels: np.ndarray  # 32x32x3 uint8
    original: bytes  # the bytes as found (kept when they are already final)
    resized_from: tuple[int, int] | None


@dataclass
class SourceReport:
    spec: str
    name: str
    role: str  # "FAKE" or "REAL"
    found: int = 0
    taken: Counter[str] = field(default_factory=Counter)  # per split
    without_class: int = 0
    resized: int = 0
    left_out_by_cap: int = 0
    encodings: Counter[str] = field(default_factory=Counter)  # as found
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "name": self.name,
            "label": self.role,
            "found": self.found,
            "taken": dict(self.taken),
            "without_class": self.without_class,
            "resized": self.resized,
            "left_out_by_cap": self.left_out_by_cap,
            "encodings_found": dict(self.encodings),
            "skipped": self.skipped,
        }


def read_source(
    spec: ImportedSpec, role: str, test_fraction: float
) -> tuple[list[Taken], SourceReport]:
    """Every usable image of ``spec`` with its split and class, in the fixed order, and what
    happened to the others."""
    report = SourceReport(spec.spec, spec.name, role)
    found = list(_found(spec))
    report.found = len(found)
    usable: list[tuple[int, Found, np.ndarray, tuple[int, int] | None]] = []
    for index, item in enumerate(found):
        pixels, resized_from, problem = None, None, item.problem
        if problem is None and item.data is not None:
            pixels, resized_from, problem = read_checked(item.data)
        if pixels is None or item.data is None:
            report.skipped.append({"key": item.key, "problem": problem or "unreadable"})
            continue
        report.encodings[str(Encoding.of(item.data))] += 1
        usable.append((index, item, pixels, resized_from))
    splits = _assign_splits([(i, f) for i, f, _, _ in usable], spec.name, test_fraction)
    kept: Counter[tuple[str, int | None]] = Counter()
    taken = []
    for (index, item, pixels, resized_from), split in zip(usable, splits, strict=True):
        cell = (split, item.category)
        if spec.cap is not None and kept[cell] >= spec.cap:
            report.left_out_by_cap += 1
            continue
        kept[cell] += 1
        report.taken[split] += 1
        report.without_class += item.category is None
        report.resized += resized_from is not None
        taken.append(
            Taken(split, item.category, item.key, index, pixels, item.data or b"", resized_from)
        )
    return taken, report


def _assign_splits(items: list[tuple[int, Found]], name: str, fraction: float) -> list[str]:
    """The split of each item: its own, or a deterministic stratified share of its class
    for test (ranked by a hash of the source name and key, so adding images moves few)."""
    out = [f.split or "" for _, f in items]
    open_rows: dict[int | None, list[int]] = {}
    for pos, (_, f) in enumerate(items):
        if f.split is None:
            open_rows.setdefault(f.category, []).append(pos)
    for rows in open_rows.values():
        ranked = sorted(rows, key=lambda p: _rank(name, items[p][1].key))
        n_test = int(round(fraction * len(ranked)))
        for rank, pos in enumerate(ranked):
            out[pos] = "test" if rank < n_test else "train"
    return out


def _rank(name: str, key: str) -> bytes:
    return hashlib.sha256(f"{name}/{key}".encode()).digest()


def _found(spec: ImportedSpec) -> Iterator[Found]:
    yield from FINDERS[spec.kind](spec)


def _folder(root: Path) -> Iterator[Found]:
    if not root.is_dir():
        raise SourceError(f"dir:{root} is not a folder")
    for path in _entries(root):
        rel = path.relative_to(root)
        parts = list(rel.parts[:-1])
        split = parts.pop(0) if parts and parts[0] in SPLITS else None
        if len(parts) > 1:
            raise SourceError(
                f"dir:{root}: {rel} is nested too deep; use [train|test/][CLASS/]FILE"
            )
        try:
            category = category_index(parts[0]) if parts else None
        except ClassNameError as exc:
            raise ClassNameError(f"dir:{root}: folder {parts[0]!r}: {exc}") from None
        try:
            data: bytes | None = read_regular(path)
            problem = None
        except OSError as exc:
            data, problem = None, f"cannot be read ({exc.strerror or exc})"
        yield Found(printable(rel.as_posix()), data, split, category, problem)


def _entries(root: Path) -> list[Path]:
    """Every entry but real folders: files, links (dangling, looping or to folders, which
    are not followed) and FIFOs, so each is found and then read or reported."""
    found = []
    for folder, dirs, files in os.walk(root):
        found += [Path(folder, d) for d in dirs if Path(folder, d).is_symlink()]
        found += [Path(folder, f) for f in files]
    return sorted(found)


def _parquet(path: Path, column: str) -> Iterator[Found]:
    import pyarrow.parquet as pq

    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise SourceError(f"parquet:{path}: no Parquet file there")
    import pyarrow as pa

    for file in files:
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError) as exc:
            why = (str(exc).strip().splitlines() or [""])[0][:160]
            raise SourceError(
                f"parquet:{file}: not a readable Parquet file ({type(exc).__name__}: {why}); "
                "give Parquet files with an image column"
            ) from exc
        yield from _table_rows(table.to_pylist(), column, f"{file.name}", str(file))


def _load(location: str, split: str | None, kind: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(location, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        why = (str(exc).strip().splitlines() or [""])[0][:160]
        raise SourceError(
            f"{kind}:{location}: cannot load it ({type(exc).__name__}: {why}); check the path or "
            "repo id, the split, HF_TOKEN and HF_ENDPOINT"
        ) from exc


def _hub(spec: ImportedSpec) -> Iterator[Found]:
    import datasets

    loaded = _load(spec.location, spec.hub_split, "hub")
    parts = {spec.hub_split: loaded} if spec.hub_split else dict(loaded)
    for hub_split, ds in sorted(parts.items()):
        if spec.column not in ds.column_names:
            raise SourceError(
                f"hub:{spec.location}: no image column {spec.column!r} (columns: "
                f"{', '.join(ds.column_names)}); give it as hub:REPO:SPLIT:COLUMN@NAME"
            )
        if isinstance(ds.features[spec.column], datasets.Image):
            ds = ds.cast_column(spec.column, datasets.Image(decode=False))
        rows = list(ds)
        names = _class_names(ds.features)
        split = hub_split if hub_split in SPLITS else None
        yield from _table_rows(rows, spec.column, hub_split, spec.location, split, names)


def _cifake(spec: ImportedSpec) -> Iterator[Found]:
    """The FAKE rows of a CIFAKE dataset (of ``spec.generator`` only, when given). Its splits
    are kept when it has a test split; otherwise --test-fraction decides, as for any source
    without splits (the Kaggle train import, a build with --per-class-test 0)."""
    import datasets

    splits = dict(_load(spec.location, None, "cifake"))
    first = next(iter(splits.values()))
    if not {"image", "label", GENERATOR} <= set(first.column_names):
        raise SourceError(
            f"cifake:{spec.location}: not a CIFAKE dataset with a generator column (columns: "
            f"{', '.join(first.column_names)}); bring it as parquet: or hub: instead"
        )
    names = dataset_generators(first.features)
    if spec.generator is not None and spec.generator not in names:
        raise SourceError(
            f"cifake:{spec.location}: no generator {spec.generator!r}; it has "
            f"{', '.join(names) or 'none'}"
        )
    keep = "test" in splits
    for name, ds in sorted(splits.items()):
        table = ds.select_columns(["image", "label", "category", GENERATOR])
        table = table.cast_column("image", datasets.Image(decode=False)).with_format("arrow")[:]
        fake = table.column("label").to_numpy() == FAKE
        if spec.generator is not None:
            generator = table.column(GENERATOR).fill_null(-1).to_numpy()
            fake &= generator == names.index(spec.generator)
        rows = np.flatnonzero(fake)
        blobs = table.column("image").combine_chunks().field("bytes").to_pylist()
        classes = table.column("category").to_pylist()
        for row in rows.tolist():
            yield Found(f"{name}/{row}", blobs[row], name if keep else None, classes[row])


def _class_names(features: Any) -> list[str] | None:
    for column in CLASS_COLUMNS:
        names = getattr(features.get(column), "names", None)
        if names is not None:
            return list(names)
    return None


def _table_rows(
    rows: list[dict[str, Any]],
    column: str,
    prefix: str,
    where: str,
    split: str | None = None,
    class_names: list[str] | None = None,
) -> Iterator[Found]:
    for i, row in enumerate(rows):
        if column not in row:
            raise SourceError(f"{where}: no image column {column!r} (columns: {', '.join(row)})")
        value = row[column]
        data = value.get("bytes") if isinstance(value, dict) else value
        problem = None
        if data is None and isinstance(value, dict) and value.get("path"):
            try:
                data = Path(value["path"]).read_bytes()
            except OSError as exc:
                problem = f"its image file {value['path']} cannot be read ({exc.strerror})"
        row_split = row.get(SPLIT_COLUMN, split)
        if row_split is not None and row_split not in SPLITS:
            row_split = None  # another split name: the stratified share decides
        category = _category(row, class_names, f"{where} row {i}")
        yield Found(f"{prefix}/{i}", data, row_split, category, problem)


def _category(row: dict[str, Any], names: list[str] | None, where: str) -> int | None:
    for column in CLASS_COLUMNS:
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, str):
            return category_index(value)
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if names is not None and 0 <= number < len(names):
            return category_index(names[number])
        if names is None and 0 <= number < len(CLASS_NAMES) and number == value:
            return number
        raise ClassNameError(
            f"{where}: class {value!r} is not a CIFAR-10 class name or 0-{len(CLASS_NAMES) - 1}"
        )
    return None


# The kinds of brought source (--fake/--real KIND:...@NAME): each yields every image of a
# source as Found(key, bytes) in a fixed order; checks, splits, caps, encoding and duplicates
# follow. Adding a kind is one entry.
FINDERS: dict[str, Callable[[ImportedSpec], Iterator[Found]]] = {
    "dir": lambda spec: _folder(Path(spec.location)),
    "parquet": lambda spec: _parquet(Path(spec.location), spec.column),
    "hub": lambda spec: _hub(spec),
    "cifake": lambda spec: _cifake(spec),
}
