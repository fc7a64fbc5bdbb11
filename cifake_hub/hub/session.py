"""What every Hub target publishes with, below the targets themselves: the publish options
(:class:`PublishConfig`), the session (client, token, retries) and one-line errors."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cifake_hub._compat import hub_retry_exceptions, hub_retry_statuses
from cifake_hub.config import Config, check_repo_id, option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.training.models import resolve_run
from cifake_hub.training.run_folder import RunFolder
from cifake_hub.zoo.folder import GeneratorFolder

T = TypeVar("T")
DEFAULT_ENDPOINT = "https://huggingface.co"


def check_url(endpoint: str) -> None:
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
            check_url(self.endpoint)
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

    if isinstance(exc, HfHubHTTPError):
        return _status(exc) in hub_retry_statuses()
    return isinstance(exc, (*hub_retry_exceptions(), ConnectionError))


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

    def head(self, repo_id: str, repo_type: str) -> str | None:
        """The commit the repo's branch is at now (None: the branch does not exist)."""
        from huggingface_hub.errors import RevisionNotFoundError

        try:
            info = self.api.repo_info(repo_id, repo_type=repo_type, revision=self.cfg.revision)
        except RevisionNotFoundError:
            return None
        return str(info.sha)

    def after(self, previous: Any) -> dict[str, Any]:
        """Where the next commit goes: the PR the previous one opened, else the same place."""
        if previous.pr_revision:
            return {"revision": previous.pr_revision}
        return {"revision": self.cfg.revision, "create_pr": self.cfg.create_pr}
