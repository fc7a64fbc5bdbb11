"""``cifake search DATASET --out RUN_DIR``: train the paper's Keras CNN search (36 topologies)
or one topology.

Stage 1 trains 12 conv feature extractors, stage 2 puts 24 dense heads on the stage-1 winner
(lowest validation loss). Validation is a stratified slice of train; the test split is
scored once at the end. A stopped search resumes when run again with the same options. For
several workers/GPUs see the README (KerasTuner distributed mode).
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "search"


def register(sub: Any) -> None:
    from cifake_hub.training.search import SearchConfig

    p = add_command(sub, NAME, __doc__, run, SearchConfig)
    p.add_argument("dataset", help="dataset folder or Hub dataset id")
    p.add_argument("--out", required=True, help="run folder (created; resumed if it exists)")


def run(args: argparse.Namespace) -> int:
    from cifake_hub.progress import console, epoch_info, info_bars
    from cifake_hub.training.search import Progress, SearchConfig, run_search

    config = config_from_args(SearchConfig, args)
    bars = info_bars()
    log = console.print

    class Display(Progress):
        def __init__(self) -> None:
            self.overall = bars.add_task("topologies", total=None, info="")
            self.epochs = bars.add_task("epochs", total=None, info="")

        def search_started(self, total: int, done: int) -> None:
            bars.update(self.overall, total=total, completed=0)

        def topology_started(self, name: str, index: int, total: int, epochs: int) -> None:
            bars.update(self.overall, info=f"{index}/{total} {name}")
            bars.reset(self.epochs, total=epochs, info="")

        def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
            bars.update(self.epochs, completed=epoch, info=epoch_info(logs))

        def topology_ended(self, result: Any, skipped: bool) -> None:
            bars.advance(self.overall)
            log(
                f"{'skipped (done) ' if skipped else ''}{result.topology:<24} "
                f"{result.selected_on} {_metrics(result.selected)} params {result.params:,}"
            )

    with bars:
        outcome = run_search(args.dataset, args.out, config, Display(), say=log)
    best = outcome.best
    if best is not None:
        log(f"best: {best.topology} ({best.selected_on} {_metrics(best.selected)})")
    final = outcome.test.final if outcome.test else None
    if final:
        log(f"test ({final.topology}): {_metrics(final.metrics)}")
    log(config.selection_note)
    log(f"run folder: {outcome.run.path} (model, results, tables, plots)")
    return 0


def _metrics(m: dict[str, Any]) -> str:
    def show(key: str, spec: str) -> str:
        return "n/a" if m.get(key) is None else format(m[key], spec)

    return (
        f"loss {show('loss', '.4f')} acc {show('accuracy', '.2%')} F1 {show('f1', '.3f')} "
        f"AUC {show('roc_auc', '.3f')}"
    )
