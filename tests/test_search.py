from __future__ import annotations

import json

import numpy as np
import pytest

from cifake_hub.cli.main import main
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.outputs import claim
from cifake_hub.training.run_folder import RunFolder
from cifake_hub.training.search import Progress, SearchConfig, run_search
from cifake_hub.training.topology import Topology, stage1

FAST = dict(epochs=1, batch_size=32, patience=0)


class Recorder(Progress):
    """Records what was trained and what was skipped; can stop the search after N trainings."""

    def __init__(self, stop_after: int | None = None):
        self.trained: list[str] = []
        self.skipped: list[str] = []
        self.stop_after = stop_after

    def topology_ended(self, result, skipped):
        (self.skipped if skipped else self.trained).append(result.topology)
        if self.stop_after is not None and len(self.trained) >= self.stop_after:
            raise KeyboardInterrupt  # what Ctrl-C does mid-search


def test_stage1_then_interrupted_stage2_resumes(small_cifake, tmp_path):
    run = tmp_path / "run"
    cfg = SearchConfig(stage="1", **FAST)
    rec = Recorder()
    out = run_search(small_cifake, run, cfg, rec)
    assert sorted(rec.trained) == sorted(t.name for t in stage1())
    winner = min(out.results, key=lambda r: r.validation["loss"])
    assert out.best.topology == winner.topology
    assert (run / "models" / "stage1_best.keras").exists() and (run / "model.keras").exists()
    tables = (run / "tables" / "table_03_conv_loss.md").read_text()
    assert f"{winner.validation['loss']:.3f}" in tables

    # Stage 2, stopped after two topologies, then resumed: nothing is trained twice.
    cfg2 = SearchConfig(stage="2", **FAST)
    with pytest.raises(CifakeError, match="other settings"):
        run_search(small_cifake, run, cfg2, Recorder())
    run2 = claim(tmp_path / "run2", RunFolder.KIND)
    (run2 / "models").mkdir(parents=True)
    for name in (RunFolder.RESULTS,):
        (run2 / name).write_text((run / name).read_text())
    first = Recorder(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_search(small_cifake, run2, cfg2, first)
    results = RunFolder(run2).results()
    stage2_done = [r for r in results if r.stage == 2]
    assert [r.topology for r in stage2_done] == first.trained
    extractor = Topology.parse(winner.topology)
    assert all(Topology.parse(r.topology).extractor == extractor for r in stage2_done)

    # The resumed run would train the 22 others; stop it after one to keep the test fast.
    second = Recorder(stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_search(small_cifake, run2, cfg2, second)
    assert not set(second.trained) & set(first.trained)
    names = [r.topology for r in RunFolder(run2).results()]
    assert len(names) == len(set(names)) == 12 + 3


def test_single_topology_outputs(small_cifake, tmp_path):
    run = tmp_path / "one"
    assert (
        main(
            [
                "search",
                str(small_cifake),
                "--out",
                str(run),
                "--topology",
                "conv=16x1,dense=32x1",
                "--epochs",
                "2",
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    (result,) = RunFolder(run).results()
    assert result.topology == "conv=16x1,dense=32x1" and result.epochs_run == 2
    assert set(result.validation) >= {
        "loss",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "average_precision",
    }
    assert result.params > 0 and result.train_seconds > 0
    test = json.loads((run / "test_results.json").read_text())
    assert test["final"]["topology"] == "conv=16x1,dense=32x1"
    assert "validation split" in test["selection"]
    for name in (
        "plots/training_curves.png",
        "plots/confusion_matrix.png",
        "tables/tables.md",
        "run_config.json",
        "model.keras",
    ):
        assert (run / name).exists(), name

    import keras

    model = keras.saving.load_model(run / "model.keras")
    x = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    assert model.predict(x, verbose=0).shape == (2, 1)
    cfg = json.loads((run / "run_config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["optimizer"] == "adam" and cfg["padding"] == "same"


def test_select_on_test_is_recorded(small_cifake, tmp_path):
    run = tmp_path / "paper"
    out = run_search(
        small_cifake, run, SearchConfig(topology="conv=16x1", select_on="test", **FAST)
    )
    (result,) = out.results
    assert result.selected_on == "test" and result.test is not None
    assert "TEST split" in out.test.selection


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"val_fraction": 1.5}, "validation fraction"),
        ({"optimizer": "adamw2"}, "optimizer"),
        ({"topology": "conv=3"}, "cannot parse topology"),
        ({"select_on": "train"}, "select-on"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**kwargs)
