"""Numbers as the cards, the command line and the app print them."""

from __future__ import annotations


def fmt_pct(value: float | None) -> str:
    """A share as a percentage with two decimals; "n/a" where it is undefined."""
    return "n/a" if value is None else f"{100 * value:.2f}%"


def fmt_int(n: int) -> str:
    return f"{n:,}"
