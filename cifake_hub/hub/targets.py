"""What `cifake-publish` publishes: a list of targets, each one Hub repo.

A target stages its repo's files locally (the dry run writes exactly these), pushes them
(creating the repo, with commits that are all or nothing), and says what the fresh-process
check (:mod:`cifake_hub.hub.check`) must compare. Adding something to publish (an
evaluation card, a second model, a Space) is one more :class:`Target` subclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, ClassVar

from cifake_hub._compat import dataset_nbytes
from cifake_hub.dataset_folder import DatasetFolder, set_dataset_yaml
from cifake_hub.hub.session import PublishConfig, Session
from cifake_hub.outputs import MARKER, portable_record, read_json
from cifake_hub.training.models import resolve_run
from cifake_hub.training.run_folder import RunFolder
from cifake_hub.zoo.folder import GeneratorFolder


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

    def record(self, commit: Any, previous: str | None, step: str) -> None:
        if commit.pr_revision:
            self.revision = commit.pr_revision
        if commit.oid != previous:
            self.commits.append(commit.oid)
        self.head = commit.oid
        self.done.append(step)


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


def load_local(folder: str | Path) -> Any:
    import datasets

    return datasets.load_dataset(str(folder))


class Target:
    """One repo of a publish. Subclasses set ``kind``, ``repo_type``, ``steps`` and ``check``
    and implement :meth:`from_config`, :meth:`stage`, :meth:`push`, :meth:`check_spec` and
    :meth:`verified`; :func:`register_target` adds one to every publish it applies to."""

    kind: ClassVar[str]
    repo_type: ClassVar[str]  # "dataset", "model" or "space", as huggingface_hub says
    steps: ClassVar[tuple[str, ...]]  # the commits a push makes, in order
    # "module:function" of the fresh-process check, (spec, local dataset) -> its result with
    # a "problems" list (imported by name there: cifake_hub.hub.check runs it)
    check: ClassVar[str]
    staged: Path | None = None  # where stage() last wrote the repo's files

    def __init__(self, cfg: PublishConfig, repo_id: str):
        self.cfg, self.repo_id = cfg, repo_id
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        self.pushed = Pushed(
            self.kind, repo_id, f"{cfg.hub}/{prefix}{repo_id}", cfg.revision or "main"
        )

    @classmethod
    def from_config(cls, cfg: PublishConfig) -> Target | None:
        """This target for a publish with ``cfg`` (None: the options do not ask for it)."""
        raise NotImplementedError

    def stage(self, out: Path) -> None:
        """Write the repo's files into ``out``."""
        raise NotImplementedError

    def push(self, session: Session) -> None:
        """Create the repo and commit; record what happened in :attr:`pushed`."""
        raise NotImplementedError

    def check_spec(self) -> dict[str, Any]:
        """What the fresh-process check needs to compare this repo with the local files."""
        raise NotImplementedError

    def staged_spec(self, **extra: Any) -> dict[str, Any]:
        """The check spec of a target whose repo mirrors its staged folder: the hashes of
        the staged files, and what else the check compares (``extra``)."""
        assert self.staged is not None, f"push (or stage) the {self.kind} before checking it"
        return {
            "kind": self.kind,
            "repo": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.pushed.head,
            "tree": {k: v[1] for k, v in tree(self.staged).items()},
            **extra,
        }

    def upload_staged(self, session: Session, message: str) -> None:
        """Stage the repo's files and push them in one ``upload_folder`` commit (the one step
        of a target whose repo mirrors a folder)."""
        cfg, api, repo, pushed = self.cfg, session.api, self.repo_id, self.pushed
        staged = session.workdir / self.kind
        self.stage(staged)
        session.retrying(
            lambda: api.create_repo(
                repo, repo_type=self.repo_type, private=cfg.private, exist_ok=True,
                **({"space_sdk": "gradio"} if self.repo_type == "space" else {}),
            ),
            repo,
        )  # fmt: skip
        if cfg.revision:
            session.retrying(
                lambda: api.create_branch(
                    repo, repo_type=self.repo_type, branch=cfg.revision, exist_ok=True
                ),
                repo,
            )
        head = session.head(self.repo_id, self.repo_type)
        count = sum(1 for p in staged.rglob("*") if p.is_file())
        session.say(f"{repo}: uploading {count} files in one commit")
        commit = session.retrying(
            lambda: api.upload_folder(
                repo_id=repo,
                repo_type=self.repo_type,
                folder_path=staged,
                commit_message=message,
                revision=cfg.revision,
                create_pr=cfg.create_pr,
                # The repo mirrors the staged tree: files of an earlier publish do not linger.
                delete_patterns="*",
            ),
            repo,
        )
        (step,) = self.steps
        pushed.record(commit, head, step)
        pushed.files = len(api.list_repo_files(repo, repo_type=self.repo_type, revision=commit.oid))

    def verified(self, check: dict[str, Any]) -> str:
        """The check's result in a few words."""
        raise NotImplementedError


class DatasetTarget(Target):
    """The dataset folder: ``datasets``' own ``push_to_hub`` (shards and its YAML), then our
    card in a second commit that keeps that YAML."""

    kind = "dataset"
    repo_type = "dataset"
    steps = ("data", "card")
    check = "cifake_hub.hub.check:check_dataset"

    @classmethod
    def from_config(cls, cfg: PublishConfig) -> Target | None:
        return None if cfg.dataset_repo is None else cls(cfg, cfg.dataset_repo)

    def __init__(self, cfg: PublishConfig, repo_id: str):
        super().__init__(cfg, repo_id)
        assert cfg.dataset is not None, "a dataset target needs --dataset"
        self.dataset: str = cfg.dataset

    def card(self, hub_yaml: dict[str, Any] | None = None) -> str:
        """Our dataset card, with ``hub_yaml``'s dataset_info/configs (push_to_hub's)."""
        from cifake_hub.cards.dataset_card import render_dataset_card

        cfg = self.cfg
        card = render_dataset_card(
            self.dataset, repo_id=self.repo_id, model_repo=cfg.model_repo, endpoint=cfg.hub
        )
        for key in ("dataset_info", "configs"):
            if hub_yaml and key in hub_yaml:
                card.data[key] = hub_yaml[key]
        return str(card)

    def shard_counts(self, splits: Any) -> dict[str, int]:
        """Our folder's shard count per split, so the Hub gets the same file names."""
        return {s: max(1, len(DatasetFolder(self.dataset).shards(s))) for s in splits}

    def stage(self, out: Path) -> None:
        """The repo's files as ``push_to_hub`` makes them."""
        import datasets
        from datasets.arrow_writer import (
            get_writer_batch_size_from_data_size,
            get_writer_batch_size_from_features,
        )
        from huggingface_hub import DatasetCardData

        ds = load_local(self.dataset)
        counts = self.shard_counts(ds)
        splits = datasets.SplitDict()
        uploaded = 0
        repo = DatasetFolder(out)
        for split, table in ds.items():
            nbytes = dataset_nbytes(table)
            batch = get_writer_batch_size_from_features(
                table.features
            ) or get_writer_batch_size_from_data_size(len(table), nbytes)
            n = counts[split]
            for i in range(n):
                path = repo.shard(split, i, n)
                path.parent.mkdir(parents=True, exist_ok=True)
                table.shard(num_shards=n, index=i, contiguous=True).to_parquet(
                    path, batch_size=batch
                )
                uploaded += path.stat().st_size
            splits.add(datasets.SplitInfo(name=split, num_bytes=nbytes, num_examples=len(table)))
        data = DatasetCardData()
        set_dataset_yaml(data, next(iter(ds.values())).features, splits, uploaded)
        repo.card.write_text(self.card(data.to_dict()))

    def push(self, session: Session) -> None:
        from huggingface_hub import CommitOperationAdd, DatasetCard, hf_hub_download

        cfg, api, repo, pushed = self.cfg, session.api, self.repo_id, self.pushed
        ds = load_local(self.dataset)
        session.retrying(
            lambda: api.create_repo(repo, repo_type="dataset", private=cfg.private, exist_ok=True),
            repo,
        )
        session.say(
            f"{repo}: pushing {sum(len(t) for t in ds.values()):,} rows with datasets.push_to_hub"
        )
        head = session.head(self.repo_id, self.repo_type)
        data_commit = session.retrying(
            lambda: ds.push_to_hub(
                repo,
                token=session.token,
                revision=cfg.revision,
                create_pr=cfg.create_pr,
                num_shards=self.shard_counts(ds),
                commit_message="Upload CIFAKE dataset (cifake-publish)",
            ),
            repo,
        )
        pushed.record(data_commit, head, "data")
        readme = hf_hub_download(
            repo,
            DatasetFolder.CARD,
            repo_type="dataset",
            revision=data_commit.oid,
            token=session.token,
        )
        card = self.card(DatasetCard.load(readme).data.to_dict()).encode()
        card_commit = session.retrying(
            lambda: api.create_commit(
                repo,
                repo_type="dataset",
                operations=[CommitOperationAdd(DatasetFolder.CARD, card)],
                commit_message="Dataset card (cifake-publish)",
                parent_commit=data_commit.oid,
                **session.after(data_commit),
            ),
            repo,
        )
        pushed.record(card_commit, data_commit.oid, "card")
        pushed.files = len(api.list_repo_files(repo, repo_type="dataset", revision=card_commit.oid))

    def check_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "repo": self.repo_id, "revision": self.pushed.head}

    def verified(self, check: dict[str, Any]) -> str:
        return f"{sum(check['rows'].values()):,} rows, {check['sampled_images']} images equal"


class ModelTarget(Target):
    """A run folder: Keras' Hub layout unpacked from the model, the run's results, tables,
    plots, Grad-CAM images and the model card, in one ``upload_folder`` commit."""

    kind = "model"
    repo_type = "model"
    steps = ("model",)
    check = "cifake_hub.hub.check:check_model"

    @classmethod
    def from_config(cls, cfg: PublishConfig) -> Target | None:
        if cfg.run is None or cfg.model_repo is None:
            return None
        return cls(cfg, cfg.model_repo, resolve_run(cfg.run))

    def __init__(self, cfg: PublishConfig, repo_id: str, run: str | Path):
        super().__init__(cfg, repo_id)
        self.run = RunFolder(run)

    def stage(self, out: Path) -> None:
        from cifake_hub.cards.model_card import render_model_card

        run = self.run
        out.mkdir(parents=True, exist_ok=True)
        # The model file is a zip of config.json, metadata.json and model.weights.h5:
        # unpacked at the repo root it is the layout keras.saving.load_model("hf://...")
        # reads, byte for byte the run's model (a fresh save would restamp metadata.json and
        # make a new commit each time).
        with zipfile.ZipFile(run.model) as archive:
            archive.extractall(out)
        shutil.copy2(run.model, out / RunFolder.MODEL)
        for name in RunFolder.PUBLISHED_FILES:
            if (run.path / name).exists():
                shutil.copy2(run.path / name, out / name)
        for name in RunFolder.PUBLISHED_DIRS:
            if (run.path / name).is_dir():
                shutil.copytree(
                    run.path / name,
                    out / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(MARKER),
                )
        # Local paths mean nothing on the Hub (and tell where the user keeps files): the
        # dataset a run used is named by its repo id there.
        run_json = [out / name for name in RunFolder.PUBLISHED_FILES if name.endswith(".json")]
        dirs = RunFolder.PUBLISHED_DIRS
        for path in run_json + [p for name in dirs for p in (out / name).rglob("*.json")]:
            if not path.exists():
                continue
            data = read_json(path)
            portable = portable_record(
                data, {"dataset": self.cfg.dataset_repo or "", "model": self.repo_id}
            )
            if portable != data:
                path.write_text(json.dumps(portable, indent=1) + "\n")
        card = render_model_card(
            run.path,
            repo_id=self.repo_id,
            dataset_repo=self.cfg.dataset_repo,
            endpoint=self.cfg.hub,
        )
        (out / RunFolder.CARD).write_text(str(card))
        if run.gradcam_summary() is not None:
            from cifake_hub.cards.gradcam_card import CARD, render_gradcam_card

            (out / RunFolder.GRADCAM / CARD).write_text(render_gradcam_card(run.path))
        self.staged = out

    def push(self, session: Session) -> None:
        self.upload_staged(session, "Upload CIFAKE detector (cifake-publish)")

    def check_spec(self) -> dict[str, Any]:
        return self.staged_spec(model=str(self.run.model))

    def verified(self, check: dict[str, Any]) -> str:
        return f"{check['files']} hashes, {check['images_predicted']} predictions equal"


class GeneratorTarget(Target):
    """A zoo generator folder (`cifake zoo train`): its config, weights (or diffusers
    pipeline folder), training record, sample grid and card, in one ``upload_folder``
    commit; no checkpoint or per-epoch grid."""

    kind = "generator"
    repo_type = "model"
    steps = ("generator",)
    check = "cifake_hub.hub.check:check_generator"

    @classmethod
    def from_config(cls, cfg: PublishConfig) -> Target | None:
        if cfg.generator is None or cfg.generator_repo is None:
            return None
        return cls(cfg, cfg.generator_repo, cfg.generator)

    def __init__(self, cfg: PublishConfig, repo_id: str, folder: str | Path):
        super().__init__(cfg, repo_id)
        self.folder = GeneratorFolder(folder).require()

    def stage(self, out: Path) -> None:
        from cifake_hub.cards.generator_card import render_generator_card

        gen = self.folder
        out.mkdir(parents=True, exist_ok=True)
        for name in (gen.CONFIG, gen.WEIGHTS, gen.TRAINING, gen.GRID):
            if (gen.path / name).exists():
                shutil.copy2(gen.path / name, out / name)
        if gen.pipeline.is_dir():
            shutil.copytree(gen.pipeline, out / gen.PIPELINE, dirs_exist_ok=True)
        # The training data is named by its repo id (or folder name), not a local path.
        data_name = self.cfg.dataset_repo or Path(str(gen.training().get("dataset"))).name
        for name in (gen.CONFIG, gen.TRAINING):
            path = out / name
            data = read_json(path)
            portable = portable_record(data, {"dataset": data_name})
            if portable != data:
                path.write_text(json.dumps(portable, indent=1, sort_keys=True) + "\n")
        (out / gen.CARD).write_text(render_generator_card(out, repo_id=self.repo_id))
        self.staged = out

    def push(self, session: Session) -> None:
        self.upload_staged(session, "Upload zoo generator (cifake-publish)")

    def check_spec(self) -> dict[str, Any]:
        return self.staged_spec(folder=str(self.folder.path))

    def verified(self, check: dict[str, Any]) -> str:
        return f"{check['files']} hashes, {check['images_generated']} samples equal"


class SpaceTarget(Target):
    """A Gradio Space running `cifake app` on the published model (``app.py``,
    ``requirements.txt``, the README with the Space YAML, and this package's wheel), in one
    ``upload_folder`` commit."""

    kind = "space"
    repo_type = "space"
    steps = ("space",)
    check = "cifake_hub.hub.check:check_space"

    @classmethod
    def from_config(cls, cfg: PublishConfig) -> Target | None:
        if cfg.space_repo is None or cfg.model_repo is None or cfg.run is None:
            return None
        return cls(cfg, cfg.space_repo, cfg.model_repo, resolve_run(cfg.run))

    def __init__(self, cfg: PublishConfig, repo_id: str, model_repo: str, run: str | Path):
        super().__init__(cfg, repo_id)
        self.model_repo = model_repo
        self.run = RunFolder(run)

    def stage(self, out: Path) -> None:
        from cifake_hub.hub.space import write_space

        datasets = [self.cfg.dataset_repo] if self.cfg.dataset_repo else []
        write_space(out, [self.model_repo], datasets, self.cfg.hub, self.repo_id, self.cfg.revision)
        self.staged = out

    def push(self, session: Session) -> None:
        self.upload_staged(session, "Upload cifake app (cifake-publish)")

    def check_spec(self) -> dict[str, Any]:
        return self.staged_spec(model=str(self.run.model))

    def verified(self, check: dict[str, Any]) -> str:
        return f"{check['files']} hashes equal; app.py answered {check['images_predicted']} image"


# Every publish asks each of these, in order, whether it applies (Target.from_config).
TARGETS: list[type[Target]] = [DatasetTarget, ModelTarget, GeneratorTarget, SpaceTarget]


def register_target(cls: type[Target]) -> type[Target]:
    TARGETS.append(cls)
    return cls
