"""`cifake build --fake/--real SPEC@NAME`: images the user brings, beside generated ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from cifake_hub.builders.imported import ImportedSpec
from cifake_hub.errors import ClassNameError, SourceError
from cifake_hub.images import jpeg_quality
from tests import factories
from tests.conftest import HUB_TOKEN, hub_client_env

HUB_REPO = "tester/other-detector-fakes"


def _save(path: Path, pixels: np.ndarray, **kwargs: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)


def _folder(root: Path, rng: np.random.Generator) -> np.ndarray:
    """A folder of a user's fakes: split and class folders (PNG and JPEG, one 64x64), two
    images without a class, an unreadable file and a greyscale one. Returns the pixels of
    train/cat/0.png, which the Hub source holds a copy of."""
    for split, per in (("train", 2), ("test", 1)):
        for cls in ("cat", "ship"):
            for i in range(per):
                px = factories.random_pixels(rng)
                _save(root / split / cls / f"{i}.png", px)
    _save(root / "train" / "ship" / "big.jpg", factories.random_pixels(rng, size=64), quality=85)
    for i in range(2):
        _save(root / f"loose-{i}.png", factories.random_pixels(rng))
    (root / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG but not really")
    _save(root / "test" / "ship" / "grey.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    return np.asarray(Image.open(root / "train" / "cat" / "0.png"))


def _hub_dataset(hub, tmp_path: Path, rng: np.random.Generator, copy: np.ndarray) -> None:
    """A Parquet dataset repo on the test Hub: 3 train rows (one a copy of a folder image)
    and 2 test rows, with class names in a ClassLabel column."""
    folder = tmp_path / "hub-repo"
    features = datasets.Features(
        {"image": datasets.Image(), "category": datasets.ClassLabel(names=["dog", "cat"])}
    )
    splits = {
        "train": [copy, factories.random_pixels(rng), factories.random_pixels(rng)],
        "test": [factories.random_pixels(rng), factories.random_pixels(rng)],
    }
    for split, images in splits.items():
        rows = {
            "image": [{"bytes": factories.png_bytes(px), "path": None} for px in images],
            "category": [i % 2 for i in range(len(images))],
        }
        ds = datasets.Dataset.from_dict(rows, features=features)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    # The real client, in a process of its own: this one runs with HF_HUB_OFFLINE=1.
    upload = (
        "from huggingface_hub import HfApi; import sys; api = HfApi(); "
        "api.create_repo(sys.argv[1], repo_type='dataset'); "
        "api.upload_folder(repo_id=sys.argv[1], repo_type='dataset', folder_path=sys.argv[2])"
    )
    env = hub_client_env(hub, tmp_path / "hf-upload")
    subprocess.run(
        [sys.executable, "-c", upload, HUB_REPO, str(folder)],
        check=True,
        capture_output=True,
        env=env,
    )


@pytest.fixture(scope="module")
def brought(tmp_path_factory):
    from tests.hub_server import HubServer

    root = tmp_path_factory.mktemp("brought")
    rng = np.random.default_rng(3)
    copy = _folder(root / "mine", rng)
    tar = factories.make_cifar_tar(root / "cifar.tar.gz").path
    with HubServer(HUB_TOKEN) as hub:
        _hub_dataset(hub, root, rng, copy)
        before = {p: p.read_bytes() for p in (root / "mine").rglob("*") if p.is_file()}
        out = root / "mixed"
        cmd = factories.build_cmd(
            out,
            tar,
            "--per-class-train",
            "1",
            "--per-class-test",
            "1",
            "--fake",
            f"dir:{root / 'mine'}@my-gan",
            "--fake",
            f"hub:{HUB_REPO}@other-benchmark",
            generators=("tiny",),
        )
        env = {**hub_client_env(hub, root / "hf-home"), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return root, out, before, done.stdout + done.stderr


def _rows(out: Path) -> dict[str, list[dict]]:
    ds = datasets.load_dataset(str(out))
    return {s: list(d.cast_column("image", datasets.Image(decode=False))) for s, d in ds.items()}


def test_brought_sources_counts_and_generator_column(brought):
    root, out, _, printed = brought
    # Every skip is said where the user looks, not only in the report.
    assert "my-gan (FAKE): 11 found, taken train 7, test 2; 2 skipped" in " ".join(printed.split())
    ds = datasets.load_dataset(str(out))
    names = ds["train"].features["generator"].names
    assert names == ["my-gan", "other-benchmark", "tiny-random-sd"]
    rows = _rows(out)
    fakes = Counter(
        (split, names[r["generator"]], r["category"])
        for split, part in rows.items()
        for r in part
        if r["label"] == 0
    )
    cat, ship, dog = 3, 8, 5
    assert fakes == {
        **{(s, "tiny-random-sd", c): 1 for s in ("train", "test") for c in range(10)},
        # The folder: its split and class folders (big.jpg too), and the 2 loose images
        # without a class, split by --test-fraction 1/6 (round(2/6) = 0 to test). The
        # unreadable and the greyscale file are skipped.
        ("train", "my-gan", cat): 2,
        ("train", "my-gan", ship): 3,
        ("test", "my-gan", cat): 1,
        ("test", "my-gan", ship): 1,
        ("train", "my-gan", None): 2,
        # The Hub dataset: its ClassLabel names mapped to CIFAR-10 classes, its splits kept.
        ("train", "other-benchmark", dog): 2,
        ("train", "other-benchmark", cat): 1,
        ("test", "other-benchmark", dog): 1,
        ("test", "other-benchmark", cat): 1,
    }
    brought_rows = [r for part in rows.values() for r in part if r["source"] == "my-gan"]
    assert all(r["model_id"] is None and r["source_file"] for r in brought_rows)
    report = json.loads((out / "build_report.json").read_text())
    mine = next(s for s in report["sources"] if s["name"] == "my-gan")
    assert (mine["found"], mine["resized"], mine["without_class"]) == (11, 1, 2)
    assert mine["spec"] == "dir:mine@my-gan"  # the folder's name, not its local path
    assert sorted(s["key"] for s in mine["skipped"]) == [
        "test/ship/grey.png",
        "train/cat/broken.png",
    ]
    assert "not RGB (mode L)" in next(s["problem"] for s in mine["skipped"] if "grey" in s["key"])


def test_every_row_has_one_encoding(brought):
    _, out, _, _ = brought
    rows = _rows(out)
    # auto: the CIFAR-10 source's PNG; the JPEG and the 64x64 image were encoded again.
    assert {r["image"]["bytes"][:8] for part in rows.values() for r in part} == {
        b"\x89PNG\r\n\x1a\n"
    }
    report = json.loads((out / "build_report.json").read_text())
    assert report["encoding"] == "png" and report["sources_differed"]
    assert report["encodings_before"]["my-gan"] == {"png": 8, "jpeg:85": 1}
    from cifake_hub.cards.dataset_card import render_dataset_card

    text = str(render_dataset_card(out))
    assert "The build stored every row as `png`; its sources came in different encodings" in text
    assert "| `my-gan` | FAKE | `dir:mine@my-gan` | 11 | 7 / 2 | 2 | 1 | 2 (" in text
    assert "unknown class |" in text  # the composition table's column for rows without one


def test_duplicate_across_sources_is_reported_and_sources_untouched(brought):
    root, out, before, _ = brought
    dup = json.loads((out / "build_report.json").read_text())["duplicates"]
    assert (dup["groups"], dup["groups_across_sources"], dup["extra_copies"]) == (1, 1, 1)
    assert {c["source"] for c in dup["listed"][0]} == {"my-gan", "other-benchmark"}
    assert {p: p.read_bytes() for p in (root / "mine").rglob("*") if p.is_file()} == before


def test_jpeg_encoding_and_determinism_without_generation(tmp_path):
    rng = np.random.default_rng(4)
    _folder(tmp_path / "fakes", rng)
    for cls in ("cat", "ship"):
        for i in range(3):
            _save(tmp_path / "photos" / cls / f"{i}.jpg", factories.random_pixels(rng), quality=95)

    def build(name: str) -> Path:
        out = tmp_path / name
        cmd = [
            *factories.build_cmd(out, tmp_path / "unused.tar.gz", generators=("tiny",))[:4],
            "--real",
            f"dir:{tmp_path / 'photos'}@my-photos",
            "--fake",
            f"dir:{tmp_path / 'fakes'}@my-gan:1",
            "--per-class-train",
            "0",
            "--per-class-test",
            "0",
            "--encoding",
            "jpeg:90",
        ]
        subprocess.run(cmd, check=True, capture_output=True, env=factories.BUILD_ENV)
        return out

    first, again = build("a"), build("b")
    rows = _rows(first)
    assert rows == _rows(again)
    blobs = [r["image"]["bytes"] for part in rows.values() for r in part]
    assert {jpeg_quality(b) for b in blobs} == {90}
    real = [r for part in rows.values() for r in part if r["label"] == 1]
    assert {r["source"] for r in real} == {"my-photos"} and len(real) == 6
    assert all(r["generator"] is None for r in real)
    # :1 keeps one image per class and split; the others are counted, not lost silently.
    report = json.loads((first / "build_report.json").read_text())
    mine = next(s for s in report["sources"] if s["name"] == "my-gan")
    assert mine["taken"] == {"train": 3, "test": 2}  # cat, ship, no class; cat, ship
    assert mine["left_out_by_cap"] == 11 - 2 - 5


def test_spec_errors_are_one_line():
    assert ImportedSpec.parse("hub:org/ds:validation:img@theirs:50", "fake") == ImportedSpec(
        "hub", "org/ds", "theirs", 50, "validation", "img"
    )
    for bad in ("dir:x", "zip:x@n", "dir:x@n:0", "hub:a:b:c:d@n"):
        with pytest.raises(SourceError, match="--fake"):
            ImportedSpec.parse(bad, "fake")


def test_study_and_evaluate_on_brought_sources(brought, tmp_path):
    from cifake_hub.cli.main import main

    _, out, _, _ = brought
    dataset = tmp_path / "ds"
    shutil.copytree(out, dataset)
    # 14 rows per detector: a 0.3 validation share leaves both labels on both sides.
    study = ["study", str(dataset), "--out", str(tmp_path / "s"), "--epochs", "1"]
    assert main([*study, "--val-fraction", "0.3"]) == 0
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    assert record["generators"] == ["my-gan", "other-benchmark", "tiny-random-sd"]
    assert len(record["detectors"]) == 6  # three single ones, three leave-one-out
    run = tmp_path / "s" / record["detectors"][0]["run"]
    args = ["evaluate", str(run), "--dataset", str(dataset), "--conditions", "clean"]
    assert main([*args, "--bootstrap", "0", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert sorted(report["per_generator"]) == record["generators"]


def test_parquet_source_with_split_and_class_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cifake_hub.builders.imported import read_source

    rng = np.random.default_rng(5)
    images = [factories.png_bytes(factories.random_pixels(rng)) for _ in range(5)]
    table = pa.table(
        {
            "image": [{"bytes": b, "path": None} for b in images[:4]]
            + [{"bytes": b"x", "path": None}],
            "class": ["frog", "Truck", None, "frog", "frog"],
            "split": ["train", "test", "validation", None, "train"],
        }
    )
    pq.write_table(table, tmp_path / "theirs.parquet")
    spec = ImportedSpec.parse(f"parquet:{tmp_path / 'theirs.parquet'}@theirs", "fake")
    taken, report = read_source(spec, "FAKE", test_fraction=0.5)
    frog, truck = 6, 9
    assert [(t.split, t.category, t.key) for t in taken] == [
        ("train", frog, "theirs.parquet/0"),
        ("test", truck, "theirs.parquet/1"),
        # No usable split: the stratified share decides (one of one per class rounds to 0
        # or 1 with fraction 0.5; Python rounds half to even, so 0: train).
        ("train", None, "theirs.parquet/2"),
        ("train", frog, "theirs.parquet/3"),
    ]
    assert report.found == 5 and [s["key"] for s in report.skipped] == ["theirs.parquet/4"]
    bad = tmp_path / "bad.parquet"
    one = pa.table({"image": [{"bytes": images[0], "path": None}], "class": ["toad"]})
    pq.write_table(one, bad)
    with pytest.raises(ClassNameError, match="unknown class name 'toad'"):
        read_source(ImportedSpec.parse(f"parquet:{bad}@b", "fake"), "FAKE", 0.5)


def test_parquet_rows_pointing_nowhere_or_with_odd_classes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cifake_hub.builders.imported import read_source

    gone = str(tmp_path / "gone.png")
    path = tmp_path / "paths.parquet"
    pq.write_table(pa.table({"image": [{"bytes": None, "path": gone}], "category": [3]}), path)
    taken, report = read_source(ImportedSpec.parse(f"parquet:{path}@p", "fake"), "FAKE", 0.5)
    assert taken == [] and report.skipped[0]["key"] == "paths.parquet/0"
    assert "cannot be read" in report.skipped[0]["problem"]
    odd = tmp_path / "odd.parquet"
    png = factories.png_bytes(factories.random_pixels(np.random.default_rng(0)))
    pq.write_table(pa.table({"image": [{"bytes": png, "path": None}], "category": [2.5]}), odd)
    with pytest.raises(ClassNameError, match="class 2.5 is not a CIFAR-10 class name or 0-9"):
        read_source(ImportedSpec.parse(f"parquet:{odd}@o", "fake"), "FAKE", 0.5)
