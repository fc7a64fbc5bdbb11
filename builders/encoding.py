"""The last step of every built row: one encoding for the whole dataset, and exact duplicates.

A detector learns file-format cues as eagerly as image content, so `cifake build` stores
every row (CIFAR-10, generated, imported) in one encoding: ``png``, ``jpeg:Q`` (Pillow,
quality Q, its default 4:2:0 chroma subsampling) or ``auto``, the encoding of the first row
written (the first REAL source's). Rows already in that encoding keep their bytes; the
others are decoded and encoded again, counted per source. Pixel hashes of every row find
exact duplicates within and across sources and splits; they are kept and reported, as the
Kaggle importer does.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cifake_hub.errors import ConfigError
from cifake_hub.images import describe_encoding, encode_png, jpeg_quality, read_rgb
from cifake_hub.schema import LABEL_NAMES, class_name

AUTO = "auto"


@dataclass(frozen=True)
class Encoding:
    format: str  # "png" or "jpeg"
    quality: int | None = None

    @classmethod
    def parse(cls, text: str) -> Encoding:
        kind, _, quality = text.partition(":")
        if kind == "png" and not quality:
            return cls("png")
        if kind == "jpeg" and quality.isdigit() and 1 <= int(quality) <= 100:
            return cls("jpeg", int(quality))
        raise ConfigError(f"encoding {text!r}: use png, jpeg:Q (Q in 1..100) or {AUTO}")

    @classmethod
    def of(cls, data: bytes) -> Encoding:
        """The encoding of ``data`` (a JPEG's quality estimated from its tables)."""
        fmt = describe_encoding(data)[0]
        if fmt == "JPEG":
            return cls("jpeg", jpeg_quality(data) or 75)
        return cls("png")

    def __str__(self) -> str:
        return "png" if self.format == "png" else f"jpeg:{self.quality}"

    def matches(self, data: bytes) -> bool:
        if self.format == "png":
            return data[:8] == b"\x89PNG\r\n\x1a\n"
        fmt, _, subsampling = describe_encoding(data)
        return fmt == "JPEG" and jpeg_quality(data) == self.quality and subsampling == "420"

    def encode(self, pixels: np.ndarray) -> bytes:
        if self.format == "png":
            return encode_png(pixels)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=self.quality)
        return buf.getvalue()


class RowFinisher:
    """Brings each row into the dataset's encoding and remembers its pixel hash."""

    def __init__(self, encoding: str = AUTO):
        if encoding != AUTO:
            Encoding.parse(encoding)
        self.requested = encoding
        self.target: Encoding | None = None if encoding == AUTO else Encoding.parse(encoding)
        self.reencoded: Counter[str] = Counter()
        self.before: dict[str, Counter[str]] = defaultdict(Counter)
        self._copies: dict[bytes, list[tuple[str, int, int | None, str, str]]] = defaultdict(list)

    def finish(self, split: str, row: dict[str, Any], source: str) -> dict[str, Any]:
        data = row["image"]["bytes"]
        if self.target is None:
            self.target = Encoding.of(data)
        self.before[source][str(Encoding.of(data))] += 1
        pixels = read_rgb(data, where=row["image"].get("path") or source)
        if not self.target.matches(data):
            row = {**row, "image": {**row["image"], "bytes": self.target.encode(pixels)}}
            self.reencoded[source] += 1
        digest = hashlib.sha256(pixels.tobytes()).digest()
        key = row["source_file"] or row["image"].get("path") or str(row["source_index"])
        self._copies[digest].append((split, row["label"], row["category"], source, key))
        return row

    def report(self) -> dict[str, Any]:
        groups = [g for g in self._copies.values() if len(g) > 1]
        per_cell: Counter[str] = Counter()
        for group in groups:
            for split, label, category, _, _ in group[1:]:
                per_cell[f"{split}/{LABEL_NAMES[label]}/{class_name(category)}"] += 1
        differed = len({e for c in self.before.values() for e in c}) > 1
        return {
            "encoding": str(self.target) if self.target else self.requested,
            "requested": self.requested,
            "encodings_before": {s: dict(c) for s, c in self.before.items()},
            "sources_differed": differed,
            "reencoded": dict(self.reencoded),
            "duplicates": {
                "basis": "pixels",
                "groups": len(groups),
                "extra_copies": sum(len(g) - 1 for g in groups),
                "groups_across_splits": sum(len({c[0] for c in g}) > 1 for g in groups),
                "groups_across_sources": sum(len({c[3] for c in g}) > 1 for g in groups),
                "dropped": False,
                "extra_copies_per_split_label_class": dict(sorted(per_cell.items())),
                "listed": [
                    [
                        {"split": s, "label": LABEL_NAMES[lab], "source": src, "key": k}
                        for s, lab, _, src, k in g
                    ]
                    for g in groups
                ],
            },
        }
