from __future__ import annotations

import json

import datasets

from cifake_hub.cli.main import main


def test_demo_runs_the_chain_offline(tmp_path):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    ds = datasets.load_dataset(str(tmp_path / "cifake-sample"))
    assert ds["train"].num_rows == ds["test"].num_rows == 500
    run = tmp_path / "run"
    for name in ("model.keras", "README.md", "gradcam/figure6.png", "test_results.json"):
        assert (run / name).exists(), name
    assert "library_name: keras" in (run / "README.md").read_text()
    assert "dataset_info" in (tmp_path / "cifake-sample" / "README.md").read_text()
    assert json.loads((run / "test_results.json").read_text())["final"]["metrics"]["accuracy"] > 0.5
