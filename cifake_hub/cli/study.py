"""``cifake study DATASET --out DIR``: the cross-generator study: one detector per generator,
each scored on every generator's test images.

On a dataset whose FAKE rows come from several generators (`cifake build --generator A
--generator B`), trains one detector per generator (the paper's topology, or a `cifake
train` recipe) and writes the train x test matrix of accuracy and ROC AUC (matrix.csv,
matrix.png), with leave-one-generator-out for three generators or more. The table goes into
the study's README, each detector's model card and the dataset card. Resumes when run again.
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "study"


def register(sub: Any) -> None:
    from cifake_hub.study import StudyConfig

    add_command(sub, NAME, __doc__, run, StudyConfig)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.cards.study_card import study_table
    from cifake_hub.cli.display import EpochDisplay
    from cifake_hub.progress import console, info_bars
    from cifake_hub.study import StudyConfig, run_study

    config = config_from_args(StudyConfig, args)
    bars = info_bars()
    log = console.print

    with bars:
        outcome = run_study(config, EpochDisplay(bars), say=log)
    log(study_table(outcome.record))
    log(f"study folder: {outcome.out}")
    return 0
