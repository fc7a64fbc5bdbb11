"""``cifake app [--model NAME|RUN_DIR|HUB_ID ...] [--port P]``: try the detectors in the
browser (a Gradio app on 127.0.0.1).

Upload or drop images and see each detector's P(FAKE), its label at the calibrated threshold,
where it looks (four CAM methods), its answers after JPEG, blur, resize and noise, and the
robustness its card reports. Uploads live in a temporary folder that is removed on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from cifake_hub.cli.options import add_command, config_from_args

NAME = "app"


def register(sub: Any) -> None:
    from cifake_hub.app import AppConfig

    add_command(sub, NAME, __doc__, run, AppConfig)


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so the server closes and the temporary folder goes


def run(args: argparse.Namespace) -> int:
    from cifake_hub.app import AppConfig, build_app, check_port, launch, load_detectors
    from cifake_hub.progress import console

    cfg = config_from_args(AppConfig, args)
    check_port(cfg.host, cfg.port)
    signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory(prefix="cifake-app-") as tmp:
        workdir = Path(tmp)
        # Gradio reads these when imported: uploads and its caches stay in the folder.
        os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(workdir / "examples-cache")
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        with console.status(f"loading {', '.join(cfg.model)}"):
            detectors = load_detectors(cfg.model)
            demo = build_app(detectors, workdir)
        url = launch(demo, cfg.host, cfg.port, workdir)
        print(f"cifake app: {url} (Ctrl+C to stop)", flush=True)
        try:
            demo.block_thread()
        finally:
            demo.close()
    return 0
