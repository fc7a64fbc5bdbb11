from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
from PIL import Image

from cifake_hub.builders.sources import CifarTarSource, FolderSource, HubSource, parse_source
from cifake_hub.errors import ClassNameError, InvalidImageError, SourceError
from cifake_hub.schema import CLASS_NAMES, REAL
from tests import factories


def _pixels(row):
    return np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))


def test_parse_source_kinds(tmp_path):
    assert isinstance(parse_source("hub:uoft-cs/cifar10"), HubSource)
    assert parse_source("cifar-tar:/x/cifar.tar.gz").spec == "cifar-tar:/x/cifar.tar.gz"
    assert isinstance(parse_source(f"dir:{tmp_path}"), FolderSource)
    for bad in ("uoft-cs/cifar10", "s3:bucket", "hub:"):
        with pytest.raises(SourceError, match=repr(bad)):
            parse_source(bad)


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_tar_keeps_pixels(cifar_tar, split):
    pixels, labels = getattr(cifar_tar, split)
    rows = list(CifarTarSource(cifar_tar.path).rows(split))
    assert len(rows) == len(labels)
    for i, row in enumerate(rows):
        assert row["label"] == REAL and row["category"] == labels[i]
        assert row["source_index"] == i and row["source"] == "cifar-tar"
        np.testing.assert_array_equal(_pixels(row), pixels[i])  # PNG: lossless


def test_cifar_tar_per_class(cifar_tar):
    rows = list(CifarTarSource(cifar_tar.path).rows("train", per_class=3))
    assert [r["category"] for r in rows].count(4) == 3 and len(rows) == 30
    with pytest.raises(SourceError, match="fewer than 50 train images"):
        list(CifarTarSource(cifar_tar.path).rows("train", per_class=50))


def test_cifar_tar_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list(CifarTarSource(tmp_path / "nope.tar.gz").rows("train"))
    with pytest.raises(SourceError, match="unknown split 'valid'"):
        list(CifarTarSource(tmp_path / "nope.tar.gz").rows("valid"))


def _make_folder(root, rng, per_class=2):
    files = {}
    for split in ("train", "test"):
        for name in CLASS_NAMES:
            for i in range(per_class):
                path = root / split / name / f"img{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(factories.png_bytes(factories.random_pixels(rng)))
                files[f"{split}/{name}/img{i}.png"] = path.read_bytes()
    return files


def test_folder_source_keeps_bytes(tmp_path):
    files = _make_folder(tmp_path, np.random.default_rng(0))
    rows = list(FolderSource(tmp_path).rows("test"))
    assert len(rows) == 20
    for row in rows:
        assert row["image"]["bytes"] == files[row["source_file"]]
        assert CLASS_NAMES[row["category"]] == row["source_file"].split("/")[1]


def test_folder_source_rejects_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    _make_folder(tmp_path, rng, per_class=1)
    (tmp_path / "train" / "cat" / "big.png").write_bytes(
        factories.png_bytes(factories.random_pixels(rng, 64))
    )
    with pytest.raises(InvalidImageError, match="big.png: not 32x32"):
        list(FolderSource(tmp_path).rows("train"))
    (tmp_path / "test" / "kitten").mkdir()
    with pytest.raises(ClassNameError, match="'kitten'"):
        list(FolderSource(tmp_path).rows("test"))


def test_hub_source_reads_hub_layout(tmp_path):
    """The same load_dataset path as for uoft-cs/cifar10, on a local copy of its layout."""
    rng = np.random.default_rng(0)
    pixels = [factories.random_pixels(rng) for _ in range(20)]
    labels = [i % 10 for i in range(20)]
    ds = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "label": labels},
        features=datasets.Features(
            {"img": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))}
        ),
    )
    (tmp_path / "cifar10" / "plain_text").mkdir(parents=True)
    ds.to_parquet(tmp_path / "cifar10" / "plain_text" / "test-00000-of-00001.parquet")
    rows = list(HubSource(str(tmp_path / "cifar10")).rows("test", per_class=1))
    assert [r["category"] for r in rows] == list(range(10))
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(_pixels(row), pixels[i])
        assert row["source_index"] == i
    with pytest.raises(SourceError, match="cannot load 'train'"):
        list(HubSource(str(tmp_path / "cifar10")).rows("train"))
