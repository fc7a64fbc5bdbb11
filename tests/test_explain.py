from __future__ import annotations

import json
import shutil

import datasets
import numpy as np
import pytest

from cifake_hub.cli.main import main
from cifake_hub.errors import CifakeError
from cifake_hub.explain.run import ExplainConfig, explain_run


def test_explain_cli_writes_figure6_and_summary(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert main(["explain", str(run), "--n", "40"]) == 0
    out = run / "gradcam"
    assert (out / "figure6.png").stat().st_size > 10_000
    assert len(list((out / "gallery").glob("*.png"))) == 20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer"] == "conv_2" and summary["images"] == 40
    f = summary["faithfulness"]
    assert f["images"] == 40 and f["pixels_masked"] == 102
    # The cascading randomisation check ran for the method and the edge baseline.
    method, edges = summary["sanity"]["results"]
    assert method["method"] == "gradcam" and edges["method"] == "edges"
    assert method["steps"] == edges["steps"] == ["logit", "dense_1", "conv_2", "conv_1"]
    assert edges["spearman"] == [1.0] * 4 and not edges["passed"]
    assert (out / "sanity.png").stat().st_size > 5_000
    from cifake_hub.cards.model_card import render_model_card

    card = str(render_model_card(run))
    assert "cascading randomisation" in card
    # The paper's claim, measured on the correctly classified images.
    claim = summary["claim"]
    assert (
        claim["images"] + claim["left_out"]["misclassified"] >= 40 - claim["left_out"]["empty_map"]
    )
    assert claim["verdict"].split(":")[0] in ("holds", "does not hold", "undecided")
    assert claim["verdict"].split(":")[0] in card
    maps = np.load(out / "heatmaps.npz")
    assert maps["heatmaps"].shape == (40, 32, 32)
    # The sample is stratified: both labels, every class.
    assert set(maps["label"].tolist()) == {0, 1} and len(set(maps["category"].tolist())) == 10


def test_explain_all_layers_runs_road_for_every_method_and_layer(small_run, tmp_path):
    from cifake_hub.cards.gradcam_card import render_gradcam_card

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    argv = [
        "explain",
        str(run),
        "--n",
        "40",
        "--layer",
        "all",
        "--road-images",
        "20",
        "--no-sanity",
    ]
    assert main(argv) == 0
    summary = json.loads((run / "gradcam" / "summary.json").read_text())
    assert summary["layer"] == "conv_2"  # the maps drawn: the last convolution
    road = summary["road"]
    assert road["images"] == 20 and road["layers"] == ["conv_1", "conv_2"]
    names = {f"{m}@{layer}" for m in ("gradcam", "gradcam++", "hirescam", "layercam")
             for layer in ("conv_1", "conv_2")} | {"random", "edges"}  # fmt: skip
    assert set(road["curves"]) == names and road["best"] in names - {"random", "edges"}
    for curve in road["curves"].values():
        assert len(curve["morf"]) == len(curve["lerf"]) == 9
        assert all(0 <= p <= 1 for p in curve["morf"] + curve["lerf"])
    assert (run / "gradcam" / "road.png").stat().st_size > 10_000
    card = render_gradcam_card(run)
    assert "| random (baseline) |" in card and "`conv_1`, `conv_2`" in card


def test_explain_errors(small_run, small_cifake, tmp_path):
    with pytest.raises(CifakeError, match="no 'valid' split"):
        explain_run(small_run, ExplainConfig(dataset=str(small_cifake), split="valid"))
    with pytest.raises(CifakeError, match="model.keras does not exist"):
        explain_run(tmp_path, ExplainConfig(dataset=str(small_cifake)))


def test_explain_validation_uses_the_runs_held_out_rows(small_run, small_cifake, tmp_path):
    from cifake_hub.training.data import carve

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    summary = explain_run(run, ExplainConfig(dataset=str(small_cifake), split="validation", n=10))
    assert summary.split == "validation"
    rows = np.load(run / "gradcam" / "heatmaps.npz")["row"]
    ds = datasets.load_dataset(str(small_cifake))["train"]
    cfg = json.loads((run / "run_config.json").read_text())
    _, held = carve(
        np.array(ds["label"][:]),
        np.array(ds["category"][:]),
        cfg["val_fraction"],
        cfg["max_train"],
        cfg["seed"],
    )
    assert len(rows) == 10 and set(rows.tolist()) <= set(held.tolist())
