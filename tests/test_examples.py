"""The examples in examples/ run on small data and do what they say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_keras_finetuning_improves_the_loss(small_run, small_cifake, tmp_path):
    out = tmp_path / "tuned.keras"
    result = _load("finetune_keras").main(
        [
            "--model",
            str(small_run),
            "--dataset",
            str(small_cifake),
            "--epochs",
            "3",
            "--learning-rate",
            "1e-3",
            "--out",
            str(out),
        ]
    )
    assert result["loss_after"] < result["loss_before"]
    assert out.exists()


def test_torch_dataset_example_trains(small_cifake):
    result = _load("torch_dataset").main(
        ["--dataset", str(small_cifake), "--epochs", "8", "--batch-size", "32"]
    )
    assert result["batches"] == 8 * 7  # 200 rows in batches of 32
    assert result["last_loss"] < result["first_loss"]
