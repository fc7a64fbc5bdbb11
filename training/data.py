"""From a CIFAKE dataset (folder, Hub repo id or ``datasets`` object) to arrays Keras trains on.

The image column is decoded once into one uint8 array; Keras then slices batches out of it
every epoch with no further decoding or copying of the table. Validation is a deterministic
stratified slice of train (by label and class), so model selection never sees the test split.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cifake_hub.config import Config, option
from cifake_hub.errors import USER_ERRNOS, ConfigError, DatasetFolderError, InvalidImageError
from cifake_hub.images import read_rgb
from cifake_hub.schema import GENERATOR, IMAGE_SIZE, LABEL_NAMES, dataset_generators

if TYPE_CHECKING:
    import datasets


@dataclass
class Arrays:
    x: np.ndarray  # (N, 32, 32, 3) uint8
    y: np.ndarray  # (N,) int64, FAKE=0 REAL=1
    category: np.ndarray  # (N,) int64
    generator: np.ndarray  # (N,) int64: index in the dataset's generator names; -1: none

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Arrays:
        return Arrays(self.x[index], self.y[index], self.category[index], self.generator[index])


def load_splits(dataset: Any) -> datasets.DatasetDict:
    """A dataset folder, a Hub repo id, a ``DatasetDict`` or a ``Dataset`` (taken as train)."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        loaded = dataset
    elif isinstance(dataset, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": dataset})
    else:
        loaded = _load(dataset)
    for name, split in loaded.items():
        require_columns(split, f"{dataset if isinstance(dataset, (str, Path)) else 'the dataset'}"
                               f"'s {name!r} split")  # fmt: skip
    return loaded


def require_columns(ds: datasets.Dataset, what: str) -> None:
    """Refuse rows without the columns every stage reads."""
    missing = {"image", "label", "category"} - set(ds.column_names)
    if missing:
        raise DatasetFolderError(
            f"{what} lacks column(s) {sorted(missing)} (it has {sorted(ds.column_names)}): it "
            "is not a CIFAKE dataset; make one with `cifake import-kaggle` or `cifake build`"
        )


def _refuse_unwritable_cache(exc: BaseException, dataset: Any) -> None:
    """A cache datasets cannot write (a read-only or full HOME) is not the dataset's fault."""
    if not isinstance(exc, OSError) or exc.errno not in USER_ERRNOS:
        return
    where = Path(str(exc.filename or ""))
    if exc.filename and Path(str(dataset)).exists():
        inside = Path(os.path.abspath(where)).is_relative_to(os.path.abspath(str(dataset)))
        if inside:
            return
    raise DatasetFolderError(
        f"datasets cannot write its cache ({exc.strerror}: {where}); set HF_HOME or "
        "HF_DATASETS_CACHE to a writable folder with free space"
    ) from exc


def _load(dataset: Any) -> datasets.DatasetDict:
    import datasets

    verbosity = datasets.logging.get_verbosity()
    # datasets logs a file it cannot read before raising: the one error line below says it.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        loaded = datasets.load_dataset(str(dataset))
    except (
        FileNotFoundError,
        ValueError,
        ConnectionError,
        OSError,
        datasets.exceptions.DatasetGenerationError,
    ) as exc:
        _refuse_unwritable_cache(exc, dataset)
        where = "folder" if Path(str(dataset)).exists() else "folder or Hub dataset id"
        why = (str(exc).strip().splitlines() or [""])[0][:160]
        raise DatasetFolderError(
            f"cannot load {str(dataset)!r} as a CIFAKE {where} ({type(exc).__name__}: {why}); "
            "make one "
            "with `cifake import-kaggle` or `cifake build`, or check the repo id and HF_TOKEN"
        ) from exc
    finally:
        datasets.logging.set_verbosity(verbosity)
    assert isinstance(loaded, datasets.DatasetDict)
    return loaded


def to_arrays(ds: datasets.Dataset, rows: np.ndarray | None = None) -> Arrays:
    """Decode the images (of ``rows`` only, when given) into one uint8 array."""
    import datasets

    require_columns(ds, "the dataset")
    if rows is not None:
        ds = ds.select(rows)
    table = ds.cast_column("image", datasets.Image(decode=False)).with_format("arrow")[:]
    images = table.column("image").combine_chunks()
    blobs = images.field("bytes").to_pylist()
    paths = images.field("path").to_pylist()
    x = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, (blob, path) in enumerate(zip(blobs, paths, strict=True)):
        data = blob if blob is not None else Path(path).read_bytes()
        pixels = read_rgb(data, where=path or f"row {i}")
        if pixels.shape != x.shape[1:]:
            raise InvalidImageError(
                f"{path or f'row {i}'}: image is {pixels.shape[1]}x{pixels.shape[0]}, expected "
                f"{IMAGE_SIZE}x{IMAGE_SIZE}; rebuild it with `cifake import-kaggle` or `build`"
            )
        x[i] = pixels
    y = table.column("label").to_numpy().astype(np.int64)
    # -1: a brought image without a class (null in the dataset).
    category = table.column("category").fill_null(-1).to_numpy().astype(np.int64)
    generator = (
        table.column(GENERATOR).fill_null(-1).to_numpy().astype(np.int64)
        if dataset_generators(ds.features)
        else np.full(len(y), -1, dtype=np.int64)
    )
    return Arrays(x, y, category, generator)


def labels_and_classes(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(label, category) of every row, as int64; -1 for a brought image without a class."""
    table = ds.select_columns(["label", "category"]).with_format("arrow")[:]
    return (
        table.column("label").to_numpy().astype(np.int64),
        table.column("category").fill_null(-1).to_numpy().astype(np.int64),
    )


def generator_index(ds: datasets.Dataset) -> np.ndarray:
    """Each row's index in the dataset's ``generator`` names, as int64; -1 for REAL rows, and
    for every row of a dataset made before the column existed."""
    if not dataset_generators(ds.features):
        return np.full(ds.num_rows, -1, dtype=np.int64)
    table = ds.select_columns([GENERATOR]).with_format("arrow")[:]
    return table.column(GENERATOR).fill_null(-1).to_numpy().astype(np.int64)


def stratified_split(
    label: np.ndarray, category: np.ndarray, fraction: float, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) row indices; ``fraction`` of every (label, class) group is held out.

    Deterministic for a given seed and the same rows in the same order.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction must be in (0, 1), got {fraction}")
    if label.size < 2:
        raise ConfigError(f"need at least 2 rows to hold some out, got {label.size}")
    # At least one row each side: small groups round to zero one by one, not all together.
    n = min(max(int(round(fraction * label.size)), 1), label.size - 1)
    held = stratified_subset(label, category, n, seed)
    return np.setdiff1d(np.arange(label.size), held), held


def stratified_subset(label: np.ndarray, category: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Exactly ``n`` row indices (all rows if n >= len), keeping the (label, class)
    proportions: each group gets its share, leftovers go to the largest remainders."""
    if n >= label.size:
        return np.arange(label.size)
    rng = np.random.default_rng(seed)
    groups = label.astype(np.int64) * 1000 + category.astype(np.int64)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    quota = counts * n / label.size
    take = np.floor(quota).astype(np.int64)
    # Leftovers to the largest remainders; ties by class, then label, so that tiny data
    # still gets both labels.
    first = np.unique(groups)
    order = np.lexsort((first // 1000, first % 1000, -(quota - take)))
    take[order[: n - int(take.sum())]] += 1
    chosen = [np.flatnonzero(inverse == g) for g in range(len(counts))]
    return np.sort(
        np.concatenate(
            [idx[rng.permutation(idx.size)[:k]] for idx, k in zip(chosen, take, strict=True)]
        )
    )


# Rows of each label a split must leave: trained on, and held out for validation.
MIN_ROWS_PER_LABEL = {"training": 2, "validation": 1}


def carve(
    label: np.ndarray, category: np.ndarray, val_fraction: float, max_train: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of the train split, as row indices of that split:
    capped at ``max_train`` rows (stratified), then ``val_fraction`` held out (stratified).
    A split that leaves either label with fewer than ``MIN_ROWS_PER_LABEL`` rows on a side is
    refused: a model trained on one image of a label, or selected without one, means nothing."""
    rows = np.arange(label.size)
    if max_train is not None:
        rows = stratified_subset(label, category, max_train, seed)
    keep, held = stratified_split(label[rows], category[rows], val_fraction, seed)
    for side, picked in (("training", rows[keep]), ("validation", rows[held])):
        for value, name in enumerate(LABEL_NAMES):
            count = int((label[picked] == value).sum())
            if count < MIN_ROWS_PER_LABEL[side]:
                raise ConfigError(
                    f"--val-fraction {val_fraction:g} holds out {held.size} of {rows.size:,} "
                    f"rows and leaves {count} {name} row(s) for {side}; each label needs at "
                    f"least {MIN_ROWS_PER_LABEL[side]} there: choose another fraction, or use "
                    "more rows"
                )
    return rows[keep], rows[held]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataOptions(Config):
    """Which rows of a dataset's train split a detector learns from and which it is selected
    on: the options `cifake search`, `train` and `study` share (their configs extend this)."""

    val_fraction: float = option(0.1, "share of train held out for validation (stratified)")
    max_train: int | None = option(None, "use at most N rows of the train split (stratified)")
    seed: int = option(1, "seed of the validation slice, of the weights and of any sampling")

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if self.max_train is not None and self.max_train < 20:
            raise ConfigError(f"max train must be >= 20, got {self.max_train}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    @property
    def data_options(self) -> DataOptions:
        """Just these options (a run folder keeps them to re-derive its validation slice)."""
        return DataOptions(val_fraction=self.val_fraction, max_train=self.max_train, seed=self.seed)

    def carve(self, label: np.ndarray, category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, validation rows) of the train split with these options."""
        return carve(label, category, self.val_fraction, self.max_train, self.seed)


@dataclass
class TrainingData:
    train: Arrays
    validation: Arrays
    test: Arrays | None
    source_rows: int  # rows of the train split before any cap
    generators: tuple[str, ...] = ()  # the names ``Arrays.generator`` indexes


def prepare(dataset: Any, options: DataOptions) -> TrainingData:
    """Decode train (capped at ``max_train`` rows, stratified), carve validation from it, and
    decode test when the dataset has one."""
    splits = load_splits(dataset)
    if "train" not in splits:
        raise DatasetFolderError(f"dataset has splits {list(splits)}, but training needs 'train'")
    for name, split in splits.items():
        if split.num_rows == 0:
            raise DatasetFolderError(f"the {name!r} split has no rows; rebuild the dataset")
    train = splits["train"]
    label, category = labels_and_classes(train)
    present = sorted({LABEL_NAMES[v] for v in np.unique(label)})
    if len(present) < 2:
        raise DatasetFolderError(
            f"the train split holds only {present[0]} images; a detector needs both REAL and "
            "FAKE rows (it would score 100% by always answering the one label)"
        )
    train_rows, val_rows = options.carve(label, category)
    test = to_arrays(splits["test"]) if "test" in splits else None
    return TrainingData(
        to_arrays(train, train_rows),
        to_arrays(train, val_rows),
        test,
        source_rows=label.size,
        generators=dataset_generators(train.features),
    )
