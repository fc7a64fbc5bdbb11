from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest

from cifake_hub.builders.prompts import prompt_for
from cifake_hub.builders.units import BuildConfig, units
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import ConfigError
from tests import factories
from tests.factories import BUILD_ENV

BIN = Path(sys.executable).parent
ENV = BUILD_ENV
MIX = factories.MIX
PER_CLASS = factories.BUILD_PER_CLASS
QUOTAS = {"train": (2, 1), "test": (1, 1)}  # 2:1 of 3, and of 2 (largest remainder)
_build_cmd = factories.build_cmd


def _rows(out: Path) -> dict[str, list[dict]]:
    ds = datasets.load_dataset(str(out))
    return {s: list(d.cast_column("image", datasets.Image(decode=False))) for s, d in ds.items()}


@pytest.fixture(scope="module")
def reference(mixed_build):
    """An uninterrupted single-process build (of two generators) and its rows."""
    tar, out = mixed_build
    return tar, out, _rows(out)


def test_build_counts_and_provenance(reference):
    _, out, rows = reference
    names = datasets.load_dataset(str(out))["train"].features["generator"].names
    assert names == ["tiny-random-sd", "tiny-random-sdxl"]  # sorted ids, not the given order
    for split, per_class in PER_CLASS.items():
        counts = Counter((r["label"], r["category"]) for r in rows[split])
        assert counts == {(label, c): per_class for label in (0, 1) for c in range(10)}
        per_generator = Counter(
            (r["category"], r["generator"]) for r in rows[split] if r["label"] == 0
        )
        assert per_generator == {(c, g): QUOTAS[split][g] for c in range(10) for g in (0, 1)}
        for r in rows[split]:
            if r["label"] == 0:
                assert r["model_id"] == names[r["generator"]]
                # Consecutive index ranges: tiny makes the first images of every class.
                assert r["generator"] == (r["source_index"] >= QUOTAS[split][0])
                assert r["prompt"] == prompt_for(r["category"], r["source_index"])
                assert r["steps"] == 2 and r["render_size"] == 64
                assert r["seed"] is not None and r["scheduler"] == "EulerAncestralDiscreteScheduler"
                assert r["image"]["bytes"][:4] == b"\x89PNG"
            else:
                assert r["source"] == "cifar-tar" and r["prompt"] is None
                assert r["generator"] is None
    assert datasets.load_dataset(str(reference[1]))["train"].features["label"].names == [
        "FAKE",
        "REAL",
    ]
    report = json.loads((out / "build_report.json").read_text())["generators"]
    assert [(g["generator"], g["spec"], g["per_class"]) for g in report] == [
        ("tiny-random-sd", "tiny:2", {"train": 2, "test": 1}),
        ("tiny-random-sdxl", "tiny-sdxl:1", {"train": 1, "test": 1}),
    ]
    assert [g["images_timed"] for g in report] == [30, 20]
    assert all(g["seconds_per_image"] > 0 and g["devices"] == ["cpu"] for g in report)
    assert [g["family"] for g in report] == ["sd", "sdxl"]


def test_card_has_a_table_per_generator(reference):
    from cifake_hub.cards.dataset_card import render_dataset_card

    card = str(render_dataset_card(reference[1]))
    section = card.split("## Generators")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `tiny")]
    assert len(rows) == 2
    assert rows[0].startswith("| `tiny-random-sd` | `tiny:2` | sd | 20 | 10 |")
    assert rows[1].startswith("| `tiny-random-sdxl` | `tiny-sdxl:1` | sdxl | 10 | 10 |")


def test_overwrite_with_another_plan_starts_over(reference, tmp_path):
    import shutil

    tar, out, _ = reference
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cmd = _build_cmd(
        copy, tar, "--per-class-train", "1", "--per-class-test", "1", generators=("tiny",)
    )
    subprocess.run([*cmd, "--overwrite"], check=True, capture_output=True, env=ENV)
    rows = _rows(copy)
    assert {len(v) for v in rows.values()} == {20}
    assert {r["model_id"] for v in rows.values() for r in v if r["label"] == 0} == {
        "tiny-random-sd"
    }
    assert len(list(DatasetFolder(copy).work_dir.glob("*.parquet"))) == 20


def test_killed_build_resumes_to_the_same_rows(reference, tmp_path):
    tar, _, expected = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _build_cmd(out, tar), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    deadline = time.monotonic() + 120
    while len(list(DatasetFolder(out).work_dir.glob("*.parquet"))) < 4:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-build (not finished before)
    done_before = {p.name for p in DatasetFolder(out).work_dir.glob("*.parquet")}
    assert len(done_before) >= 4
    other = subprocess.run(
        _build_cmd(out, tar, generators=("tiny:1", "tiny-sdxl:1")),
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert other.returncode != 0
    assert "checkpoints of a build with other generators" in other.stderr
    assert {p.name for p in DatasetFolder(out).work_dir.glob("*.parquet")} == done_before
    res = subprocess.run(_build_cmd(out, tar), check=True, capture_output=True, text=True, env=ENV)
    assert f"({len(done_before)} were already done)" in res.stderr + res.stdout
    assert _rows(out) == expected


def test_two_processes_equal_one(reference, tmp_path):
    tar, _, expected = reference
    out = tmp_path / "torchrun"
    subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", "--no-python", *_build_cmd(out, tar)],
        check=True,
        capture_output=True,
        env=ENV,
    )
    assert _rows(out) == expected


@pytest.mark.parametrize(
    "generators, train, test",
    [
        (("sd",), [250], [50]),
        (("a:3000", "b:2000"), [150, 100], [30, 20]),
        (("a", "b", "c"), [84, 83, 83], [17, 17, 16]),
        (("a:1", "b:1", "c:1", "d:5"), [32, 31, 31, 156], [7, 6, 6, 31]),
    ],
)
def test_units_are_disjoint_and_complete(generators, train, test):
    cfg = BuildConfig(
        out="x", generators=generators, per_class_train=250, per_class_test=50, unit_size=100
    )
    assert (cfg.quotas("train"), cfg.quotas("test")) == (train, test)
    all_units = units(cfg)
    jobs = [j for u in all_units for j in u.jobs]
    assert len(jobs) == len(set(jobs)) == 10 * 300
    assert len({u.name for u in all_units}) == len(all_units)
    for g, _spec in enumerate(generators):
        made = [j for u in all_units if u.generator == g for j in u.jobs]
        assert len(made) == 10 * (train[g] + test[g])
    assert all(f"-g{u.generator}-{generators[u.generator][0]}" in u.name for u in all_units)


def test_build_config_errors():
    with pytest.raises(ConfigError, match="shard index 2"):
        BuildConfig(out="x", num_shards=2, shard_index=2)
    with pytest.raises(ConfigError, match="'tiny-random-sd' is given twice"):
        BuildConfig(out="x", generators=("tiny", "tiny-random-sd:2"))
    with pytest.raises(ConfigError, match="for every --generator MODEL:N, or for none"):
        BuildConfig(out="x", generators=("a:2", "b"))
    with pytest.raises(ConfigError, match="cannot read 'stpes=3'"):
        BuildConfig(out="x", generators=("a,stpes=3",))
    with pytest.raises(ConfigError, match="share N >= 1"):
        BuildConfig(out="x", generators=("a:0",))


def test_generator_spec_parsing():
    from cifake_hub.builders.generate import GeneratorConfig, GeneratorSpec

    spec = GeneratorSpec.parse("stabilityai/sdxl-turbo:3,steps=4,guidance=0,size=512")
    assert spec == GeneratorSpec("stabilityai/sdxl-turbo", 3, 4, 0.0, 512)
    assert GeneratorSpec.parse("/models/v1:x") == GeneratorSpec("/models/v1:x")
    shared = GeneratorConfig(steps=20, render_size=256)
    mine = spec.config(shared)
    assert (mine.model_id, mine.steps, mine.guidance_scale, mine.render_size) == (
        "stabilityai/sdxl-turbo",
        4,
        0.0,
        512,
    )
    other = GeneratorSpec.parse("tiny").config(shared)
    assert (other.steps, other.guidance_scale, other.render_size) == (20, None, 256)


@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-pixart"])
def test_build_with_another_pipeline_family(reference, tmp_path, name):
    from cifake_hub.schema import TINY_MODEL_IDS

    tar, _, _ = reference
    out = tmp_path / name
    cmd = _build_cmd(
        out, tar, "--per-class-train", "1", "--per-class-test", "1", generators=(name,)
    )
    subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    rows = _rows(out)
    fakes = [r for split in rows.values() for r in split if r["label"] == 0]
    assert len(fakes) == 20
    assert {(r["model_id"], r["steps"], r["render_size"]) for r in fakes} == {
        (TINY_MODEL_IDS[name], 2, 64)
    }
    from cifake_hub.cards.dataset_card import render_dataset_card

    card = str(render_dataset_card(out))
    assert f"`{TINY_MODEL_IDS[name]}`): they are noise" in card
