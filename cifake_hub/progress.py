"""Rich progress bars for long steps, on stderr so stdout stays clean for results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Progress]:
    """A progress display with one task (id 0) named ``description``."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        # Pipes and log files get the summary, not hundreds of bar refreshes.
        disable=not console.is_terminal,
    ) as bar:
        bar.add_task(description, total=total)
        yield bar


def info_bars() -> Progress:
    """A progress display for several tasks, each with an ``info`` field shown after its
    bar (the epochs of `cifake search` and `cifake train`)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def epoch_info(logs: dict[str, float]) -> str:
    """One epoch's Keras logs as the training displays show them."""
    return (
        f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f} "
        f"val_loss {logs.get('val_loss', 0):.3f} val_acc {logs.get('val_accuracy', 0):.3f}"
    )
