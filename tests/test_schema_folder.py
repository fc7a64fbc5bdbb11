from __future__ import annotations

import datasets
import pytest
from huggingface_hub import DatasetCard

from cifake_hub.builders.folder import DatasetFolderWriter
from cifake_hub.errors import ClassNameError, DatasetFolderError
from cifake_hub.schema import CLASS_NAMES, FAKE, REAL, category_index, features, make_row
from tests import factories


def test_features_follow_the_paper():
    f = features()
    assert f["label"].names == ["FAKE", "REAL"] and f["label"].str2int("REAL") == REAL == 1
    assert f["category"].names == list(CLASS_NAMES)
    assert isinstance(f["image"], datasets.Image)


def test_make_row_and_class_names():
    row = make_row(b"x", FAKE, 3, prompt="a photograph of a cat", seed=7)
    assert row["image"] == {"bytes": b"x", "path": None}
    assert row["seed"] == 7 and row["source"] is None
    with pytest.raises(KeyError, match="colour"):
        make_row(b"x", FAKE, 3, colour="red")
    with pytest.raises(ValueError, match="label"):
        make_row(b"x", 2, 3)
    assert category_index(" Truck") == 9
    with pytest.raises(ClassNameError, match="'kitten'.*airplane"):
        category_index("kitten")


def _rows(n, rng):
    return [
        make_row(factories.png_bytes(factories.random_pixels(rng)), i % 2, i % 10, seed=i)
        for i in range(n)
    ]


def test_writer_shards_and_replaces_card(tmp_path):
    rng = factories.np.random.default_rng(0)
    rows = _rows(25, rng)
    with DatasetFolderWriter(tmp_path, shard_rows=10) as w:
        w.add_many("train", rows)
        w.add_many("test", rows[:5])
        stats = w.close()
    assert stats["train"].shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert stats["train"].num_examples == 25
    ds = datasets.load_dataset(str(tmp_path))
    assert ds["train"]["seed"][:] == list(range(25)) and ds["test"].num_rows == 5
    card = DatasetCard.load(tmp_path / "README.md")
    assert card.data.dataset_info["splits"] == [
        {"name": "train", "num_bytes": stats["train"].num_bytes, "num_examples": 25},
        {"name": "test", "num_bytes": stats["test"].num_bytes, "num_examples": 5},
    ]
    # A rebuild replaces the whole card: a body rendered for the old rows would describe
    # data that is gone (never leave a stale README).
    card.text = "\n# My card: 25 train rows\n"
    card.save(tmp_path / "README.md")
    with DatasetFolderWriter(tmp_path, overwrite=True) as w:
        w.add_many("train", rows[:3])
        w.close()
    card = DatasetCard.load(tmp_path / "README.md")
    assert "25 train rows" not in card.text and "cifake card dataset" in card.text
    assert card.data.dataset_info["splits"][0]["num_examples"] == 3
    assert datasets.load_dataset(str(tmp_path))["train"].num_rows == 3


def test_writer_errors(tmp_path):
    with (
        DatasetFolderWriter(tmp_path / "a") as w,
        pytest.raises(DatasetFolderError, match="'valid'"),
    ):
        w.add("valid", _rows(1, factories.np.random.default_rng(0))[0])
    with pytest.raises(DatasetFolderError, match="no rows"):
        DatasetFolderWriter(tmp_path / "b").close()


def test_failed_write_leaves_no_shards(tmp_path):
    rows = _rows(5, factories.np.random.default_rng(0))
    with pytest.raises(RuntimeError), DatasetFolderWriter(tmp_path, shard_rows=2) as w:
        w.add_many("train", rows)
        raise RuntimeError("boom")
    assert not (tmp_path / "data").exists()
