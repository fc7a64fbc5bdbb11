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

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cifake_hub.config import Config, check_repo_id, option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.hub.targets import (
    DatasetTarget,
    GeneratorTarget,
    ModelTarget,
    Pushed,
    SpaceTarget,
    Target,
    tree,
)
from cifake_hub.outputs import Replacement
from cifake_hub.training.models import resolve_run
from cifake_hub.training.run_folder import RunFolder
from cifake_hub.zoo.folder import GeneratorFolder

T = TypeVar("T")
DEFAULT_ENDPOINT = "https://huggingface.co"
PUBLISH_CONFIG = "publish_config.json"
PUBLISH_TREE_KIND = "publish-tree"


def _check_url(endpoint: str) -> None:
    if not re.match(r"^https?://[^/\s]+", endpoint):
        raise ConfigError(f"endpoint must be an http(s) URL, got {endpoint!r}")


@dataclasses.dataclass(frozen=True)
class PublishConfig(Config):
    dataset: str | None = option(None, "dataset folder", metavar="DIR")
    dataset_repo: str | None = option(None, "dataset repo id", metavar="NS/NAME")
    run: str | None = option(
        None, "run folder of `cifake search`/`train`, or a shipped detector's name", metavar="RUN"
    )
    model_repo: str | None = option(None, "model repo id", metavar="NS/NAME")
    generator: str | None = option(
        None, "a zoo generator folder (`cifake zoo train`) to publish as a model repo",
        metavar="GEN_DIR",
    )  # fmt: skip
    generator_repo: str | None = option(None, "the generator's model repo id", metavar="NS/NAME")
    space_repo: str | None = option(
        None, "also publish a Gradio Space running `cifake app` on the model", metavar="NS/NAME"
    )
    private: bool = option(False, "create new repos private (existing keep theirs)")
    revision: str | None = option(None, "push to this branch (made if missing)")
    create_pr: bool = option(False, "open pull requests instead of committing")
    endpoint: str | None = option(None, "Hub URL (default $HF_ENDPOINT or huggingface.co)")
    retries: int = option(3, "repeats of a failed step")
    backoff: float = option(2.0, "seconds before the first repeat, doubling", cli=False)
    verify: bool = option(True, "skip loading everything back", flag="--no-verify")

    def __post_init__(self) -> None:
        for a, b, what in (
            ("dataset", "dataset_repo", "the dataset"),
            ("run", "model_repo", "the model"),
            ("generator", "generator_repo", "a generator"),
        ):
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                flags = f"--{a} and --{b.replace('_', '-')}"
                raise ConfigError(f"give {flags} together ({what} needs both)")
        if self.dataset is None and self.generator is None:
            raise ConfigError(
                "nothing to publish: give --dataset DIR --dataset-repo NS/NAME (with --run "
                "RUN --model-repo NS/NAME for its model), or --generator GEN_DIR "
                "--generator-repo NS/NAME"
            )
        if self.space_repo is not None and self.model_repo is None:
            raise ConfigError(
                "a Space shows the model it is published with: give --run RUN --model-repo "
                "NS/NAME with --space-repo"
            )
        if self.run is not None and self.dataset is None:
            raise ConfigError("a model is published with its dataset: give --dataset too")
        if self.revision is not None and self.create_pr:
            raise ConfigError("give --revision or --create-pr, not both")
        if self.retries < 0 or self.backoff < 0:
            raise ConfigError(
                f"retries and backoff must be >= 0, got {self.retries}, {self.backoff}"
            )
        if self.endpoint is not None:
            _check_url(self.endpoint)
        for name in ("dataset_repo", "model_repo", "generator_repo", "space_repo"):
            value = getattr(self, name)
            if value is not None:
                check_repo_id(name.replace("_", "-"), value)
        if self.dataset is not None:
            DatasetFolder(self.dataset).require()
        if self.generator is not None:
            GeneratorFolder(self.generator).require()
        if self.run is not None:
            RunFolder(resolve_run(self.run)).require_model()

    @property
    def hub(self) -> str:
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def default_targets(cfg: PublishConfig) -> list[Target]:
    """The dataset, the model when a run is given, the generator when one is given, the
    Space when asked for."""
    targets: list[Target] = []
    if cfg.dataset_repo is not None:
        targets.append(DatasetTarget(cfg, cfg.dataset_repo))
    if cfg.run is not None and cfg.model_repo is not None:
        targets.append(ModelTarget(cfg, cfg.model_repo, resolve_run(cfg.run)))
    if cfg.generator is not None and cfg.generator_repo is not None:
        targets.append(GeneratorTarget(cfg, cfg.generator_repo, cfg.generator))
    if cfg.space_repo is not None and cfg.model_repo is not None and cfg.run is not None:
        targets.append(SpaceTarget(cfg, cfg.space_repo, cfg.model_repo, resolve_run(cfg.run)))
    return targets


def configure_endpoint(endpoint: str | None) -> None:
    """Point huggingface_hub and datasets at ``endpoint`` (command-line entry points only:
    they read it once, at import)."""
    if endpoint is None:
        return
    _check_url(endpoint)
    check_endpoint(endpoint)
    os.environ["HF_ENDPOINT"] = endpoint
    if "huggingface.co" not in endpoint:
        # Other servers speak plain LFS; the client would otherwise insist on Xet.
        os.environ.setdefault("HF_HUB_DISABLE_XET", "1")


def check_endpoint(endpoint: str | None) -> None:
    """Refuse an endpoint other than the one huggingface_hub was imported with."""
    if endpoint is None or "huggingface_hub" not in sys.modules:
        return
    from huggingface_hub import constants

    if constants.ENDPOINT.rstrip("/") != endpoint.rstrip("/"):
        raise ConfigError(
            f"huggingface_hub was imported with endpoint {constants.ENDPOINT}; set "
            f"HF_ENDPOINT={endpoint} before importing it (or use cifake-publish)"
        )


# -- errors and retries -----------------------------------------------------------------------
def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient(exc: BaseException) -> bool:
    """Whether huggingface_hub itself would retry this: its retryable statuses, and its HTTP
    client's timeouts and network errors."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import _http

    if isinstance(exc, HfHubHTTPError):
        return _status(exc) in _http._DEFAULT_RETRY_ON_STATUS_CODES
    return isinstance(exc, (*_http._DEFAULT_RETRY_ON_EXCEPTIONS, ConnectionError))


def describe_error(exc: BaseException, cfg: PublishConfig, repo: str) -> str:
    """One line saying what went wrong and what to do; never the token."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    status = _status(exc)
    if status in (401, 403):
        return (
            f"{cfg.hub} refused the token for {repo} (HTTP {status}): set HF_TOKEN to a token "
            "with write access to that namespace, or run `hf auth login`"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"revision {cfg.revision!r} not found in {repo}; check --revision"
    if isinstance(exc, RepositoryNotFoundError):
        return f"repo {repo} not found at {cfg.hub} and could not be created; check the id"
    if status == 429:
        return f"{cfg.hub} kept rate-limiting requests for {repo} (HTTP 429); try again later"
    if status is not None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{cfg.hub} answered HTTP {status} for {repo}: {first}"
    if _transient(exc):
        return (
            f"cannot reach {cfg.hub} ({type(exc).__name__}); check --endpoint / HF_ENDPOINT "
            "and the network"
        )
    return f"publishing {repo} failed: {type(exc).__name__}: {exc}"


@dataclasses.dataclass
class Session:
    """What targets push with: the client, the token, retries and the status line."""

    cfg: PublishConfig
    api: Any
    token: str
    say: Callable[[str], None]
    workdir: Path

    def retrying(self, step: Callable[[], T], repo: str) -> T:
        """Run a step that makes at most one atomic commit, again on transient failures.

        The client already retries single requests; this repeats the whole step (a 500 on
        the commit itself, a dropped connection), which is safe because uploaded files are
        skipped the second time and the commit is all or nothing.
        """
        cfg = self.cfg
        for attempt in range(cfg.retries + 1):
            try:
                return step()
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one line
                if not _transient(exc) or attempt == cfg.retries:
                    raise CifakeError(describe_error(exc, cfg, repo)) from exc
                headers = getattr(getattr(exc, "response", None), "headers", {})
                retry_after = headers.get("Retry-After")
                wait = (
                    float(retry_after)
                    if retry_after and retry_after.isdigit()
                    else cfg.backoff * 2**attempt
                )
                self.say(
                    f"{repo}: {describe_error(exc, cfg, repo)}; retry {attempt + 1}/"
                    f"{cfg.retries} in {wait:.0f} s"
                )
                time.sleep(wait)
        raise AssertionError("unreachable")

    def head(self, target: Target) -> str | None:
        """The commit the target's branch is at now (None: the branch does not exist)."""
        from huggingface_hub.errors import RevisionNotFoundError

        try:
            info = self.api.repo_info(
                target.repo_id, repo_type=target.repo_type, revision=self.cfg.revision
            )
        except RevisionNotFoundError:
            return None
        return str(info.sha)

    def after(self, previous: Any) -> dict[str, Any]:
        """Where the next commit goes: the PR the previous one opened, else the same place."""
        if previous.pr_revision:
            return {"revision": previous.pr_revision}
        return {"revision": self.cfg.revision, "create_pr": self.cfg.create_pr}


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
    spec = {"dataset": cfg.dataset, "targets": [t.check_spec() for t in targets]}
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
