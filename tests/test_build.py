from __future__ import annotations

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

BIN = Path(sys.executable).parent
# torchrun sets OMP_NUM_THREADS=1; CPU kernels round differently with other thread counts, so
# every build here uses one thread ("same hardware" includes the thread count).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _build_cmd(out: Path, tar: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "cifake"),
        "build",
        "--out",
        str(out),
        "--generator",
        "tiny",
        "--real",
        f"cifar-tar:{tar}",
        "--per-class-train",
        "2",
        "--per-class-test",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--unit-size",
        "1",
        *extra,
    ]


def _rows(out: Path) -> dict[str, list[dict]]:
    ds = datasets.load_dataset(str(out))
    return {s: list(d.cast_column("image", datasets.Image(decode=False))) for s, d in ds.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process build."""
    from tests.factories import make_cifar_tar

    root = tmp_path_factory.mktemp("build")
    tar = make_cifar_tar(root / "cifar.tar.gz").path
    out = root / "ref"
    subprocess.run(_build_cmd(out, tar), check=True, capture_output=True, env=ENV)
    return tar, out, _rows(out)


def test_build_counts_and_provenance(reference):
    _, _, rows = reference
    for split, per_class in (("train", 2), ("test", 1)):
        counts = Counter((r["label"], r["category"]) for r in rows[split])
        assert counts == {(label, c): per_class for label in (0, 1) for c in range(10)}
        for r in rows[split]:
            if r["label"] == 0:
                assert r["prompt"] == prompt_for(r["category"], r["source_index"])
                assert (
                    r["model_id"] == "tiny-random-sd" and r["steps"] == 2 and r["render_size"] == 64
                )
                assert r["seed"] is not None and r["scheduler"] == "EulerAncestralDiscreteScheduler"
                assert r["image"]["bytes"][:4] == b"\x89PNG"
            else:
                assert r["source"] == "cifar-tar" and r["prompt"] is None
    assert datasets.load_dataset(str(reference[1]))["train"].features["label"].names == [
        "FAKE",
        "REAL",
    ]


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
    done_before = {p.name for p in DatasetFolder(out).work_dir.glob("*.parquet")}
    assert 4 <= len(done_before) < 30
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


def test_units_are_disjoint_and_complete():
    cfg = BuildConfig(out="x", per_class_train=250, per_class_test=50, unit_size=100)
    jobs = [j for _, js in units(cfg) for j in js]
    assert len(jobs) == len(set(jobs)) == 10 * 300
    with pytest.raises(ConfigError, match="shard index 2"):
        BuildConfig(out="x", num_shards=2, shard_index=2)


@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-pixart"])
def test_build_with_another_pipeline_family(reference, tmp_path, name):
    from cifake_hub.schema import TINY_MODEL_IDS

    tar, _, _ = reference
    out = tmp_path / name
    cmd = _build_cmd(out, tar, "--per-class-train", "1", "--per-class-test", "1")
    cmd[cmd.index("--generator") + 1] = name
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
