"""``cifake search DATASET --out RUN_DIR``: the paper's 36-topology CNN search (or one topology)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="train the paper's Keras CNN search (36 topologies) or one topology",
        description=(
            "Stage 1 trains 12 conv feature extractors, stage 2 puts 24 dense heads on the "
            "stage-1 winner (lowest validation loss). Validation is a stratified slice of "
            "train; the test split is scored once at the end. A stopped search resumes when "
            "run again with the same options. For several workers/GPUs see the README "
            "(KerasTuner distributed mode)."
        ),
    )
    p.add_argument("dataset", help="dataset folder or Hub dataset id")
    p.add_argument("--out", required=True, help="run folder (created; resumed if it exists)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="adam", help="adam, sgd or rmsprop")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--padding", default="same", help="conv padding: same (default) or valid")
    p.add_argument(
        "--patience",
        type=int,
        default=3,
        help="early stopping on validation loss, best weights kept (0: off)",
    )
    p.add_argument("--stage", default="all", choices=["1", "2", "all"])
    p.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="use at most N rows of the train split (stratified)",
    )
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument(
        "--select-on",
        default="validation",
        choices=["validation", "test"],
        help="'test' reproduces the paper's protocol (optimistic test numbers)",
    )
    p.add_argument(
        "--topology",
        default=None,
        help="train just this topology, e.g. conv=32x2,dense=64x1 (the paper's choice)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    from cifake_hub.progress import console
    from cifake_hub.training.search import Progress, SearchConfig, run_search

    config = SearchConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        padding=args.padding,
        patience=args.patience,
        val_fraction=args.val_fraction,
        max_train=args.max_train,
        seed=args.seed,
        stage=args.stage,
        select_on=args.select_on,
        topology=args.topology,
    )
    bars = RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    log = console.print

    class Display(Progress):
        def __init__(self) -> None:
            self.overall = bars.add_task("topologies", total=None, info="")
            self.epochs = bars.add_task("epochs", total=None, info="")

        def search_started(self, total: int, done: int) -> None:
            bars.update(self.overall, total=total, completed=0)

        def topology_started(self, topology: Any, index: int, total: int, epochs: int) -> None:
            bars.update(self.overall, info=f"{index}/{total} {topology.name}")
            bars.reset(self.epochs, total=epochs, info="")

        def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
            bars.update(
                self.epochs,
                completed=epoch,
                info=(
                    f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f} "
                    f"val_loss {logs.get('val_loss', 0):.3f} "
                    f"val_acc {logs.get('val_accuracy', 0):.3f}"
                ),
            )

        def topology_ended(self, result: dict[str, Any], skipped: bool) -> None:
            bars.advance(self.overall)
            m = result[result["selected_on"]]
            log(
                f"{'skipped (done) ' if skipped else ''}{result['topology']:<24} "
                f"{result['selected_on']} loss {m['loss']:.3f} acc {m['accuracy']:.2%} "
                f"F1 {m['f1']:.3f} AUC {m['roc_auc']:.3f} params {result['params']:,}"
            )

    with bars:
        outcome = run_search(args.dataset, args.out, config, Display(), on_status=log)
    best = outcome.best
    split = best["selected_on"]
    log(f"best: {best['topology']} ({split} loss {best[split]['loss']:.4f})")
    final = outcome.test.get("final")
    if final:
        m = final["metrics"]
        log(
            f"test ({final['topology']}): accuracy {m['accuracy']:.2%} "
            f"precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f} "
            f"AUC {m['roc_auc']:.3f}"
        )
    log(config.selection_note)
    log(f"run folder: {outcome.run_dir} (model.keras, results.jsonl, tables/, plots/)")
    return 0
