from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from cifake_hub.cli.main import main
from cifake_hub.errors import ConfigError
from cifake_hub.study import detectors
from tests import factories

NAMES = ["tiny-random-sd", "tiny-random-sdxl"]


@pytest.fixture(scope="module")
def study(mixed_build, tmp_path_factory):
    """`cifake study` (the paper's topology, 2 epochs) on a copy of the two-generator build."""
    _, built = mixed_build
    root = tmp_path_factory.mktemp("study")
    dataset = root / "cifake"
    shutil.copytree(built, dataset)
    out = root / "study"
    assert main(["study", str(dataset), "--out", str(out), "--epochs", "2"]) == 0
    return dataset, out


def test_study_writes_the_matrix_plot_and_cards(study):
    dataset, out = study
    with open(out / "matrix.csv") as f:
        lines = list(csv.DictReader(f))
    assert [(r["trained_on"], r["tested_on"], r["seen"]) for r in lines] == [
        (NAMES[0], NAMES[0], "True"),
        (NAMES[0], NAMES[1], "False"),
        (NAMES[1], NAMES[0], "False"),
        (NAMES[1], NAMES[1], "True"),
    ]
    # Every generator's 10 FAKE test images (1 per class) against 10 REAL ones.
    assert {(r["fake_rows"], r["real_rows"]) for r in lines} == {("10", "10")}
    assert all(0 <= float(r["accuracy"]) <= 1 for r in lines)
    assert (out / "matrix.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "study.json").read_text())
    # Each detector saw its generator's FAKE train images and as many REAL ones.
    assert [(d["trained_on"], d["train_rows"]) for d in record["detectors"]] == [
        ([NAMES[0]], 40),
        ([NAMES[1]], 20),
    ]
    seen = [float(r["accuracy"]) for r in lines if r["seen"] == "True"]
    assert record["summary"]["seen_accuracy"] == pytest.approx(sum(seen) / 2)
    table = "| trained on | tested on `tiny-random-sd` | tested on `tiny-random-sdxl` |"
    assert table in (out / "README.md").read_text()
    assert table in (dataset / "README.md").read_text()
    for det in record["detectors"]:
        card = (out / det["run"] / "README.md").read_text()
        assert table in card and f"this model is the one trained on {det['trained_on'][0]}" in card
        assert (out / det["run"] / "study_matrix.png").exists()
    # The dataset card keeps what load_dataset needs.
    import datasets

    assert datasets.load_dataset(str(dataset))["test"].features["generator"].names == NAMES


def test_study_resumes_without_training_again(study, capsys):
    dataset, out = study
    before = (out / "matrix.csv").read_text()
    assert main(["study", str(dataset), "--out", str(out), "--epochs", "2"]) == 0
    assert capsys.readouterr().err.count("trained already") == 2
    assert (out / "matrix.csv").read_text() == before


def test_evaluate_breaks_down_by_generator(study, tmp_path):
    dataset, out = study
    run = out / "runs" / "only-0-tiny-random-sd"
    args = ["evaluate", str(run), "--dataset", str(dataset), "--conditions", "clean"]
    assert main([*args, "--bootstrap", "0", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert sorted(report["per_generator"]) == NAMES
    assert {g["fake_rows"] for g in report["per_generator"].values()} == {10}


def test_study_needs_two_generators(tmp_path, capsys):
    tar = factories.make_cifar_tar(tmp_path / "cifar.tar.gz").path
    one = tmp_path / "one"
    cmd = factories.build_cmd(
        one, tar, "--per-class-train", "1", "--per-class-test", "1", generators=("tiny",)
    )
    subprocess.run(cmd, check=True, capture_output=True, env=factories.BUILD_ENV)
    assert main(["study", str(one), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "a study needs two or more" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_leave_one_generator_out_detectors():
    assert [(d.trained_on, d.left_out) for d in detectors(("a", "b"))] == [
        ((0,), None),
        ((1,), None),
    ]
    three = detectors(("a", "b", "c/d"))
    assert [(d.name, d.trained_on, d.left_out) for d in three] == [
        ("only-0-a", (0,), None),
        ("only-1-b", (1,), None),
        ("only-2-c-d", (2,), None),
        ("without-0-a", (1, 2), 0),
        ("without-1-b", (0, 2), 1),
        ("without-2-c-d", (0, 1), 2),
    ]
    with pytest.raises(ConfigError, match="unknown detector 'vit'"):
        from cifake_hub.study import StudyConfig

        StudyConfig(dataset="x", out="y", recipe="vit")


@pytest.mark.slow
def test_three_architectures_from_build_to_study_offline(tmp_path):
    """SD 1.x, SDXL and PixArt (a diffusion transformer) in one build, then the study with
    leave-one-generator-out."""
    tar = factories.make_cifar_tar(tmp_path / "cifar.tar.gz", per_batch=30).path
    out = tmp_path / "three"
    three = ("tiny", "tiny-sdxl", "tiny-pixart")
    cmd = factories.build_cmd(out, tar, "--per-class-test", "3", generators=three)
    subprocess.run(cmd, check=True, capture_output=True, env=factories.BUILD_ENV)
    assert main(["study", str(out), "--out", str(tmp_path / "s"), "--epochs", "1"]) == 0
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    names = ["tiny-random-pixart", "tiny-random-sd", "tiny-random-sdxl"]
    assert record["generators"] == names
    left_out = [d["left_out"] for d in record["detectors"]]
    assert left_out == [None, None, None, *names]
    assert len(record["scores"]) == 6 * 3
    unseen = [s for s in record["scores"] if not s["seen"]]
    # Each "all but X" detector is unseen exactly on X; each single one on the other two.
    assert len(unseen) == 3 * 2 + 3
