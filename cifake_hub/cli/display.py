"""The epochs bar that `cifake train` and `cifake study` show while a model trains."""

from __future__ import annotations

from typing import Any

from cifake_hub.progress import console, epoch_info
from cifake_hub.training.search import Progress


class EpochDisplay(Progress):
    """One bar of epochs per model trained, on ``bars`` (:func:`cifake_hub.progress.info_bars`);
    a line per epoch instead when the output is not a terminal (rich then draws no bars)."""

    def __init__(self, bars: Any) -> None:
        self.bars = bars
        self.epochs = bars.add_task("epochs", total=None, info="")

    def topology_started(self, name: str, index: int, total: int, epochs: int) -> None:
        self.bars.reset(self.epochs, total=epochs, description=name, info="")

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        info = epoch_info(logs)
        self.bars.update(self.epochs, completed=epoch, info=info)
        if not console.is_terminal:
            console.print(f"epoch {epoch}: {info}")
