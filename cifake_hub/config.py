"""Shared behaviour of the frozen, validated configs saved beside every artifact."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from cifake_hub.errors import ConfigError
from cifake_hub.outputs import atomic_write_text, read_json

T = TypeVar("T", bound="Config")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None,
    positional: bool = False,
    cli: bool = True,
) -> Any:
    """A config field that is also a command-line option: its type, default and help are
    declared here once, and `cifake_hub.cli.options` derives the option from them.

    ``flag`` overrides the option name (``--no-verify`` for a field that defaults to True);
    ``positional`` makes it an argument; ``cli=False`` keeps it out of the command line.
    ``choices`` may be a function giving the names of a registry (read when the parser is
    built, so entries registered after this module was imported are choices too).
    """
    metadata = {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "choices": choices,
        "positional": positional,
        "cli": cli,
    }
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
    """Subclasses are frozen dataclasses that validate themselves in ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"type": type(self).__name__, **self.to_dict()}
        return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        data = read_json(Path(path))
        data.pop("type", None)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _tuples(v) for k, v in data.items() if k in names})


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _tuples(value: Any) -> Any:
    # JSON has no tuples; frozen configs hold tuples so they stay hashable.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def check_repo_id(option_name: str, value: str) -> None:
    """Refuse a Hub repo id that is not NAMESPACE/NAME (huggingface_hub's own validation):
    it is written into cards and URLs."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problem = "" if value.count("/") == 1 else "it needs a namespace"
    if not problem:
        try:
            validate_repo_id(value)
        except HFValidationError as exc:
            problem = str(exc).splitlines()[0]
    if problem:
        raise ConfigError(f"{option_name} must be NAMESPACE/NAME, got {value!r}: {problem}")
