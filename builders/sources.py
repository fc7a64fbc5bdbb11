"""REAL image sources for CIFAR-10, behind one small interface.

A source is written on the command line as ``hub:ID`` (a Hub dataset with ``img`` and
``label`` columns, default ``hub:uoft-cs/cifar10``), ``cifar-tar:PATH`` (the official
``cifar-10-python.tar.gz``) or ``dir:PATH`` (``<split>/<class name>/*.png|jpg``). Every
source yields rows in our schema, keeping the original pixels: Hub and folder images keep
their encoded bytes; the tarball's raw arrays are encoded as lossless PNG.
"""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cifake_hub.errors import InvalidImageError, SourceError
from cifake_hub.images import encode_png, image_problem, read_regular
from cifake_hub.schema import CLASS_NAMES, REAL, SPLITS, category_index, make_row

DEFAULT_REAL_SOURCE = "hub:uoft-cs/cifar10"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class RealSource(Protocol):
    """Where REAL images come from."""

    @property
    def spec(self) -> str:
        """The command-line form of this source, e.g. ``hub:uoft-cs/cifar10``."""
        ...

    def rows(self, split: str, per_class: int | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``split`` in source order; with ``per_class``, the first N of each class."""
        ...


def parse_source(spec: str) -> RealSource:
    """``hub:ID`` | ``cifar-tar:PATH`` | ``dir:PATH`` -> a source."""
    kind, sep, value = spec.partition(":")
    if not sep or not value:
        raise SourceError(
            f"REAL source {spec!r} is not KIND:VALUE; use hub:ID, cifar-tar:PATH or dir:PATH "
            f"(default {DEFAULT_REAL_SOURCE})"
        )
    if kind not in REAL_SOURCES:
        known = ", ".join(f"{k}:" for k in REAL_SOURCES)
        raise SourceError(f"unknown REAL source kind {kind!r} in {spec!r}; use {known}")
    return REAL_SOURCES[kind](value)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


class _PerClassLimit:
    """Keeps the first N rows of each class; knows when every class is full."""

    def __init__(self, per_class: int | None):
        self.per_class = per_class
        self.counts = [0] * len(CLASS_NAMES)

    def take(self, category: int) -> bool:
        if self.per_class is not None and self.counts[category] >= self.per_class:
            return False
        self.counts[category] += 1
        return True

    def full(self) -> bool:
        return self.per_class is not None and min(self.counts) >= self.per_class

    def check(self, spec: str, split: str) -> None:
        if self.per_class is None:
            return
        short = {CLASS_NAMES[c]: n for c, n in enumerate(self.counts) if n < self.per_class}
        if short:
            raise SourceError(
                f"{spec} has fewer than {self.per_class} {split} images for {short}; "
                "lower the per-class count"
            )


@dataclass
class HubSource:
    """A ``datasets`` dataset (Hub id or local path) with ``img`` and ``label`` columns."""

    repo_id: str
    image_column: str = "img"
    label_column: str = "label"

    @property
    def spec(self) -> str:
        return f"hub:{self.repo_id}"

    def rows(self, split: str, per_class: int | None = None) -> Iterator[dict[str, Any]]:
        import datasets

        _check_split(split)
        try:
            ds = datasets.load_dataset(self.repo_id, split=split)
        except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
            raise SourceError(
                f"cannot load {split!r} of {self.repo_id!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); offline, use a local copy: "
                "cifar-tar:PATH, dir:PATH, or the Hub cache with HF_HUB_OFFLINE=1"
            ) from exc
        missing = {self.image_column, self.label_column} - set(ds.column_names)
        if missing:
            raise SourceError(
                f"{self.repo_id} has no column(s) {sorted(missing)}; "
                f"its columns are {ds.column_names}"
            )
        names = ds.features[self.label_column].names
        mapping = [category_index(n) for n in names]
        # decode=False keeps the stored (lossless) bytes instead of re-encoding pixels.
        ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        limit = _PerClassLimit(per_class)
        for index, example in enumerate(ds.select_columns([self.image_column, self.label_column])):
            category = mapping[example[self.label_column]]
            if not limit.take(category):
                if limit.full():
                    break
                continue
            image = example[self.image_column]
            data = (
                image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes()
            )
            yield make_row(data, REAL, category, source=self.spec, source_index=index)
        limit.check(self.spec, split)


_TAR_BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


@dataclass
class CifarTarSource:
    """The official CIFAR-10 python archive (``cifar-10-python.tar.gz``)."""

    path: Path

    @property
    def spec(self) -> str:
        return f"cifar-tar:{self.path}"

    def rows(self, split: str, per_class: int | None = None) -> Iterator[dict[str, Any]]:
        _check_split(split)
        if not self.path.is_file():
            raise SourceError(
                f"CIFAR-10 archive {str(self.path)!r} does not exist; download "
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html"
            )
        try:
            # Not a with-block: open errors must become a SourceError first.
            tar = tarfile.open(self.path)  # noqa: SIM115
        except tarfile.TarError as exc:
            raise SourceError(f"{self.path} is not a tar archive ({exc})") from exc
        limit = _PerClassLimit(per_class)
        index = 0
        with tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for batch_name in _TAR_BATCHES[split]:
                member = members.get(batch_name)
                if member is None:
                    raise SourceError(
                        f"{self.path} has no {batch_name}; is it cifar-10-python.tar.gz?"
                    )
                batch = _load_batch(tar, member, self.path)
                for pixels, label in zip(batch["data"], batch["labels"], strict=True):
                    if limit.take(label):
                        image = pixels.reshape(3, 32, 32).transpose(1, 2, 0)
                        yield make_row(
                            encode_png(np.ascontiguousarray(image)),
                            REAL,
                            label,
                            source="cifar-tar",
                            source_file=batch_name,
                            source_index=index,
                        )
                    index += 1
                    if limit.full():
                        return
        limit.check(self.spec, split)


def _load_batch(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> dict[str, Any]:
    handle = tar.extractfile(member)
    if handle is None:
        raise SourceError(f"cannot read {member.name} in {path}")
    # The batches are pickles of plain dicts, from the archive the user pointed us at.
    raw = pickle.load(handle, encoding="bytes")  # noqa: S301
    data = np.asarray(raw[b"data"], dtype=np.uint8)
    labels = [int(x) for x in raw[b"labels"]]
    if data.shape != (len(labels), 3072) or any(not 0 <= x < len(CLASS_NAMES) for x in labels):
        raise SourceError(f"{member.name} in {path} is not a CIFAR-10 batch (data {data.shape})")
    return {"data": data, "labels": labels}


@dataclass
class FolderSource:
    """``<root>/<split>/<class name>/*.png|jpg``; files keep their original bytes."""

    root: Path

    @property
    def spec(self) -> str:
        return f"dir:{self.root}"

    def rows(self, split: str, per_class: int | None = None) -> Iterator[dict[str, Any]]:
        _check_split(split)
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise SourceError(
                f"{split_dir} does not exist; expected {self.root}/<split>/<class>/*.png"
            )
        class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
        categories = {d: category_index(d.name) for d in class_dirs}
        limit = _PerClassLimit(per_class)
        for class_dir in class_dirs:
            files = sorted(f for f in class_dir.iterdir() if not f.name.startswith("."))
            others = [f.name for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
            if others:
                raise SourceError(
                    f"{class_dir} holds non-image files {others[:3]}; "
                    f"expected only {'/'.join(IMAGE_SUFFIXES)} files"
                )
            for index, file in enumerate(files):
                if not limit.take(categories[class_dir]):
                    break
                try:
                    data = read_regular(file)
                except OSError as exc:
                    raise SourceError(
                        f"{file} cannot be read ({exc.strerror or exc}); remove or replace it"
                    ) from exc
                problem = image_problem(data)
                if problem is not None:
                    raise InvalidImageError(f"{file}: {problem}; remove or replace it")
                yield make_row(
                    data,
                    REAL,
                    categories[class_dir],
                    image_path=file.name,
                    source="dir",
                    source_file=f"{split}/{class_dir.name}/{file.name}",
                    source_index=index,
                )
        limit.check(self.spec, split)


# REAL sources by prefix (--real KIND:VALUE); adding one is one entry: a function from VALUE
# to a RealSource.
REAL_SOURCES: dict[str, Callable[[str], RealSource]] = {
    "hub": HubSource,
    "cifar-tar": lambda value: CifarTarSource(Path(value)),
    "dir": lambda value: FolderSource(Path(value)),
}
