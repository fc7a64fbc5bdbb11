"""Hostile inputs, as a careless user (or a broken download) gives them: every file is a row
or a reported line, every error is one line, and nothing outside the output changes."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifake_hub.cli.main import main
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.outputs import json_text
from tests import factories
from tests.test_outputs import snapshot


def bomb_png(side: int = 20_000) -> bytes:
    """A PNG whose header claims side x side pixels (the data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def hostile_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    px = factories.random_pixels(rng)
    good = factories.jpeg_bytes(px, 90)
    grey16 = Image.fromarray(np.full((32, 32), 40_000, np.uint16))
    return {
        "train/REAL/0000 (1).jpg": good,
        "train/REAL/0001 (1).jpg": good[:100],  # truncated
        "train/REAL/0002 (1).jpg": b"",  # zero bytes
        "train/REAL/0003 (1).png": bomb_png(),
        "train/REAL/0004 (1).png": encoded(grey16, "PNG"),  # 16-bit
        "train/REAL/0005 (1).jpg": encoded(Image.fromarray(px).convert("CMYK"), "JPEG"),
        "train/REAL/0006 (1).png": encoded(Image.fromarray(px).convert("RGBA"), "PNG"),
        "train/REAL/0007 (1).png": encoded(Image.fromarray(px).convert("P"), "PNG"),
        "train/REAL/0008 (1).jpg": encoded(Image.fromarray(px), "GIF"),
        "train/REAL/photo": factories.jpeg_bytes(px, 80),  # no suffix
        "train/REAL/notes.txt": b"my notes",
        "train/REAL/0012 (0).jpg": good,  # class index out of range
        "train/REAL/0013 (11).jpg": good,
        "train/FAKE/0000 (2).jpg": factories.jpeg_bytes(factories.random_pixels(rng), 90),
        "train/FAKE/0001 (2).png": factories.png_bytes(factories.random_pixels(rng)),
    }


def hostile_folder(root: Path) -> Path:
    for name, data in hostile_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    real = root / "train" / "REAL"
    (real / "0009 (1).jpg").symlink_to(real / "0000 (1).jpg")  # a good link
    (real / "0010 (1).jpg").symlink_to(root / "missing.jpg")  # dangling
    (real / "0011 (1).jpg").symlink_to(real / "0011 (1).jpg")  # a loop
    (real / "linked-folder").symlink_to(root / "train" / "FAKE", target_is_directory=True)
    return root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", *args], capture_output=True, text=True
    )


def _accounted(report: dict) -> int:
    return (
        report["rows_written"]
        + len(report["invalid"])
        + len(report["ignored"])
        + len(report["dropped"])
    )


@pytest.mark.parametrize("as_zip", [False, True])
def test_import_hostile_files_every_one_accounted(tmp_path, as_zip):
    src = hostile_folder(tmp_path / "src")
    if as_zip:
        archive = tmp_path / "src.zip"
        with zipfile.ZipFile(archive, "w") as z, pytest.warns(UserWarning, match="Duplicate"):
            for name, data in hostile_files().items():
                z.writestr(name, data)
            z.writestr("train/FAKE/0000 (2).jpg", hostile_files()["train/REAL/0000 (1).jpg"])
        src = archive
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    res = _run("import-kaggle", str(src), "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = json.loads(DatasetFolder(out).file(DatasetFolder.REPORT).read_text())
    assert _accounted(report) == report["input_files"]
    expected_inputs = len(hostile_files()) + (1 if as_zip else 4)  # + the links or the copy
    assert report["input_files"] == expected_inputs
    problems = {i["file"].split("/")[-1]: i["problem"] for i in report["invalid"]}
    assert "too large to decode safely" in problems["0003 (1).png"]
    assert "0x" not in json.dumps(report)  # no <_io.BytesIO object at 0x...>
    ignored = {i["file"].split("/")[-1] for i in report["ignored"]}
    assert {"photo", "notes.txt", "0012 (0).jpg", "0013 (11).jpg"} <= ignored
    if not as_zip:
        assert {"0010 (1).jpg", "0011 (1).jpg"} <= set(problems) and "linked-folder" in ignored
    # Nothing outside --out changed.
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == before


def test_predict_hostile_files_every_path_a_row(small_run, tmp_path):
    folder = hostile_folder(tmp_path / "src") / "train"
    before = snapshot(tmp_path)
    out = tmp_path / "pred.json"
    res = _run(
        "predict", str(folder), "--model", str(small_run), "--output", str(out),
        "--gradcam", str(tmp_path / "cams"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = {
        Path(r["path"]).relative_to(folder).as_posix(): r
        for r in json.loads(out.read_text())["predictions"]
    }
    entries = [p for p in folder.rglob("*") if p.is_symlink() or not p.is_dir()]
    assert len(rows) == len(entries)
    for name in ("REAL/0000 (1).jpg", "REAL/photo", "REAL/0006 (1).png", "REAL/0009 (1).jpg"):
        assert rows[name]["label"] in ("REAL", "FAKE"), name
    for name, text in [
        ("REAL/0003 (1).png", "too large"),
        ("REAL/0010 (1).jpg", "cannot be read"),
        ("REAL/0011 (1).jpg", "cannot be read"),
        ("REAL/notes.txt", "not an image format"),
        ("REAL/linked-folder", "link to a folder"),
    ]:
        assert rows[name]["label"] is None and text in rows[name]["error"], (name, rows[name])
    after = snapshot(tmp_path)
    changed = {k for k in set(after) | set(before) if after.get(k) != before.get(k)}
    assert all(k == "pred.json" or k.startswith("cams/") for k in changed), changed


def test_sixteen_bit_png_is_scaled_not_white(tmp_path):
    from cifake_hub.predict import load_image

    path = tmp_path / "grey16.png"
    path.write_bytes(encoded(Image.fromarray(np.full((32, 32), 40_000, np.uint16)), "PNG"))
    pixels, resized = load_image(path)
    assert not resized and np.all(pixels == round(40_000 * 255 / 65535))


def test_predict_folder_and_output_errors_are_one_line(small_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--model", str(small_run)]) == 1
    assert "holds no files" in capsys.readouterr().err
    image = tmp_path / "a.png"
    image.write_bytes(factories.png_bytes(factories.random_pixels(np.random.default_rng(0))))
    # Checked before the model is even looked for.
    assert main(["predict", str(image), "--model", "no/such-model", "--output", "p.txt"]) == 1
    assert "--output must end in .csv or .json" in capsys.readouterr().err
    bad = tmp_path / "nope" / "p.csv"
    assert main(["predict", str(image), "--model", "no/such-model", "--output", str(bad)]) == 1
    assert "does not exist; create it first" in capsys.readouterr().err
    not_model = tmp_path / "model.keras"
    not_model.write_text("not a model")
    assert main(["predict", str(image), "--model", str(not_model)]) == 1
    err = capsys.readouterr().err
    assert "is not a Keras model" in err and len(err.strip().splitlines()) == 1


# -- search ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--topology", "conv=32x6,dense=64x1"], "more than a 32x32 image allows"),
        (["--seed", "-5"], "seed must be >= 0"),
        (["--learning-rate", "inf"], "learning rate must be a finite number"),
        (["--learning-rate", "nan"], "learning rate must be a finite number"),
    ],
)
def test_search_bad_options_are_one_line(small_cifake, tmp_path, option, message):
    res = _run("search", str(small_cifake), "--out", str(tmp_path / "run"), *option)
    assert res.returncode == 1 and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def _copy_dataset(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_search_bad_datasets_are_one_line(small_cifake, tmp_path):
    corrupt = _copy_dataset(small_cifake, tmp_path / "corrupt")
    shard = next((corrupt / "data").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:200])
    res = _run("search", str(corrupt), "--out", str(tmp_path / "run1"))
    assert res.returncode == 1 and "cannot load" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr

    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.schema import make_row

    rng = np.random.default_rng(0)
    with DatasetFolderWriter(tmp_path / "fake-only") as w:
        for c in range(10):
            for _ in range(3):
                w.add("train", make_row(factories.png_bytes(factories.random_pixels(rng)), 0, c))
        w.close()
    res = _run("search", str(tmp_path / "fake-only"), "--out", str(tmp_path / "run2"))
    assert res.returncode == 1 and "holds only FAKE images" in res.stderr
    # A typo in the dataset path leaves no run folder that would block the next try.
    res = _run("search", str(tmp_path / "typo"), "--out", str(tmp_path / "run3"))
    assert res.returncode == 1 and not (tmp_path / "run3").exists()


def test_zero_row_split_is_one_line(tmp_path):
    import datasets

    from cifake_hub.schema import features

    folder = tmp_path / "zero"
    empty = datasets.Dataset.from_dict({c: [] for c in features()}, features=features())
    (folder / "data").mkdir(parents=True)
    empty.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    res = _run("search", str(folder), "--out", str(tmp_path / "run"))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1


def test_parquet_of_another_kind_is_one_line(tmp_path, capsys):
    """A dataset folder, or a brought source, whose Parquet has other columns or is no
    Parquet at all: one line naming it, for every command that reads a dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cifake_hub.builders.imported import ImportedSpec, read_source
    from cifake_hub.errors import SourceError

    other, broken = tmp_path / "other", tmp_path / "broken"
    for folder in (other, broken):
        (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), other / "data" / "train-0.parquet")
    (broken / "data" / "train-0.parquet").write_text("not parquet")
    for folder, says in ((other, "lacks column(s) ['category', 'image', 'label']"),
                         (broken, "Parquet magic bytes not found")):  # fmt: skip
        for argv in (
            ["train", str(folder), "--out", str(tmp_path / "run")],
            ["evaluate", "robust", "--dataset", str(folder), "--out", str(tmp_path / "ev")],
            ["zoo", "train", "vae", str(folder), "--preset", "tiny", "--out", str(tmp_path / "g")],
        ):
            capsys.readouterr()
            assert main(argv) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert err[-1].startswith("error: ") and says in err[-1], err
            assert not any(line.startswith("Failed to read") for line in err), err
    sources = {other: "no image column 'image'", broken: "not a readable Parquet file"}
    for folder, says in sources.items():
        source = folder / "data" / "train-0.parquet"
        with pytest.raises(SourceError, match=re.escape(says)):
            read_source(ImportedSpec.parse(f"parquet:{source}@x", "fake"), "FAKE", 0.5)


def test_relative_and_dotted_dataset_paths_are_one_run(small_cifake, tmp_path):
    from cifake_hub.training.search import SearchConfig, dataset_id

    link = tmp_path / "ds"
    link.symlink_to(small_cifake, target_is_directory=True)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert dataset_id("ds") == dataset_id("./ds") == dataset_id(str(small_cifake))
    finally:
        os.chdir(here)
    assert dataset_id("user/cifake") == "user/cifake"
    assert SearchConfig(dataset=dataset_id(small_cifake)).dataset == str(small_cifake.resolve())


def test_json_outputs_are_standard():
    text = json_text({"precision": float("nan"), "auc": float("inf"), "ok": [1.0, float("-inf")]})
    assert json.loads(text) == {"precision": None, "auc": None, "ok": [1.0, None]}


def test_folder_source_with_a_dangling_link_is_one_error(tmp_path):
    from cifake_hub.builders.sources import parse_source
    from cifake_hub.errors import SourceError

    cls = tmp_path / "train" / "cat"
    cls.mkdir(parents=True)
    (cls / "0.png").symlink_to(tmp_path / "missing.png")
    with pytest.raises(SourceError, match=r"0.png cannot be read"):
        list(parse_source(f"dir:{tmp_path}").rows("train"))


# -- values written into cards and conditions --------------------------------------------------
@pytest.mark.parametrize("repo_id", ["NS/x\n---\nevil: true", "../../etc", "no-namespace"])
def test_card_repo_ids_are_validated_before_anything_is_written(small_run, tmp_path, repo_id,
                                                                capsys):  # fmt: skip
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    before = snapshot(run)
    assert main(["card", "model", str(run), "--repo-id", repo_id]) == 1
    err = capsys.readouterr().err
    assert "--repo-id must be NAMESPACE/NAME" in err and len(err.strip().splitlines()) == 1
    assert main(["card", "model", str(run), "--dataset-repo", repo_id]) == 1
    assert "--dataset-repo must be NAMESPACE/NAME" in capsys.readouterr().err
    assert snapshot(run) == before


@pytest.mark.parametrize("conditions", ["", ",,,", " , "])
def test_conditions_naming_nothing_are_one_line(small_run, conditions, capsys):
    assert main(["evaluate", str(small_run), "--conditions", conditions]) == 1
    err = capsys.readouterr().err
    assert "names no condition" in err and len(err.strip().splitlines()) == 1


def test_negative_gallery_is_one_line(small_run, capsys):
    assert main(["explain", str(small_run), "--gallery", "-1"]) == 1
    err = capsys.readouterr().err
    assert "gallery must be >= 0" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["search", "train"])
@pytest.mark.parametrize("fraction", ["0.99", "0.001"])
def test_a_validation_split_leaving_a_label_nearly_empty_is_refused(
    small_cifake, tmp_path, command, fraction
):
    extra = ["--recipe", "robust"] if command == "train" else []
    res = _run(command, str(small_cifake), "--out", str(tmp_path / "run"),
               "--val-fraction", fraction, *extra)  # fmt: skip
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "each label needs at least" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
