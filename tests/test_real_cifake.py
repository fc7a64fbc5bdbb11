"""Checks on the real Kaggle CIFAKE train zip (opt-in: pytest -m slow; needs the zip)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import datasets
import pytest

from cifake_hub.builders.kaggle import ImportConfig, import_kaggle

REAL_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifake-train.zip"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_ZIP.exists(), reason=f"needs {REAL_ZIP}"),
]


def test_import_real_train_zip(tmp_path):
    out = tmp_path / "cifake"
    result = import_kaggle(ImportConfig(src=str(REAL_ZIP), out=str(out)))
    assert result.report["rows_written"] == result.report["input_files"] == 100_000
    # Fresh process: features and counts as loaded by datasets.
    code = (
        "import datasets, collections, json;"
        "d = datasets.load_dataset('cifake')['train'];"
        "c = collections.Counter(zip(d['label'], d['category']));"
        "print(json.dumps([d.num_rows, repr(d.features['label']), repr(d.features['category']),"
        " sorted(set(c.values())), len(c)]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    rows, label, category, per_cell, cells = json.loads(res.stdout.strip().splitlines()[-1])
    assert rows == 100_000 and per_cell == [5_000] and cells == 20
    assert "FAKE" in label and "truck" in category
    # Every image's bytes equal the zip's.
    ds = datasets.load_dataset(str(out))["train"].cast_column("image", datasets.Image(decode=False))
    per_label: Counter[int] = Counter()
    with zipfile.ZipFile(REAL_ZIP) as z:
        for row in ds.select_columns(["image", "source_file", "label"]):
            assert row["image"]["bytes"] == z.read(row["source_file"])
            per_label[row["label"]] += 1
    assert per_label == {0: 50_000, 1: 50_000}
