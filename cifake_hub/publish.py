"""Publish a dataset folder and a search run to the Hub, then check what landed.

The dataset goes up with ``datasets``' own ``push_to_hub`` (one commit: Parquet shards and
the YAML it writes), then our card in a second commit that keeps that YAML. The model repo
is staged locally (Keras' Hub layout unpacked from ``model.keras``, the run's results,
tables, plots, Grad-CAM images and the model card) and goes up in one ``upload_folder``
commit. Commits are atomic, so a failed step leaves the repo at its previous commit, and
unchanged files are skipped by the client, so publishing the same inputs again makes no
commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cifake_hub.config import Config
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.folder import CARD_FILE, DATA_DIR, set_dataset_yaml
from cifake_hub.outputs import MARKER, Replacement

T = TypeVar("T")
DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
PUBLISH_CONFIG = "publish_config.json"
PUBLISH_TREE_KIND = "publish-tree"
# The run's files that go into the model repo next to the model and its card.
RUN_FILES = ("run_config.json", "results.jsonl", "test_results.json")
RUN_DIRS = ("tables", "plots", "gradcam")


@dataclasses.dataclass(frozen=True)
class PublishConfig(Config):
    dataset: str
    dataset_repo: str
    run: str | None = None
    model_repo: str | None = None
    private: bool = False
    revision: str | None = None
    create_pr: bool = False
    endpoint: str | None = None
    retries: int = 3
    backoff: float = 2.0
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("dataset_repo", "model_repo"):
            value = getattr(self, name)
            if value is not None and not REPO_ID.match(value):
                raise ConfigError(
                    f"{name.replace('_', '-')} must be NAMESPACE/NAME (letters, digits, '-', "
                    f"'_', '.'), got {value!r}"
                )
        if (self.run is None) != (self.model_repo is None):
            raise ConfigError("give --run and --model-repo together (the model needs both)")
        if self.revision is not None and self.create_pr:
            raise ConfigError("give --revision or --create-pr, not both")
        if self.retries < 0 or self.backoff < 0:
            raise ConfigError(
                f"retries and backoff must be >= 0, got {self.retries}, {self.backoff}"
            )
        if self.endpoint is not None and not re.match(r"^https?://[^/\s]+", self.endpoint):
            raise ConfigError(f"endpoint must be an http(s) URL, got {self.endpoint!r}")
        folder = Path(self.dataset)
        if not (folder / CARD_FILE).exists() or not any((folder / DATA_DIR).glob("*.parquet")):
            raise ConfigError(
                f"{folder} is not a dataset folder (README.md and {DATA_DIR}/*.parquet); "
                "make one with `cifake import-kaggle` or `cifake build`"
            )
        if self.run is not None and not (Path(self.run) / "model.keras").exists():
            raise ConfigError(f"{self.run} has no model.keras; finish `cifake search` first")

    @property
    def hub(self) -> str:
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclasses.dataclass
class Pushed:
    """What one repo received: its URL, the revision to read it at, and the commits made."""

    kind: str
    repo_id: str
    url: str
    revision: str = "main"
    head: str = ""
    commits: list[str] = dataclasses.field(default_factory=list)
    files: int = 0
    done: list[str] = dataclasses.field(default_factory=list)


def configure_endpoint(endpoint: str | None) -> None:
    """Point huggingface_hub and datasets at ``endpoint``; they read it once, at import."""
    if endpoint is None:
        return
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        if constants.ENDPOINT.rstrip("/") != endpoint.rstrip("/"):
            raise ConfigError(
                f"huggingface_hub was imported with endpoint {constants.ENDPOINT}; set "
                f"HF_ENDPOINT={endpoint} before importing it (or use cifake-publish)"
            )
        return
    os.environ["HF_ENDPOINT"] = endpoint
    if "huggingface.co" not in endpoint:
        # Other servers speak plain LFS; the client would otherwise insist on Xet.
        os.environ.setdefault("HF_HUB_DISABLE_XET", "1")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(folder: Path) -> dict[str, tuple[int, str]]:
    """Repo path -> (size, sha256) of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, sha256(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- staging ----------------------------------------------------------------------------------
def load_local(folder: str | Path) -> Any:
    import datasets

    return datasets.load_dataset(str(folder))


def shard_counts(folder: str | Path, splits: Any) -> dict[str, int]:
    """Our folder's shard count per split, so the Hub gets the same file names."""
    data = Path(folder) / DATA_DIR
    return {s: max(1, len(list(data.glob(f"{s}-*.parquet")))) for s in splits}


def dataset_card(cfg: PublishConfig, hub_yaml: dict[str, Any] | None = None) -> str:
    """Our dataset card, with ``hub_yaml``'s dataset_info/configs when given (push_to_hub's)."""
    from cifake_hub.cards.dataset_card import render_dataset_card

    card = render_dataset_card(
        cfg.dataset, repo_id=cfg.dataset_repo, model_repo=cfg.model_repo, endpoint=cfg.hub
    )
    for key in ("dataset_info", "configs"):
        if hub_yaml and key in hub_yaml:
            card.data[key] = hub_yaml[key]
    return str(card)


def stage_dataset(cfg: PublishConfig, ds: Any, out: Path) -> None:
    """Write the dataset repo's files as ``push_to_hub`` makes them (for --dry-run)."""
    import datasets
    from datasets.arrow_writer import (
        get_writer_batch_size_from_data_size,
        get_writer_batch_size_from_features,
    )

    counts = shard_counts(cfg.dataset, ds)
    splits = datasets.SplitDict()
    uploaded = 0
    for split, table in ds.items():
        nbytes = table._estimate_nbytes()
        batch = get_writer_batch_size_from_features(
            table.features
        ) or get_writer_batch_size_from_data_size(len(table), nbytes)
        n = counts[split]
        for i in range(n):
            path = out / DATA_DIR / f"{split}-{i:05d}-of-{n:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.shard(num_shards=n, index=i, contiguous=True).to_parquet(path, batch_size=batch)
            uploaded += path.stat().st_size
        splits.add(datasets.SplitInfo(name=split, num_bytes=nbytes, num_examples=len(table)))
    from huggingface_hub import DatasetCardData

    data = DatasetCardData()
    set_dataset_yaml(data, next(iter(ds.values())).features, splits, uploaded)
    (out / CARD_FILE).write_text(dataset_card(cfg, data.to_dict()))


def stage_model(cfg: PublishConfig, out: Path) -> None:
    """Write the model repo's files into ``out``: one folder, uploaded in one commit."""
    from cifake_hub.cards.model_card import render_model_card

    assert cfg.run is not None
    run = Path(cfg.run)
    out.mkdir(parents=True, exist_ok=True)
    # model.keras is a zip of config.json, metadata.json and model.weights.h5: unpacked at the
    # repo root it is the layout keras.saving.load_model("hf://...") reads, byte for byte the
    # run's model (a fresh save would restamp metadata.json and make a new commit each time).
    with zipfile.ZipFile(run / "model.keras") as archive:
        archive.extractall(out)
    shutil.copy2(run / "model.keras", out / "model.keras")
    for name in RUN_FILES:
        if (run / name).exists():
            shutil.copy2(run / name, out / name)
    for name in RUN_DIRS:
        if (run / name).is_dir():
            shutil.copytree(
                run / name, out / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER)
            )
    # Local paths mean nothing on the Hub (and tell where the user keeps files): the
    # dataset a run used is named by its repo id there.
    run_json = [out / name for name in RUN_FILES if name.endswith(".json")]
    for path in run_json + [p for name in RUN_DIRS for p in (out / name).rglob("*.json")]:
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        portable = _portable(data, cfg.dataset_repo)
        if portable != data:
            path.write_text(json.dumps(portable, indent=1) + "\n")
    card = render_model_card(
        run, repo_id=cfg.model_repo, dataset_repo=cfg.dataset_repo, endpoint=cfg.hub
    )
    (out / "README.md").write_text(str(card))


def _portable(data: Any, dataset_repo: str) -> Any:
    """``data`` with every ``dataset`` entry that names a local folder replaced by the repo id."""
    if isinstance(data, dict):
        return {
            k: dataset_repo
            if k == "dataset" and isinstance(v, str) and _is_local(v)
            else _portable(v, dataset_repo)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_portable(v, dataset_repo) for v in data]
    return data


def _is_local(value: str) -> bool:
    return Path(value).is_absolute() or Path(value).exists()


# -- pushing ----------------------------------------------------------------------------------
def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        return _status(exc) in RETRY_STATUS
    # Dropped or refused connections and timeouts, from the HTTP client under huggingface_hub.
    return type(exc).__name__ in {
        "ConnectError",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "ReadTimeout",
        "ConnectTimeout",
        "WriteTimeout",
        "PoolTimeout",
    } or isinstance(exc, ConnectionError)


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


def retrying(
    step: Callable[[], T],
    cfg: PublishConfig,
    repo: str,
    say: Callable[[str], None],
) -> T:
    """Run a step that makes at most one atomic commit, again on transient failures.

    The client already retries single requests; this repeats the whole step (a 500 on the
    commit itself, a dropped connection), which is safe because uploaded files are skipped
    the second time and the commit is all or nothing.
    """
    for attempt in range(cfg.retries + 1):
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one line
            if not _transient(exc) or attempt == cfg.retries:
                raise CifakeError(describe_error(exc, cfg, repo)) from exc
            retry_after = getattr(getattr(exc, "response", None), "headers", {}).get("Retry-After")
            wait = (
                float(retry_after)
                if retry_after and retry_after.isdigit()
                else cfg.backoff * 2**attempt
            )
            say(
                f"{repo}: {describe_error(exc, cfg, repo)}; retry {attempt + 1}/{cfg.retries} "
                f"in {wait:.0f} s"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def targets(cfg: PublishConfig) -> list[Pushed]:
    """The repos this publish writes, in order."""
    found = [("dataset", cfg.dataset_repo)] + (
        [("model", cfg.model_repo)] if cfg.model_repo else []
    )
    return [
        Pushed(
            kind,
            repo,
            f"{cfg.hub}/{'datasets/' if kind == 'dataset' else ''}{repo}",
            cfg.revision or "main",
        )
        for kind, repo in found
    ]


def push_dataset(
    cfg: PublishConfig, api: Any, token: str, pushed: Pushed, say: Callable[[str], None]
) -> None:
    from huggingface_hub import CommitOperationAdd, DatasetCard, hf_hub_download

    repo = cfg.dataset_repo
    ds = load_local(cfg.dataset)
    retrying(
        lambda: api.create_repo(repo, repo_type="dataset", private=cfg.private, exist_ok=True),
        cfg,
        repo,
        say,
    )
    say(f"{repo}: pushing {sum(len(t) for t in ds.values()):,} rows with datasets.push_to_hub")
    head = _head(api, "dataset", repo, cfg.revision)
    data_commit = retrying(
        lambda: ds.push_to_hub(
            repo,
            token=token,
            revision=cfg.revision,
            create_pr=cfg.create_pr,
            num_shards=shard_counts(cfg.dataset, ds),
            commit_message="Upload CIFAKE dataset (cifake-publish)",
        ),
        cfg,
        repo,
        say,
    )
    _record(pushed, data_commit, head, "data")
    readme = hf_hub_download(
        repo, CARD_FILE, repo_type="dataset", revision=data_commit.oid, token=token
    )
    card = dataset_card(cfg, DatasetCard.load(readme).data.to_dict()).encode()
    card_commit = retrying(
        lambda: api.create_commit(
            repo,
            repo_type="dataset",
            operations=[CommitOperationAdd(CARD_FILE, card)],
            commit_message="Dataset card (cifake-publish)",
            parent_commit=data_commit.oid,
            **_target(cfg, data_commit),
        ),
        cfg,
        repo,
        say,
    )
    _record(pushed, card_commit, data_commit.oid, "card")
    pushed.files = len(api.list_repo_files(repo, repo_type="dataset", revision=card_commit.oid))


def push_model(
    cfg: PublishConfig, api: Any, staged: Path, pushed: Pushed, say: Callable[[str], None]
) -> None:
    repo = pushed.repo_id
    retrying(lambda: api.create_repo(repo, private=cfg.private, exist_ok=True), cfg, repo, say)
    if cfg.revision:
        retrying(
            lambda: api.create_branch(repo, branch=cfg.revision, exist_ok=True), cfg, repo, say
        )
    head = _head(api, "model", repo, cfg.revision)
    count = sum(1 for p in staged.rglob("*") if p.is_file())
    say(f"{repo}: uploading {count} files in one commit")
    commit = retrying(
        lambda: api.upload_folder(
            repo_id=repo,
            folder_path=staged,
            commit_message="Upload CIFAKE detector (cifake-publish)",
            revision=cfg.revision,
            create_pr=cfg.create_pr,
            # The repo mirrors the staged tree: files of an earlier run do not linger.
            delete_patterns="*",
        ),
        cfg,
        repo,
        say,
    )
    _record(pushed, commit, head, "model")
    pushed.files = len(api.list_repo_files(repo, revision=commit.oid))


def _head(api: Any, kind: str, repo: str, revision: str | None) -> str | None:
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        return str(api.repo_info(repo, repo_type=kind, revision=revision).sha)
    except RevisionNotFoundError:
        return None


def _target(cfg: PublishConfig, previous: Any) -> dict[str, Any]:
    """Where the next commit goes: the PR the previous one opened, else the same target."""
    if previous.pr_revision:
        return {"revision": previous.pr_revision}
    return {"revision": cfg.revision, "create_pr": cfg.create_pr}


def _record(pushed: Pushed, commit: Any, previous: str | None, step: str) -> None:
    if commit.pr_revision:
        pushed.revision = commit.pr_revision
    if commit.oid != previous:
        pushed.commits.append(commit.oid)
    pushed.head = commit.oid
    pushed.done.append(step)


STEPS = {"dataset": ("data", "card"), "model": ("model",)}


def progress_note(results: list[Pushed]) -> str:
    """What was and was not pushed, for the error line of a failed publish."""
    done = [f"{p.kind} {step}" for p in results for step in p.done]
    missing = [f"{p.kind} {s}" for p in results for s in STEPS[p.kind] if s not in p.done]
    return f"pushed: {', '.join(done) or 'nothing'}; not pushed: {', '.join(missing)}"


def publish(
    cfg: PublishConfig, say: Callable[[str], None] = print
) -> tuple[list[Pushed], dict[str, Any] | None]:
    """Push the dataset (and the model), then verify them from a fresh process."""
    configure_endpoint(cfg.endpoint)
    from huggingface_hub import HfApi, get_token

    from cifake_hub import __version__

    token = get_token()
    if not token:
        raise CifakeError(
            "no Hub token: set HF_TOKEN or run `hf auth login` (the token is never printed "
            "or saved by cifake-publish)"
        )
    api = HfApi(
        endpoint=cfg.hub, token=token, library_name="cifake-hub", library_version=__version__
    )
    results = targets(cfg)
    # Fail fast, before any upload, on a refused token or an unreachable endpoint.
    retrying(api.whoami, cfg, results[0].repo_id, say)
    with tempfile.TemporaryDirectory(prefix="cifake-publish-") as tmp:
        staged = Path(tmp) / "model"
        try:
            push_dataset(cfg, api, token, results[0], say)
            if cfg.run is not None:
                stage_model(cfg, staged)
                push_model(cfg, api, staged, results[1], say)
        except CifakeError as exc:
            raise CifakeError(f"{exc} [{progress_note(results)}]") from exc
        checks = verify(cfg, results, staged) if cfg.verify else None
    return results, checks


def dry_run(cfg: PublishConfig, out: Path) -> dict[str, dict[str, tuple[int, str]]]:
    """Write both repos' files under ``out/dataset`` and ``out/model``; no network.

    ``out`` is an output folder (cifake_hub.outputs): a tree written by an earlier dry run
    is replaced atomically, anything else is refused.
    """
    with Replacement(out, PUBLISH_TREE_KIND, overwrite=True, what="--dry-run folder") as staged:
        stage_dataset(cfg, load_local(cfg.dataset), staged / "dataset")
        trees = {"dataset": tree(staged / "dataset")}
        if cfg.run is not None:
            stage_model(cfg, staged / "model")
            trees["model"] = tree(staged / "model")
        cfg.save(staged / PUBLISH_CONFIG)
    return trees


def verify(cfg: PublishConfig, results: list[Pushed], staged: Path) -> dict[str, Any]:
    """Load what landed from a fresh process with an empty cache and compare it."""
    spec: dict[str, Any] = {"dataset": cfg.dataset, "dataset_repo": cfg.dataset_repo}
    spec["dataset_revision"] = results[0].head
    if cfg.run is not None:
        spec.update(
            run=cfg.run,
            model_repo=cfg.model_repo,
            model_revision=results[1].head,
            model_tree={k: v[1] for k, v in tree(staged).items()},
        )
    with tempfile.TemporaryDirectory(prefix="cifake-verify-") as cache:
        spec_file = Path(cache) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        env = {
            **os.environ,
            "HF_ENDPOINT": cfg.hub,
            "HF_HUB_CACHE": str(Path(cache) / "hub"),
            "HF_DATASETS_CACHE": str(Path(cache) / "datasets"),
        }
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cifake_hub.publish_check", str(spec_file)],
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CifakeError(f"verification could not run: {last}")
    checks: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    checks["seconds"] = time.perf_counter() - started
    problems = checks["dataset"]["problems"] + checks.get("model", {}).get("problems", [])
    if problems:
        raise CifakeError(f"pushed, but verification failed: {'; '.join(problems)}")
    return checks
