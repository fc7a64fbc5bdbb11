"""Publish to the Hub: run a list of targets (:mod:`cifake_hub.hub.targets`), then check
what landed from a fresh process (:mod:`cifake_hub.hub.check`).

By default the targets are the dataset folder and, with a run, its model. Commits are
atomic, so a failed step leaves a repo at its previous commit, and unchanged files are
skipped by the client, so publishing the same inputs again makes no commit.

huggingface_hub and datasets read the endpoint once, when imported: the command-line entry
points call :func:`configure_endpoint` first; library callers set ``HF_ENDPOINT`` before
importing them (:func:`publish` refuses a mismatch rather than talking to the wrong Hub).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cifake_hub.errors import CifakeError
from cifake_hub.hub.session import PublishConfig, Session, check_endpoint, check_url
from cifake_hub.hub.targets import TARGETS, Pushed, Target, tree
from cifake_hub.outputs import Replacement

PUBLISH_CONFIG = "publish_config.json"
PUBLISH_TREE_KIND = "publish-tree"


def default_targets(cfg: PublishConfig) -> list[Target]:
    """Every registered target the options ask for: the dataset, the model when a run is
    given, the generator when one is given, the Space when asked for (:data:`TARGETS`)."""
    return [t for cls in TARGETS if (t := cls.from_config(cfg)) is not None]


def configure_endpoint(endpoint: str | None) -> None:
    """Point huggingface_hub and datasets at ``endpoint`` (command-line entry points only:
    they read it once, at import)."""
    if endpoint is None:
        return
    check_url(endpoint)
    check_endpoint(endpoint)
    os.environ["HF_ENDPOINT"] = endpoint
    if "huggingface.co" not in endpoint:
        # Other servers speak plain LFS; the client would otherwise insist on Xet.
        os.environ.setdefault("HF_HUB_DISABLE_XET", "1")


def progress_note(targets: Sequence[Target]) -> str:
    """What was and was not pushed, for the error line of a failed publish."""
    done = [f"{t.kind} {step}" for t in targets for step in t.pushed.done]
    missing = [f"{t.kind} {s}" for t in targets for s in t.steps if s not in t.pushed.done]
    return f"pushed: {', '.join(done) or 'nothing'}; not pushed: {', '.join(missing)}"


def publish(
    cfg: PublishConfig,
    targets: Sequence[Target] | None = None,
    say: Callable[[str], None] = print,
) -> tuple[list[Pushed], dict[str, Any] | None]:
    """Push every target (default: :func:`default_targets`), then verify them from a
    fresh process."""
    check_endpoint(cfg.endpoint)
    from huggingface_hub import HfApi, get_token

    from cifake_hub import __version__

    targets = list(targets) if targets is not None else default_targets(cfg)
    token = get_token()
    if not token:
        raise CifakeError(
            "no Hub token: set HF_TOKEN or run `hf auth login` (the token is never printed "
            "or saved by cifake-publish)"
        )
    api = HfApi(
        endpoint=cfg.hub, token=token, library_name="cifake-hub", library_version=__version__
    )
    with tempfile.TemporaryDirectory(prefix="cifake-publish-") as tmp:
        session = Session(cfg, api, token, say, Path(tmp))
        # Fail fast, before any upload, on a refused token or an unreachable endpoint.
        session.retrying(api.whoami, targets[0].repo_id)
        try:
            for target in targets:
                target.push(session)
        except CifakeError as exc:
            raise CifakeError(f"{exc} [{progress_note(targets)}]") from exc
        checks = verify(cfg, targets) if cfg.verify else None
    return [t.pushed for t in targets], checks


def dry_run(
    cfg: PublishConfig, out: Path, targets: Sequence[Target] | None = None
) -> dict[str, dict[str, tuple[int, str]]]:
    """Write every target's repo files under ``out/<kind>``; no network.

    ``out`` is an output folder (cifake_hub.outputs): a tree written by an earlier dry run
    is replaced atomically, anything else is refused.
    """
    targets = list(targets) if targets is not None else default_targets(cfg)
    trees = {}
    with Replacement(out, PUBLISH_TREE_KIND, overwrite=True, what="--dry-run folder") as staged:
        for target in targets:
            target.stage(staged / target.kind)
            trees[target.kind] = tree(staged / target.kind)
        cfg.save(staged / PUBLISH_CONFIG)
    return trees


def verify(cfg: PublishConfig, targets: Sequence[Target]) -> dict[str, Any]:
    """Load what landed from a fresh process with an empty cache and compare it."""
    spec = {
        "dataset": cfg.dataset,
        "targets": [{**t.check_spec(), "check": t.check} for t in targets],
    }
    with tempfile.TemporaryDirectory(prefix="cifake-verify-") as cache:
        spec_file = Path(cache) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        env = {
            **os.environ,
            "HF_ENDPOINT": cfg.hub,
            "HF_HUB_CACHE": str(Path(cache) / "hub"),
            "HF_DATASETS_CACHE": str(Path(cache) / "datasets"),
            "TMPDIR": cache,  # what a Space's app.py makes goes with the cache
        }
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cifake_hub.hub.check", str(spec_file)],
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CifakeError(f"verification could not run: {last}")
    checks: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    checks["seconds"] = time.perf_counter() - started
    problems = [p for t in targets for p in checks[t.kind]["problems"]]
    if problems:
        raise CifakeError(f"pushed, but verification failed: {'; '.join(problems)}")
    return checks
