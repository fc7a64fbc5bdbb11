from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections import Counter

import datasets
import pytest

from cifake_hub.builders.kaggle import (
    KAGGLE_GENERATORS,
    ImportConfig,
    import_kaggle,
    parse_file_name,
    scan,
)
from cifake_hub.cli.main import main
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import FileNameError, InvalidImageError, SourceError
from cifake_hub.schema import CLASS_NAMES, features
from tests import factories


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0000.jpg", (0, 0)),
        ("0042 (3).jpg", (2, 42)),
        ("4999 (10).jpg", (9, 4999)),
        ("1000 (1).JPG", (0, 1000)),
    ],
)
def test_parse_file_name(name, expected):
    assert parse_file_name(name) == expected


@pytest.mark.parametrize(
    "name", ["0042 (11).jpg", "0042 (0).jpg", "cat.jpg", "0042 (3).gif", "42(3).jpg"]
)
def test_parse_file_name_rejects(name):
    with pytest.raises(FileNameError, match="cannot parse"):
        parse_file_name(name)


def _rows_by_file(out_dir):
    ds = datasets.load_dataset(str(out_dir))
    result = {}
    for split, d in ds.items():
        d = d.cast_column("image", datasets.Image(decode=False))
        for row in d:
            result[row["source_file"]] = (split, row)
    return ds, result


def test_import_zip_rows_features_and_report(kaggle_zip, tmp_path):
    out = tmp_path / "out"
    result = import_kaggle(ImportConfig(src=str(kaggle_zip.path), out=str(out), workers=2))
    ds, rows = _rows_by_file(out)

    assert set(ds) == {"train", "test"}
    for split in ds.values():
        assert split.features == features(KAGGLE_GENERATORS)
    # Every valid file is a row with its original bytes, its split, label, class and index.
    assert set(rows) == set(kaggle_zip.valid)
    for name, (split, row) in rows.items():
        expected_split, label, base = name.split("/")
        category, index = parse_file_name(base)
        assert split == expected_split
        assert row["image"]["bytes"] == kaggle_zip.files[name]
        assert (row["label"], row["category"], row["source_index"]) == (
            ["FAKE", "REAL"].index(label),
            category,
            index,
        )
        assert row["source"] == "kaggle-cifake"
    counts = Counter((s, r["label"], r["category"]) for s, r in rows.values())
    assert counts[("train", 0, 0)] == 2
    assert counts[("train", 0, 2)] == 3  # the planted duplicate is kept without --dedupe

    report = json.loads(DatasetFolder(out).file(DatasetFolder.REPORT).read_text())
    assert report == result.report
    assert report["input_files"] == len(kaggle_zip.files)
    assert report["rows_written"] == len(kaggle_zip.valid)
    assert {i["file"]: i["problem"].split(" (")[0] for i in report["invalid"]} == kaggle_zip.invalid
    dup = report["duplicates"]
    assert dup["groups"] == 2 and dup["extra_copies"] == 2 and dup["groups_across_splits"] == 1
    assert dup["extra_copies_per_split_label_class"] == {"test/FAKE/cat": 1, "train/FAKE/bird": 1}
    pairs = {(g[1]["file"], g[0]["file"]) for g in dup["list"]}
    assert pairs == set(kaggle_zip.duplicates)
    assert report["dropped"] == []


def test_dedupe_drops_later_copy(kaggle_zip, tmp_path):
    out = tmp_path / "out"
    result = import_kaggle(ImportConfig(src=str(kaggle_zip.path), out=str(out), dedupe=True))
    _, rows = _rows_by_file(out)
    later = {later for later, _ in kaggle_zip.duplicates}
    assert set(rows) == set(kaggle_zip.valid) - later
    assert {d["file"]: d["duplicate_of"] for d in result.report["dropped"]} == dict(
        kaggle_zip.duplicates
    )
    # No two rows share bytes any more.
    assert len({r["image"]["bytes"] for _, r in rows.values()}) == len(rows)


def test_strict_stops_and_leaves_no_dataset(kaggle_zip, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InvalidImageError, match=r"train/REAL/.*(unreadable|not 32x32)"):
        import_kaggle(ImportConfig(src=str(kaggle_zip.path), out=str(out), strict=True))
    assert not list(out.glob("data/*"))


def test_folder_with_top_folder_equals_zip(tmp_path):
    fx = factories.make_kaggle_folder(tmp_path / "src", top="cifake/")
    out = tmp_path / "out"
    import_kaggle(ImportConfig(src=str(fx.path), out=str(out), workers=1))
    _, rows = _rows_by_file(out)
    assert set(rows) == set(fx.valid)
    assert all(r["image"]["bytes"] == fx.files[name] for name, (_, r) in rows.items())


def test_only_one_split_present(tmp_path):
    rng = factories.np.random.default_rng(1)
    src = tmp_path / "test-only.zip"
    with zipfile.ZipFile(src, "w") as z:
        for c in range(len(CLASS_NAMES)):
            z.writestr(
                f"test/REAL/{factories.kaggle_name(0, c)}",
                factories.jpeg_bytes(factories.random_pixels(rng)),
            )
        z.writestr("test/notes.txt", b"hello")
    out = tmp_path / "out"
    result = import_kaggle(ImportConfig(src=str(src), out=str(out)))
    ds = datasets.load_dataset(str(out))
    assert list(ds) == ["test"] and ds["test"].num_rows == 10
    assert result.report["ignored"] == [
        {"file": "test/notes.txt", "reason": "outside <split>/<REAL|FAKE>/ or hidden"}
    ]


def test_load_dataset_by_folder_name_in_fresh_process(kaggle_zip, tmp_path):
    assert main(["import-kaggle", str(kaggle_zip.path), "--out", str(tmp_path / "cifake")]) == 0
    code = (
        "import datasets; ds = datasets.load_dataset('cifake');"
        "print(ds['train'].num_rows, ds['test'].num_rows, ds['train'].features['label'].names)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    n_train = sum(1 for k in kaggle_zip.valid if k.startswith("train/"))
    n_test = len(kaggle_zip.valid) - n_train
    assert res.stdout.split("\n")[0] == f"{n_train} {n_test} ['FAKE', 'REAL']"


def test_existing_output_needs_overwrite(kaggle_zip, tmp_path):
    out = tmp_path / "out"
    cfg = ImportConfig(src=str(kaggle_zip.path), out=str(out))
    import_kaggle(cfg)
    with pytest.raises(Exception, match="--overwrite"):
        import_kaggle(cfg)
    import_kaggle(cfg, overwrite=True)
    assert datasets.load_dataset(str(out))["train"].num_rows == sum(
        1 for k in kaggle_zip.valid if k.startswith("train/")
    )


def test_bad_sources(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        scan(tmp_path / "missing.zip")
    empty = tmp_path / "other.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("images/a.jpg", b"x")
    with pytest.raises(SourceError, match="no images under train/REAL"):
        scan(empty)
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"plain text")
    with pytest.raises(SourceError, match="not a zip file"):
        scan(not_zip)
    bad_name = tmp_path / "bad-name.zip"
    with zipfile.ZipFile(bad_name, "w") as z:
        z.writestr("train/FAKE/cat.jpg", b"x")
    with pytest.raises(SourceError, match="'cat.jpg'"):
        scan(bad_name)
    # Beside images, a file that is not named as in Kaggle CIFAKE goes to the report.
    with zipfile.ZipFile(bad_name, "a") as z:
        z.writestr("train/FAKE/0001 (2).jpg", b"x")
    layout = scan(bad_name)
    assert [e.name for e in layout.entries] == ["train/FAKE/0001 (2).jpg"]
    assert layout.ignored[0]["file"] == "train/FAKE/cat.jpg"
    assert "cannot parse" in layout.ignored[0]["reason"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.zip", "does not exist"),
        (lambda p: _zip(p / "x.zip", {"train/FAKE/12 (99).jpg": b""}), "'12 (99).jpg'"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, make, message):
    src = make(tmp_path)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "cifake_hub.cli.main",
            "import-kaggle",
            str(src),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert str(src) in lines[0] or message in lines[0]


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path
