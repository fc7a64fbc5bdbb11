"""``cifake explain RUN_DIR``: Grad-CAM of a run's final model: Figure 6, gallery, ROAD,
the sanity check and the paper's reading measured.

Writes RUN_DIR/gradcam/: Figure 6, a gallery, the maps and a summary. For a shipped detector
(``cifake explain robust --out DIR``) DIR becomes a run folder holding its files first.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "explain"


def register(sub: Any) -> None:
    from cifake_hub.explain.run import ExplainConfig

    p = add_command(sub, NAME, __doc__, run, ExplainConfig)
    p.add_argument(
        "run_dir", help="a run folder (`cifake search`/`train`) or a shipped detector's name"
    )
    p.add_argument("--out", help="for a shipped detector: the run folder to make and explain")


def run(args: argparse.Namespace) -> int:
    from cifake_hub.errors import ConfigError
    from cifake_hub.explain.run import ExplainConfig, explain_run
    from cifake_hub.progress import console
    from cifake_hub.training.models import copy_shipped, shipped_run

    run_dir = Path(args.run_dir)
    if shipped_run(args.run_dir) is not None:
        if not args.out:
            raise ConfigError(
                f"{args.run_dir} is a shipped detector: give --out DIR for the run folder to "
                "explain it in (the package's files are never written)"
            )
        run_dir = copy_shipped(args.run_dir, args.out)
    elif args.out:
        raise ConfigError("--out is for shipped detectors; a run folder is explained in place")
    config = config_from_args(ExplainConfig, args)
    with console.status(f"Grad-CAM on {config.n} {config.split or ''} images"):
        summary = explain_run(run_dir, config)
    f = summary.faithfulness
    console.print(
        f"explained {summary.images} images at layer {summary.layer}; deletion test "
        f"(top {f['fraction']:.0%} pixels): mean drop {f['mean_drop_gradcam']:.3f} with Grad-CAM "
        f"vs {f['mean_drop_random']:.3f} with random pixels"
    )
    console.print(f"Figure 6: {run_dir / summary.figure6}")
    return 0
