"""The detectors shipped in the package: they load by name, from a built wheel too, predict,
carry an honest card, and `cifake predict` uses ``robust`` unless told otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import cifake_hub
from cifake_hub.cli.main import main
from cifake_hub.explain.summary import GradcamSummary
from cifake_hub.shipped import DEFAULT_DETECTOR, DETECTORS, shipped_folder
from cifake_hub.training.models import resolve_model
from cifake_hub.training.run_folder import RunFolder
from tests import factories

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", DETECTORS)
def test_each_shipped_detector_loads_predicts_and_has_a_card(name):
    model = cifake_hub.load_detector(name)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    prob = model.predict(x, verbose=0)
    assert prob.shape == (4, 1) and np.all((prob >= 0) & (prob <= 1))
    card = (shipped_folder(name) / "README.md").read_text()
    assert f"# Shipped detector `{name}`" in card
    # `general` trained on several generators' fakes, the others on CIFAKE's alone.
    seen = "a mixed dataset of several FAKE generators" if name == "general" else (
        "the Kaggle CIFAKE train split only")  # fmt: skip
    assert seen in card and "## Limits" in card
    assert "`blur:1.0`" in card  # the evaluate conditions, measured on validation
    assert "```bash\ncifake " in card  # the command that retrains it


def test_a_folder_named_like_a_detector_wins(small_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model(DEFAULT_DETECTOR) == shipped_folder(DEFAULT_DETECTOR) / "model.keras"
    shutil.copytree(small_run, tmp_path / DEFAULT_DETECTOR)
    assert resolve_model(DEFAULT_DETECTOR) == RunFolder(DEFAULT_DETECTOR).model


def test_predict_defaults_to_general_and_says_so(tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(factories.png_bytes(np.zeros((32, 32, 3), np.uint8)))
    out = tmp_path / "p.json"
    assert main(["predict", str(image), "--output", str(out)]) == 0
    assert "the shipped 'general' detector" in capsys.readouterr().err
    by_default = out.read_text()
    assert main(["predict", str(image), "--output", str(out), "--model", "general"]) == 0
    assert out.read_text() == by_default


def test_shipped_detectors_load_from_a_built_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("cifake_hub-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in DETECTORS:
            assert f"cifake_hub/detectors/{name}/model.keras" in names
            assert f"cifake_hub/detectors/{name}/README.md" in names
        zf.extractall(site)
    code = (
        "import numpy as np, cifake_hub; "
        "m = cifake_hub.load_detector('robust'); "
        "p = m.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0); "
        "print(cifake_hub.__file__, p.shape)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(str(site)) and "(2, 1)" in done.stdout


def test_explain_evaluate_and_publish_take_a_shipped_name(small_cifake, tmp_path):
    from cifake_hub.hub.publish import PublishConfig, dry_run

    folder = shipped_folder("paper")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    ds = str(small_cifake)
    # The package's files are never written: a run folder is made for explain, --out for
    # evaluate.
    assert main(["explain", "paper", "--dataset", ds, "--split", "test", "--n", "20"]) == 1
    out = tmp_path / "paper-run"
    argv = ["explain", "paper", "--out", str(out), "--dataset", ds, "--split", "test",
            "--n", "20", "--road-images", "10", "--no-sanity"]  # fmt: skip
    assert main(argv) == 0
    summary = GradcamSummary.of_run(RunFolder(out))
    assert summary is not None and summary.images == 20 and summary.road is not None
    assert main(["evaluate", "paper", "--dataset", ds, "--conditions", "clean"]) == 1
    argv = ["evaluate", "paper", "--dataset", ds, "--conditions", "clean,jpeg:50",
            "--bootstrap", "0", "--out", str(tmp_path / "evaluation")]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "evaluation" / "evaluation.json").exists()
    cfg = PublishConfig(dataset=ds, dataset_repo="u/d", run="paper", model_repo="u/m")
    trees = dry_run(cfg, tmp_path / "publish")
    assert {"model.keras", "README.md", "evaluation/robustness.png"} <= set(trees["model"])
    card = (tmp_path / "publish" / "model" / "README.md").read_text()
    assert "conv=32x2,dense=64x1" in card and "## Robustness and calibration" in card
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_main_job_can_explain_and_publish_a_shipped_detector(tmp_path):
    from cifake_hub.demo import JobConfig, run_job

    result = run_job(tmp_path / "job", JobConfig(detector="paper", explain_n=20), lambda _: None)
    assert result.run.name == "run-paper" and result.model.exists()
    assert RunFolder(result.run).gradcam_summary() is not None
    assert "conv=32x2,dense=64x1" in result.model_card.read_text()
    assert (Path(result.published) / "model" / "model.keras").exists()
    assert not (shipped_folder("paper") / "gradcam").exists()  # the package is not written


def test_ship_detector_replaces_the_folder_whole(small_run, tmp_path, monkeypatch):
    from cifake_hub import ship
    from cifake_hub.training.backend import import_keras

    target = tmp_path / "detectors" / "paper"
    monkeypatch.setattr(ship, "shipped_folder", lambda name: target)
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("from an earlier ship")
    assert ship.ship_detector(small_run, "paper", "cifake search ...") == target
    assert not (target / "stale.txt").exists()  # replaced whole, not merged
    assert sorted(p.name for p in target.parent.iterdir()) == ["paper"]  # no staging left
    assert "cifake search ..." in (target / "README.md").read_text()
    model = import_keras().saving.load_model(target / "model.keras")
    assert model.predict(np.zeros((1, 32, 32, 3), np.uint8), verbose=0).shape == (1, 1)
    assert getattr(model, "optimizer", None) is None  # weights and architecture only
