"""The main job: import -> search -> Grad-CAM -> cards -> cifake-publish, in one call.

By default it runs offline on the sample of the real Kaggle CIFAKE embedded in the package,
with the quick preset (the paper's final topology only), and writes the publish trees to a
local folder (`--dry-run`); a couple of minutes on two CPU cores. Given the Kaggle zip (or
a folder made by `cifake build`), the full search and two repo ids, it is the real job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifake_hub.config import Config, option
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import ConfigError
from cifake_hub.outputs import check_replaceable, claim, writes
from cifake_hub.shipped import DETECTORS, SAMPLE

QUICK_TOPOLOGY = "conv=32x2,dense=64x1"  # the paper's final choice
CONFIG_FILE = "job_config.json"
JOB_KIND = "job"
PUBLISH_DIR = "publish"
# Repo ids the dry run writes into the cards when none are given.
PLACEHOLDER_REPOS = ("NAMESPACE/cifake", "NAMESPACE/cifake-cnn")


@dataclasses.dataclass(frozen=True)
class JobConfig(Config):
    src: str | None = option(
        None, "Kaggle CIFAKE zip or folder, or a dataset folder (default: the embedded sample)"
    )
    search: str = option(
        "quick",
        "quick: the paper's final topology only; full: all 36",
        choices=("quick", "full"),
    )
    # The full search uses `cifake search`'s defaults.
    epochs: int = option(8, "epochs of the quick preset")
    detector: str | None = option(
        None,
        "explain, card and publish this shipped detector (robust, strong, paper) instead of "
        "training one",
        metavar="NAME",
    )
    explain_n: int = option(200, "test images Grad-CAM explains")
    dataset_repo: str | None = option(None, "publish the dataset to this repo", metavar="NS/NAME")
    model_repo: str | None = option(None, "publish the model to this repo", metavar="NS/NAME")
    endpoint: str | None = option(None, "Hub URL (default $HF_ENDPOINT or huggingface.co)")
    private: bool = option(False, "create new repos private")

    def __post_init__(self) -> None:
        if self.search not in ("quick", "full"):
            raise ConfigError(f"search must be quick or full, got {self.search!r}")
        if self.epochs < 1 or self.explain_n < 2:
            raise ConfigError(
                f"epochs must be >= 1 and explain_n >= 2, got {self.epochs}, {self.explain_n}"
            )
        if (self.dataset_repo is None) != (self.model_repo is None):
            raise ConfigError(
                "give --dataset-repo and --model-repo together to publish (or neither "
                "for a dry run)"
            )
        if self.detector is not None and self.detector not in DETECTORS:
            raise ConfigError(
                f"unknown shipped detector {self.detector!r}; choose one of {DETECTORS}"
            )
        if self.src is not None and not Path(self.src).exists():
            raise ConfigError(
                f"{self.src} does not exist; give the Kaggle zip or folder, or a dataset folder"
            )

    @property
    def publishes(self) -> bool:
        return self.dataset_repo is not None


@dataclasses.dataclass
class JobResult:
    dataset: Path
    run: Path
    dataset_card: Path
    model_card: Path
    figure6: Path
    model: Path
    published: str  # the dry-run folder, or the repo URLs


@writes("out", finishes=JOB_KIND)
def run_job(out: str | Path, cfg: JobConfig, say: Callable[[str], None] = print) -> JobResult:
    """The main job into the job folder ``out``. With ``cfg.endpoint``, set ``HF_ENDPOINT``
    before importing huggingface_hub or datasets (`cifake demo` does)."""
    from cifake_hub.cards.dataset_card import write_dataset_card
    from cifake_hub.cards.model_card import write_model_card
    from cifake_hub.explain.run import ExplainConfig, explain_run
    from cifake_hub.hub.publish import PUBLISH_TREE_KIND
    from cifake_hub.training.run_folder import RunFolder

    out = claim(out, JOB_KIND)
    # Refuse now, not after the training, a publish folder cifake cannot replace.
    check_replaceable(out / PUBLISH_DIR, PUBLISH_TREE_KIND, overwrite=True, what="--out")
    cfg.save(out / CONFIG_FILE)
    dataset = _dataset(out, cfg, say)
    run = _detector(out, cfg, dataset, say)
    say(f"3/5 Grad-CAM and the deletion test on {cfg.explain_n} test images")
    explain_run(run, ExplainConfig(dataset=str(dataset), split="test", n=cfg.explain_n))
    say("4/5 dataset and model cards")
    data_repo, model_repo = (
        (cfg.dataset_repo, cfg.model_repo) if cfg.publishes else PLACEHOLDER_REPOS
    )
    dataset_card = write_dataset_card(dataset, repo_id=data_repo, model_repo=model_repo)
    model_card = write_model_card(run, repo_id=model_repo, dataset_repo=data_repo)
    published = _publish(out, cfg, dataset, run, str(data_repo), str(model_repo), say)
    folder = RunFolder(run)
    return JobResult(dataset, run, dataset_card, model_card, folder.figure6, folder.model,
                     published)  # fmt: skip


def _dataset(out: Path, cfg: JobConfig, say: Callable[[str], None]) -> Path:
    """Step 1: the dataset folder given, or the Kaggle zip (default: the sample) imported."""
    from cifake_hub.builders.kaggle import ImportConfig, import_kaggle

    src = Path(cfg.src) if cfg.src else SAMPLE
    if DatasetFolder(src).exists():
        # Its card is rendered in step 4: cifake writes only into folders it made.
        dataset = DatasetFolder(src).require_ours().path
        say(f"1/5 using the dataset folder {dataset}")
        return dataset
    dataset = out / ("cifake-sample" if cfg.src is None else "cifake")
    say(f"1/5 importing {src} into {dataset}")
    import_kaggle(ImportConfig(src=str(src), out=str(dataset)), overwrite=True)
    return dataset


def _detector(out: Path, cfg: JobConfig, dataset: Path, say: Callable[[str], None]) -> Path:
    """Step 2: a shipped detector copied in, or the search run; its run folder."""
    from cifake_hub.training.leakage import overlap
    from cifake_hub.training.models import copy_shipped
    from cifake_hub.training.search import SearchConfig, run_search

    if cfg.detector is not None:
        run = out / f"run-{cfg.detector}"
        say(f"2/5 the shipped detector {cfg.detector!r} into {run} (no training)")
        copy_shipped(cfg.detector, run)
        seen = overlap(run, dataset, "test")
        if seen and seen[0]:
            say(
                f"    warning: {seen[0]} of {seen[1]} test images of {dataset.name} are in "
                f"{cfg.detector!r}'s training data (the embedded sample comes from the Kaggle "
                "train split): its scores on them say nothing about new images"
            )
        return run
    run = out / "run"
    search: dict[str, Any] = (
        {"topology": QUICK_TOPOLOGY, "epochs": cfg.epochs, "batch_size": 32}
        if cfg.search == "quick"
        else {}
    )
    what = f"{QUICK_TOPOLOGY} ({cfg.epochs} epochs)" if search else "all 36 topologies"
    say(f"2/5 training {what} into {run}")
    run_search(dataset, run, SearchConfig(**search), say=say)
    return run


def _publish(
    out: Path,
    cfg: JobConfig,
    dataset: Path,
    run: Path,
    data_repo: str,
    model_repo: str,
    say: Callable[[str], None],
) -> str:
    """Step 5: publish (with repo ids) or a dry run into the job folder; where it went."""
    from cifake_hub.hub.publish import dry_run, publish
    from cifake_hub.hub.session import PublishConfig

    publish_cfg = PublishConfig(
        dataset=str(dataset),
        dataset_repo=data_repo,
        run=str(run),
        model_repo=model_repo,
        private=cfg.private,
        endpoint=cfg.endpoint,
    )
    if cfg.publishes:
        say(f"5/5 cifake-publish to {publish_cfg.hub}")
        results, _ = publish(publish_cfg, say=say)
        return "  ".join(p.url for p in results)
    tree = out / PUBLISH_DIR
    say(f"5/5 cifake-publish --dry-run into {tree} (give repo ids to publish)")
    dry_run(publish_cfg, tree)
    return str(tree)
