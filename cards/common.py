"""Pieces shared by the dataset and model cards."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cifake_hub.config import Config, check_repo_id, option

TEMPLATES = Path(__file__).parent

CITATIONS = """\
@techreport{krizhevsky2009learning,
  title       = {Learning Multiple Layers of Features from Tiny Images},
  author      = {Krizhevsky, Alex and Hinton, Geoffrey},
  institution = {University of Toronto},
  year        = {2009}
}

@article{bird2024cifake,
  title   = {{CIFAKE}: Image Classification and Explainable Identification of
             {AI}-Generated Synthetic Images},
  author  = {Bird, Jordan J. and Lotfi, Ahmad},
  journal = {IEEE Access},
  volume  = {12},
  pages   = {15642--15650},
  year    = {2024},
  doi     = {10.1109/ACCESS.2024.3356122}
}"""


def fmt_interval(entry: dict[str, Any]) -> str:
    """``{"mean": m, "interval": [low, high]}`` as ``m [low, high]``."""
    low, high = entry["interval"]
    return f"{entry['mean']:.3f} [{low:.3f}, {high:.3f}]"


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for ``n`` rows."""
    for bound, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if n < bound:
            return name
    return "n>10M"


def fmt_change(drop: float) -> str:
    """A mean drop in probability in words: "a drop of 0.123", or "a rise of 0.010" when it
    is negative (never "lowers it by -0.010")."""
    return f"a drop of {drop:.3f}" if drop >= 0 else f"a rise of {-drop:.3f}"


def check_repo_ids(**repo_ids: str | None) -> None:
    """Refuse a repo id that is not NAMESPACE/NAME before it is written into a card's YAML,
    links and examples."""
    for name, value in repo_ids.items():
        if value is not None:
            check_repo_id(f"--{name.replace('_', '-')}", value)


@dataclasses.dataclass(frozen=True)
class DatasetCardConfig(Config):
    """`cifake card dataset`: what the dataset card links to and is called."""

    dir: str = option(help="dataset folder", positional=True)
    repo_id: str | None = option(None, "the dataset's Hub repo id, for the loading example")
    model_repo: str | None = option(None, "a model repo to link to")
    pretty_name: str = option("CIFAKE", "the card's title")

    def __post_init__(self) -> None:
        check_repo_ids(repo_id=self.repo_id, model_repo=self.model_repo)


@dataclasses.dataclass(frozen=True)
class ModelCardConfig(Config):
    """`cifake card model`: what the model card links to."""

    run_dir: str = option(help="run folder made by `cifake search` or `cifake train`",
                          positional=True)  # fmt: skip
    repo_id: str | None = option(None, "the model's Hub repo id, for the usage example")
    dataset_repo: str | None = option(None, "the dataset's Hub repo id, to link to")

    def __post_init__(self) -> None:
        check_repo_ids(repo_id=self.repo_id, dataset_repo=self.dataset_repo)
