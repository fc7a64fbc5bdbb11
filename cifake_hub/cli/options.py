"""Command-line options derived from config dataclasses (fields declared with
:func:`cifake_hub.config.option`): each option's type, default and help live in one place.

A small helper rather than tyro or simple-parsing: the CLI stays plain argparse (subcommands,
``--help`` without importing the heavy stages), and configs keep their own validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of ``X`` or ``X | None``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return annotation, False


def summary(doc: str | None) -> str:
    """A CLI module docstring's first paragraph without the usage in double backquotes."""
    first = (doc or "").strip().partition("\n\n")[0]
    return " ".join(re.sub(r"^.*?``\)?:\s+", "", first, count=1, flags=re.S).split())


def add_command(
    sub: Any,
    name: str,
    doc: str | None,
    run: Callable[[argparse.Namespace], int],
    *configs: type[Any],
    overwrite: bool = False,
) -> argparse.ArgumentParser:
    """The subcommand ``name`` that calls ``run``, with the options of ``configs`` (and
    ``--overwrite``), documented by its module's docstring: the first paragraph (after the
    usage in double backquotes) is the one-line help, the rest the description."""
    _, _, rest = (doc or "").strip().partition("\n\n")
    description = " ".join(rest.split()) or summary(doc)
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary(doc), description=description
    )
    parser.set_defaults(func=run)
    for cls in configs:
        add_config_options(parser, cls)
    if overwrite:
        add_overwrite_option(parser)
    return parser


def add_config_options(
    parser: argparse.ArgumentParser, cls: type[Any], *, skip: tuple[str, ...] = ()
) -> None:
    """Add an option (or argument) for every command-line field of the config ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", False) or f.name in skip:
            continue
        kind, _ = _base_type(hints[f.name])
        required = f.default is dataclasses.MISSING
        help_text = meta["help"]
        if not required and not (
            f.default is None or isinstance(f.default, bool) or f.default in ("", ())
        ):
            shown = ", ".join(f.default) if isinstance(f.default, tuple) else f.default
            shown = f"{shown:.4g}" if isinstance(shown, float) else shown
            help_text += f" (default: {shown})"
        if meta["positional"]:
            # Checked by the config (one error line, exit 1), so listed rather than enforced.
            choices = _choices(meta["choices"])
            if choices:
                help_text += f" (one of: {', '.join(choices)})"
            parser.add_argument(f.name, type=kind, help=help_text, metavar=meta["metavar"])
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        if kind is bool:
            action = "store_false" if f.default is True else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=help_text)
            continue
        if typing.get_origin(kind) is tuple:
            # Repeatable; None when not given, so the config keeps its default.
            parser.add_argument(
                flag,
                dest=f.name,
                action="append",
                default=None,
                metavar=meta["metavar"],
                help=help_text + "; repeatable",
            )
            continue
        parser.add_argument(
            flag,
            dest=f.name,
            type=kind,
            required=required,
            default=None if required else f.default,
            choices=_choices(meta["choices"]),
            metavar=meta["metavar"],
            help=help_text,
        )


def config_from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """The config ``cls`` from parsed options; ``given`` fills fields the options do not."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.metadata.get("cli") and hasattr(args, f.name)
    }
    # A repeatable option that was not given: the field's default.
    values = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in values.items()
        if not (v is None and isinstance(_default(cls, k), tuple))
    }
    return cls(**{**values, **given})


def _default(cls: type[Any], name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: permission to replace an output cifake wrote (cifake_hub.outputs)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset cifake wrote in --out (never a folder it did not write)",
    )


def _choices(declared: Any) -> tuple[str, ...] | None:
    if declared is None:
        return None
    return tuple(declared() if callable(declared) else declared)
