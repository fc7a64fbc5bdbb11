"""The private parts of other libraries this package relies on, in one place.

Each has no public equivalent in the versions we support; tests/test_compat.py fails, naming
the library and its version, the day one of them changes, instead of a user meeting an
AttributeError (or a silent fallback) deep inside a command.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def hub_retry_statuses() -> tuple[int, ...]:
    """The HTTP statuses huggingface_hub's own client retries (408, 429, 5xx)."""
    from huggingface_hub.utils import _http

    return tuple(_http._DEFAULT_RETRY_ON_STATUS_CODES)


def hub_retry_exceptions() -> tuple[type[BaseException], ...]:
    """The transport errors huggingface_hub's own client retries (timeouts, network)."""
    from huggingface_hub.utils import _http

    return tuple(_http._DEFAULT_RETRY_ON_EXCEPTIONS)


def dataset_nbytes(ds: Any) -> int:
    """What ``Dataset.push_to_hub`` sizes shards by (the table, plus files it points to)."""
    return int(ds._estimate_nbytes())


def dataset_fingerprint(ds: Any) -> str | None:
    """The ``datasets`` fingerprint of a Dataset: the hash of its content and history."""
    value = getattr(ds, "_fingerprint", None)
    return None if value is None else str(value)


def builder_rows(builder: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(split, example) from a ``GeneratorBasedBuilder``'s own split and example generators,
    without ``download_and_prepare`` writing Arrow files into its cache: the build writes
    Parquet straight into the dataset folder instead."""
    for split in builder._split_generators(None):
        for _, row in builder._generate_examples(**split.gen_kwargs):
            yield split.name, row
