"""``cifake explain RUN_DIR``: Grad-CAM maps, the paper's Figure 6 and a deletion test."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="Grad-CAM of a run's final model: Figure 6, gallery, deletion test",
        description="Writes RUN_DIR/gradcam/ (figure6.png, gallery/, heatmaps.npz, summary.json).",
    )
    p.add_argument("run_dir", help="a run folder made by `cifake search`")
    p.add_argument("--dataset", default=None, help="dataset folder or Hub id (default: the run's)")
    p.add_argument(
        "--split",
        default=None,
        help="split to explain (default: test if present, else the run's validation slice)",
    )
    p.add_argument("--n", type=int, default=200, help="images to explain (stratified sample)")
    p.add_argument("--layer", default=None, help="layer to explain (default: the last convolution)")
    p.add_argument("--alpha", type=float, default=0.45, help="overlay opacity")
    p.add_argument(
        "--deletion-fraction",
        type=float,
        default=0.1,
        help="share of pixels masked in the deletion test",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.explain import ExplainConfig, dataset_of_run, explain_run
    from cifake_hub.progress import console

    run_dir = Path(args.run_dir)
    config = ExplainConfig(
        dataset=args.dataset or dataset_of_run(run_dir),
        split=args.split,
        n=args.n,
        layer=args.layer,
        alpha=args.alpha,
        deletion_fraction=args.deletion_fraction,
    )
    with console.status(f"Grad-CAM on {config.n} {config.split or ''} images"):
        summary = explain_run(run_dir, config)
    f = summary["faithfulness"]
    console.print(
        f"explained {summary['images']} images at layer {summary['layer']}; deletion test "
        f"(top {f['fraction']:.0%} pixels): mean drop {f['mean_drop_gradcam']:.3f} with Grad-CAM "
        f"vs {f['mean_drop_random']:.3f} with random pixels"
    )
    console.print(f"Figure 6: {run_dir / summary['figure6']}")
    return 0
