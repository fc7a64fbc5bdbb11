"""Import the Kaggle CIFAKE download (zip or extracted folder) into a dataset folder.

Kaggle's layout is ``[top/]<split>/<REAL|FAKE>/NNNN (k).jpg``: k is the CIFAR-10 class
1..10 (no suffix means 1) and NNNN the index within the class. Every file's original bytes
are kept. Exact duplicates (same bytes) are found inside and across splits and reported;
with ``dedupe`` the later copy (order: train before test, then label, class, index) is
dropped. Every input file ends up either in the output or in ``import_report.json``.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import zipfile
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cifake_hub.builders.folder import SplitStats

from cifake_hub.config import Config, option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import ConfigError, FileNameError, InvalidImageError, SourceError
from cifake_hub.images import RefusedFileError, image_problem, read_regular
from cifake_hub.outputs import atomic_write_text, json_text, output_path, writes
from cifake_hub.schema import (
    CLASS_NAMES,
    FAKE,
    KAGGLE_SOURCE,
    LABEL_NAMES,
    PAPER_GENERATOR,
    SPLITS,
    make_row,
)

_ENTRY = re.compile(
    r"^(?:(?P<top>[^/]+)/)?(?P<split>train|test)/(?P<label>REAL|FAKE)/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
_NAME = re.compile(r"^(?P<index>\d+)(?: \((?P<k>\d+)\))?\.(?:jpe?g|png)$", re.IGNORECASE)
_CHUNK = 2_000


KAGGLE_GENERATORS = (PAPER_GENERATOR,)  # the `generator` names of an import


@dataclass(frozen=True)
class ImportConfig(Config):
    src: str = option(help="the Kaggle CIFAKE zip file or extracted folder", positional=True)
    out: str = option(help="output dataset folder (e.g. ./cifake)")
    dedupe: bool = option(False, "drop the later copy of each exact duplicate")
    strict: bool = option(False, "stop at the first invalid image")
    workers: int = option(2, "processes that read and check images")
    shard_rows: int = option(50_000, cli=False)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.shard_rows < 1:
            raise ConfigError(f"shard_rows must be >= 1, got {self.shard_rows}")


@dataclass(frozen=True, order=True)
class KaggleEntry:
    """One image file of the download, in import order."""

    split_order: int
    label: int
    category: int
    index: int
    name: str = field(compare=False)  # path inside the zip or folder
    member: int = field(compare=False, default=-1)  # position in the zip (names can repeat)

    @property
    def split(self) -> str:
        return SPLITS[self.split_order]

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "split": self.split,
            "label": LABEL_NAMES[self.label],
            "category": CLASS_NAMES[self.category],
            "index": self.index,
        }


def parse_file_name(name: str) -> tuple[int, int]:
    """``"0042 (3).jpg"`` -> (category 2, index 42); no suffix means class 1 (airplane)."""
    m = _NAME.match(name)
    k = int(m["k"]) if m and m["k"] else 1
    if m is None or not 1 <= k <= len(CLASS_NAMES):
        raise FileNameError(
            f"cannot parse Kaggle CIFAKE file name {name!r}: expected 'NNNN (k).jpg' "
            f"with k in 1..{len(CLASS_NAMES)}, or 'NNNN.jpg' for class 1"
        )
    return k - 1, int(m["index"])


MAX_MEMBER_BYTES = 64 * 2**20  # a CIFAKE image is about 1 kB; a 12-megapixel PNG under 40 MB


class _Source:
    """Read access to the download, a zip file or a folder, by relative posix path."""

    def __init__(self, src: str | Path):
        self.path = Path(src)
        self._zip: zipfile.ZipFile | None = None
        if not self.path.exists():
            raise SourceError(
                f"Kaggle CIFAKE source {str(self.path)!r} does not exist; "
                "pass the downloaded zip or its extracted folder"
            )
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile as exc:
                raise SourceError(
                    f"{self.path} is not a zip file ({exc}); pass the Kaggle "
                    "CIFAKE zip or its extracted folder"
                ) from exc

    def names(self) -> list[tuple[str, int]]:
        """(path, zip position) of every file; a zip may hold several members of one name,
        which are read by position, not name (by name, zipfile reads only the last)."""
        if self._zip is not None:
            return [(i.filename, n) for n, i in enumerate(self._zip.infolist()) if not i.is_dir()]
        names: list[str] = []
        for folder, dirs, files in os.walk(self.path):
            rel = Path(folder).relative_to(self.path).as_posix()
            prefix = "" if rel == "." else f"{rel}/"
            # Links to folders are not followed, but they are accounted for (as ignored).
            links = [d for d in dirs if Path(folder, d).is_symlink()]
            names.extend(prefix + f for f in files + links)
        return [(name, -1) for name in sorted(names)]

    def read(self, name: str, member: int = -1) -> bytes:
        if self._zip is not None:
            info = self._zip.infolist()[member] if member >= 0 else self._zip.getinfo(name)
            if info.file_size > MAX_MEMBER_BYTES:
                # Refused from the size the zip declares, before anything is inflated (a
                # small zip can hold a member of gigabytes of zeros).
                raise RefusedFileError(
                    f"declares {info.file_size / 2**20:,.0f} MB unpacked, more than the "
                    f"{MAX_MEMBER_BYTES // 2**20} MB an image may take"
                )
            return self._zip.read(info)
        return read_regular(self.path / name)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


@dataclass
class Layout:
    entries: list[KaggleEntry]
    ignored: list[dict[str, str]]
    total_files: int
    repeated_names: list[str] = field(default_factory=list)  # zip members sharing a name


def scan(source: str | Path) -> Layout:
    """Find the image files of the download and where each belongs; nothing is read yet."""
    src = _Source(source)
    try:
        names = src.names()
    finally:
        src.close()
    entries: list[KaggleEntry] = []
    ignored: list[dict[str, str]] = []
    tops: set[str | None] = set()
    for name, member in names:
        m = _ENTRY.match(name)
        base = name.rsplit("/", 1)[-1]
        if m is None or base.startswith(".") or name.startswith("__MACOSX/"):
            ignored.append({"file": name, "reason": "outside <split>/<REAL|FAKE>/ or hidden"})
            continue
        try:
            category, index = parse_file_name(m["name"])
        except FileNameError as exc:
            ignored.append({"file": name, "reason": str(exc)})
            continue
        tops.add(m["top"])
        entries.append(
            KaggleEntry(
                split_order=SPLITS.index(m["split"].lower()),
                label=LABEL_NAMES.index(m["label"].upper()),
                category=category,
                index=index,
                name=name,
                member=member,
            )
        )
    if not entries:
        example = f"; e.g. {ignored[0]['file']!r}: {ignored[0]['reason']}" if ignored else ""
        raise SourceError(
            f"{source} has no images under train/REAL, train/FAKE, test/REAL or test/FAKE "
            "(optionally inside one top folder) named as in Kaggle CIFAKE; is it the Kaggle "
            f"CIFAKE download?{example}"
        )
    if len(tops) > 1:
        shown = ", ".join(sorted(t or "." for t in tops))
        raise SourceError(f"{source} holds several CIFAKE trees ({shown}); import one at a time")
    entries.sort()
    counts = Counter(name for name, _ in names)
    return Layout(
        entries=entries,
        ignored=ignored,
        total_files=len(names),
        repeated_names=sorted(n for n, c in counts.items() if c > 1),
    )


# One open source per worker process: opening a zip parses its whole central directory.
_worker_source: _Source | None = None


def _open_worker_source(source: str, watch_parent: bool = False) -> None:
    global _worker_source
    _worker_source = _Source(source)
    if watch_parent:
        _exit_with_parent()


def _exit_with_parent() -> None:
    """End this worker when the importing process dies (even by SIGKILL, which gives the
    pool no chance to stop its workers): a thread watches for the parent to change."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _check_chunk(names: Sequence[tuple[str, int]]) -> list[tuple[bytes, bytes, str | None]]:
    """Read, hash and validate files; runs in worker processes."""
    assert _worker_source is not None
    out: list[tuple[bytes, bytes, str | None]] = []
    for name, member in names:
        try:
            data = _worker_source.read(name, member)
        except RefusedFileError as exc:
            out.append((b"", b"", f"cannot be read ({exc})"))
            continue
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            out.append((b"", b"", f"cannot be read ({type(exc).__name__}: {exc})"))
            continue
        out.append((data, hashlib.sha256(data).digest(), image_problem(data)))
    return out


def _checked(
    source: str, entries: Sequence[KaggleEntry], workers: int
) -> Iterator[tuple[KaggleEntry, bytes, bytes, str | None]]:
    """Entries with their bytes, hash and problem, in order; at most 2 chunks per worker
    are in flight, so memory stays bounded when the writer is the slower side."""
    chunks = [entries[i : i + _CHUNK] for i in range(0, len(entries), _CHUNK)]
    if workers == 1:
        _open_worker_source(source)
        for chunk in chunks:
            yield from _zip_chunk(chunk, _check_chunk([(e.name, e.member) for e in chunk]))
        return
    with ProcessPoolExecutor(
        workers, initializer=_open_worker_source, initargs=(source, True)
    ) as pool:
        pending: deque[tuple[Sequence[KaggleEntry], Future[list[Any]]]] = deque()
        todo = iter(chunks)
        for chunk in todo:
            pending.append((chunk, pool.submit(_check_chunk, [(e.name, e.member) for e in chunk])))
            if len(pending) >= 2 * workers:
                break
        while pending:
            chunk, future = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_check_chunk, [(e.name, e.member) for e in nxt])))
            yield from _zip_chunk(chunk, future.result())


def _zip_chunk(
    chunk: Sequence[KaggleEntry], results: list[tuple[bytes, bytes, str | None]]
) -> Iterator[tuple[KaggleEntry, bytes, bytes, str | None]]:
    for entry, (data, digest, problem) in zip(chunk, results, strict=True):
        yield entry, data, digest, problem


@dataclass
class ImportResult:
    stats: dict[str, SplitStats]
    report: dict[str, Any]
    report_path: Path


@writes("config.out")
def import_kaggle(
    config: ImportConfig,
    *,
    overwrite: bool = False,
    layout: Layout | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import ``config.src`` into ``config.out``; see the module docstring.

    ``layout`` is the result of :func:`scan` when the caller already has it.
    """
    from cifake_hub.builders.folder import DatasetFolderWriter

    out = output_path(config.out)
    layout = layout or scan(config.src)
    first_seen: dict[bytes, KaggleEntry] = {}
    groups: dict[bytes, list[KaggleEntry]] = defaultdict(list)
    invalid: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    written: Counter[tuple[str, str, str]] = Counter()

    with DatasetFolderWriter(
        out, overwrite=overwrite, shard_rows=config.shard_rows, generators=KAGGLE_GENERATORS
    ) as writer:
        for entry, data, digest, problem in _checked(
            str(config.src), layout.entries, config.workers
        ):
            if progress:
                progress(1)
            if problem is not None:
                if config.strict:
                    raise InvalidImageError(f"{entry.name}: {problem} (--strict)")
                invalid.append({**entry.describe(), "problem": problem})
                continue
            original = first_seen.setdefault(digest, entry)
            if original is not entry:
                groups[digest].append(entry)
                if config.dedupe:
                    dropped.append({**entry.describe(), "duplicate_of": original.name})
                    continue
            writer.add(entry.split, _row(entry, data))
            written[(entry.split, LABEL_NAMES[entry.label], CLASS_NAMES[entry.category])] += 1
        stats = writer.close(pretty_name="CIFAKE (Kaggle import)")
        for digest, later in groups.items():
            later.insert(0, first_seen[digest])
        report = _report(config, layout, stats, written, invalid, dropped, list(groups.values()))
        # Into the new folder before it is swapped in: report, config and rows stay together.
        staged = DatasetFolder(writer.folder)
        atomic_write_text(staged.file(DatasetFolder.REPORT), json_text(report))
        config.save(staged.file(DatasetFolder.IMPORT_CONFIG))
    return ImportResult(
        stats=stats, report=report, report_path=DatasetFolder(out).file(DatasetFolder.REPORT)
    )


def _row(entry: KaggleEntry, data: bytes) -> dict[str, Any]:
    return make_row(
        data,
        entry.label,
        entry.category,
        image_path=entry.name.rsplit("/", 1)[-1],
        # The paper made every FAKE image with SD 1.4; rows keep model_id empty, since the
        # download does not say with which settings each was made.
        generator=0 if entry.label == FAKE else None,
        source=KAGGLE_SOURCE,
        source_file=entry.name,
        source_index=entry.index,
    )


def _report(
    config: ImportConfig,
    layout: Layout,
    stats: dict[str, SplitStats],
    written: Counter[tuple[str, str, str]],
    invalid: list[dict[str, Any]],
    dropped: list[dict[str, Any]],
    groups: list[list[KaggleEntry]],
) -> dict[str, Any]:
    rows = sum(s.num_examples for s in stats.values())
    accounted = rows + len(invalid) + len(dropped) + len(layout.ignored)
    if accounted != layout.total_files:
        raise AssertionError(f"import lost files: {accounted} accounted of {layout.total_files}")
    dup_counts: Counter[str] = Counter()
    cross_split = 0
    for group in groups:
        splits = {e.split for e in group}
        if len(splits) > 1:
            cross_split += 1
        for e in group[1:]:
            dup_counts[f"{e.split}/{LABEL_NAMES[e.label]}/{CLASS_NAMES[e.category]}"] += 1
    return {
        "source": str(config.src),
        "input_files": layout.total_files,
        "rows_written": rows,
        "repeated_zip_names": layout.repeated_names,
        "rows_per_split_label_class": {"/".join(k): v for k, v in sorted(written.items())},
        "invalid": invalid,
        "ignored": layout.ignored,
        "duplicates": {
            "groups": len(groups),
            "extra_copies": sum(len(g) - 1 for g in groups),
            "groups_across_splits": cross_split,
            "extra_copies_per_split_label_class": dict(sorted(dup_counts.items())),
            "dropped": config.dedupe,
            "list": [[e.describe() for e in g] for g in groups],
        },
        "dropped": dropped,
    }
