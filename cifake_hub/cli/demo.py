"""``cifake demo``: the main job: import, search, Grad-CAM, cards and publish (embedded sample
and a dry run by default).
"""

from __future__ import annotations

import argparse
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "demo"


def register(sub: Any) -> None:
    from cifake_hub.demo import JobConfig

    p = add_command(sub, NAME, __doc__, run, JobConfig)
    p.add_argument("--out", default="cifake-demo", help="output folder (default: ./cifake-demo)")


def run(args: argparse.Namespace) -> int:
    from cifake_hub.demo import JobConfig, run_job
    from cifake_hub.hub.publish import configure_endpoint
    from cifake_hub.progress import console

    # Before anything imports huggingface_hub, which reads the endpoint once.
    configure_endpoint(args.endpoint)

    cfg = config_from_args(JobConfig, args)
    result = run_job(args.out, cfg, say=console.print)
    print(
        f"dataset card: {result.dataset_card}\nmodel card:   {result.model_card}\n"
        f"Figure 6:     {result.figure6}\nmodel:        {result.model}\n"
        f"published:    {result.published}"
    )
    return 0
