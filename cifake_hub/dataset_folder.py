"""The dataset folder, the one thing every stage after the builders reads.

Layout (what ``datasets.load_dataset(DIR)`` and a Hub dataset repo both understand)::

    README.md                               card; its YAML has dataset_info and configs
    data/<split>-00000-of-0000N.parquet     the rows, Parquet shards per split
    import_report.json, import_config.json  written by `cifake import-kaggle`
    build_config.json, generator_config.json, build_report.json, .work/   `cifake build`
    .cifake-output.json                     the marker: cifake wrote this folder

Every file name of the folder is written here only; stages ask a :class:`DatasetFolder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from cifake_hub.errors import DatasetFolderError
from cifake_hub.outputs import OutputFolder, read_json


class DatasetFolder(OutputFolder):
    """A dataset folder at ``path`` (which may not exist yet)."""

    KIND = "dataset"
    WHAT = "dataset folder"
    CARD: ClassVar[str] = "README.md"
    DATA: ClassVar[str] = "data"
    REPORT: ClassVar[str] = "import_report.json"
    IMPORT_CONFIG: ClassVar[str] = "import_config.json"
    BUILD_CONFIG: ClassVar[str] = "build_config.json"
    GENERATOR_CONFIG: ClassVar[str] = "generator_config.json"
    BUILD_REPORT: ClassVar[str] = "build_report.json"  # per generator: images, seconds
    STUDY: ClassVar[str] = "study.json"  # `cifake study`: the cross-generator record
    WORK: ClassVar[str] = ".work"  # a build's checkpoints

    @property
    def card(self) -> Path:
        return self.path / self.CARD

    @property
    def data_dir(self) -> Path:
        return self.path / self.DATA

    @property
    def work_dir(self) -> Path:
        return self.path / self.WORK

    @classmethod
    def shard_name(cls, split: str, index: int, total: int) -> str:
        return f"{split}-{index:05d}-of-{total:05d}.parquet"

    def shard(self, split: str, index: int, total: int) -> Path:
        return self.data_dir / self.shard_name(split, index, total)

    def shards(self, split: str | None = None) -> list[Path]:
        return sorted(self.data_dir.glob(f"{split or '*'}-*.parquet"))

    @classmethod
    def data_files(cls, split: str) -> str:
        """The ``configs`` pattern of a split's shards, relative to the folder."""
        return f"{cls.DATA}/{split}-*"

    def exists(self) -> bool:
        """Whether this is a dataset folder (a card and at least one shard)."""
        return self.card.exists() and bool(self.shards())

    def require(self) -> DatasetFolder:
        """This folder, when it is a dataset folder; one error line otherwise."""
        if not self.exists():
            raise DatasetFolderError(
                f"{self.path} is not a dataset folder ({self.CARD} and {self.DATA}/*.parquet); "
                "make one with `cifake import-kaggle` or `cifake build`"
            )
        return self

    def build_report(self) -> dict[str, Any] | None:
        """What `cifake build` reported (generators, brought sources, encoding, duplicates)."""
        path = self.file(self.BUILD_REPORT)
        return read_json(path) if path.exists() else None

    def study(self) -> dict[str, Any] | None:
        """The record of the last `cifake study` on this dataset, if any."""
        path = self.file(self.STUDY)
        return read_json(path) if path.exists() else None

    def report(self) -> dict[str, Any] | None:
        """The import report, when the folder was imported (None otherwise)."""
        path = self.file(self.REPORT)
        return read_json(path) if path.exists() else None


def set_dataset_yaml(data: Any, feats: Any, splits: Any, download_size: int) -> None:
    """Put ``dataset_info`` and ``configs`` (``data/<split>-*`` files) into card data, as
    ``push_to_hub`` writes them."""
    import datasets

    info = datasets.DatasetInfo(
        features=feats,
        splits=splits,
        download_size=download_size,
        dataset_size=sum(s.num_bytes for s in splits.values()),
    )
    data.pop("dataset_info", None)
    data.pop("configs", None)
    datasets.info.DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    datasets.utils.metadata.MetadataConfigs(
        {
            "default": {
                "data_files": [
                    {"split": name, "path": DatasetFolder.data_files(name)} for name in splits
                ]
            }
        }
    ).to_dataset_card_data(data)
