"""The `general` recipe: the NPR residual as input, balanced epochs, a FAKE family held out of
training to choose the epoch on; the leave-one-family-out study with it; shipping it. On a
tiny mixed build: the random-weight SD pipeline plus two zoo families (tiny presets) and one
family's aligned twins."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from cifake_hub.cli.main import main
from cifake_hub.schema import FAKE, REAL
from cifake_hub.training.data import Arrays
from cifake_hub.training.recipes import RECIPES, build_recipe_model
from cifake_hub.training.train import epoch_rows
from tests import factories

SD = "tiny-random-sd"


@pytest.fixture(scope="module")
def general_mix(zoo, tmp_path_factory):
    """A build of 8 train and 4 test images per class and label; each class's FAKE images are
    shared by the tiny SD pipeline, the DCGAN, the VAE and the VAE's aligned twins."""
    root = tmp_path_factory.mktemp("general")
    tar = factories.make_cifar_tar(root / "cifar.tar.gz", per_batch=40).path
    gens = ("tiny", str(zoo / "dcgan"), str(zoo / "vae"), f"aligned:{zoo / 'vae'}")
    out = root / "mix"
    extra = ("--per-class-train", "8", "--per-class-test", "4")
    cmd = factories.build_cmd(out, tar, *extra, generators=gens)
    subprocess.run(cmd, check=True, capture_output=True, env=factories.BUILD_ENV)
    return out


def rows(folder):
    return [
        {**r, "split": p.name.split("-")[0]}
        for p in sorted((folder / "data").glob("*.parquet"))
        for r in pq.read_table(p, columns=["label", "generator"]).to_pylist()
    ]


def generator_names(folder):
    import datasets

    return datasets.load_dataset(str(folder))["train"].features["generator"].names


def test_npr_residual_is_zero_on_the_kept_grid_and_the_model_loads_back(tmp_path):
    from cifake_hub.training.backend import import_keras

    keras = import_keras()
    model = build_recipe_model(RECIPES["general"], augment=False)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    npr = keras.Model(model.input, model.get_layer("npr").output).predict(x, verbose=0)
    scaled = x.astype(np.float32) / 255
    # The first view is the image itself: its residual is 0 at every cell's top-left pixel
    # and the difference to it elsewhere.
    assert np.allclose(npr[:3, ::2, ::2], 0)
    assert np.allclose(npr[:3, 1::2, 1::2], scaled[:, 1::2, 1::2] - scaled[:, ::2, ::2], atol=1e-6)
    assert model.get_layer("conv_1_1").input.shape[-1] == 6  # pixels and residual side by side
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert np.allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_balanced_epochs_share_fake_rows_equally_and_use_every_row_before_repeating():
    y = np.array([REAL] * 30 + [FAKE] * 50 + [FAKE] * 5)
    generator = np.array([-1] * 30 + [0] * 50 + [1] * 5)
    train = Arrays(np.zeros((85, 32, 32, 3), np.uint8), y, np.zeros(85, np.int64), generator)
    epochs = [epoch_rows(train, True, seed=3, epoch=e) for e in range(4)]
    for rows in epochs:
        assert len(rows) == 60 and sorted(rows[y[rows] == REAL]) == list(range(30))
        assert (generator[rows] == 0).sum() == (generator[rows] == 1).sum() == 15
    assert np.array_equal(epoch_rows(train, True, seed=3, epoch=2), epochs[2])
    # Generator 0's 50 rows, 15 an epoch: no repeat in the first three epochs, all by the 4th.
    drawn = [rows[generator[rows] == 0] for rows in epochs]
    assert len(set(np.concatenate(drawn[:3]).tolist())) == 45
    assert set(np.concatenate(drawn).tolist()) == set(range(30, 80))
    assert sorted(epoch_rows(train, False, seed=3, epoch=0)) == list(range(85))


def test_a_family_below_chance_at_every_epoch_is_said_so():
    from cifake_hub.training.train import HeldOut, TrainState, selection_record

    rows = Arrays(
        np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 0, 1, 1]), np.zeros(4), -np.ones(4)
    )
    held = HeldOut("dcgan", ("dcgan",), "given (--hold-out)", rows)
    for aucs, warned in (([0.41, 0.48, 0.44], True), ([0.41, 0.62, 0.44], False)):
        state = TrainState(epochs_done=3, history={"held_out_auc": aucs})
        state.best_epoch, state.best_selection_auc = 2, max(aucs)
        record = selection_record(held, state)
        assert record["below_chance"] is warned and ("below chance" in record["why"]) is warned
        assert record["kept_epoch"] == 2 and record["fake_rows"] == record["real_rows"] == 2


def test_bring_one_generators_fake_rows_of_a_cifake_dataset(general_mix, tmp_path):
    names = generator_names(general_mix)
    source = [r for r in rows(general_mix) if r["label"] == FAKE and r["generator"] == 1]
    out = tmp_path / "brought"
    tar = factories.make_cifar_tar(tmp_path / "cifar.tar.gz").path
    cmd = factories.build_cmd(out, tar, "--fake", f"cifake:{general_mix}:{names[1]}@copy",
                              "--per-class-train", "0", "--per-class-test", "0",
                              generators=())  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=factories.BUILD_ENV)
    assert result.returncode == 0, result.stderr
    fake = [r for r in rows(out) if r["label"] == FAKE]
    # The source has a test split: every row keeps its split.
    assert sorted(r["split"] for r in fake) == sorted(r["split"] for r in source)
    bad = factories.build_cmd(tmp_path / "x", tar, "--fake", f"cifake:{general_mix}:nope@n",
                              "--per-class-train", "0", "--per-class-test", "0",
                              generators=())  # fmt: skip
    result = subprocess.run(bad, capture_output=True, text=True, env=factories.BUILD_ENV)
    assert result.returncode == 1 and "no generator 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_general_holds_a_family_out_ships_and_predicts(general_mix, tmp_path, monkeypatch):
    from cifake_hub import load_detector, ship, shipped

    run = tmp_path / "run"
    assert main(["train", str(general_mix), "--out", str(run), "--recipe", "general",
                 "--epochs", "2"]) == 0  # fmt: skip
    result = json.loads((run / "recipe_result.json").read_text())
    chosen = result["selection"]
    names = generator_names(general_mix)
    # Not the VAE: with its twins it has twice the rows of either other family.
    assert chosen["family"] in (SD, "dcgan") and "fewest" in chosen["chosen"]
    assert chosen["generators"] == [chosen["family"]]
    aucs = result["history"]["held_out_auc"]
    assert len(aucs) == 2 and chosen["kept_auc"] == max(aucs)
    assert chosen["kept_epoch"] == 1 + aucs.index(max(aucs)) == result["best_epoch"]
    assert json.loads((run / "run_config.json").read_text())["hold_out"] == chosen["family"]
    # The family's rows are in neither training nor validation.
    index = names.index(chosen["family"])
    train = [r for r in rows(general_mix) if r["split"] == "train"]
    family_rows = sum(r["generator"] == index for r in train)
    assert result["train_images"] + result["validation_images"] == len(train) - family_rows
    v = result["validation"]
    real_in_training = sum(r["label"] == REAL for r in train) - (v["tp"] + v["fn"])
    assert result["epoch_images"] == 2 * real_in_training  # REAL once, as many FAKE
    assert chosen["family"] in json.loads((run / "test_results.json").read_text())["selection"]
    assert main(["card", "model", str(run)]) == 0
    model_card = (run / "README.md").read_text()
    assert "epoch kept (best on a held-out family)" in model_card and chosen["why"] in model_card
    # The record of what it trained on leaves the held-out family out too.
    from cifake_hub.training.data import load_splits, to_arrays
    from cifake_hub.training.leakage import record_from_dataset, seen_in_training

    hashes = np.load(record_from_dataset(run, general_mix))
    arrays = to_arrays(load_splits(general_mix)["train"])
    seen = seen_in_training(hashes, arrays.x)
    assert not seen[arrays.generator == index].any() and seen.sum() >= result["train_images"]

    monkeypatch.setattr(shipped, "FOLDER", tmp_path / "package" / "detectors")
    folder = ship.ship_detector(run, "general", "cifake train mixed --recipe general")
    card = (folder / "README.md").read_text()
    assert "# Shipped detector `general`" in card and chosen["why"] in card
    image = tmp_path / "a.png"
    image.write_bytes(factories.png_bytes(np.zeros((32, 32, 3), np.uint8)))
    out = tmp_path / "p.json"
    assert main(["predict", str(image), "--model", "general", "--output", str(out)]) == 0
    predicted = json.loads(out.read_text())["predictions"][0]["probability_real"]
    model = load_detector("general")
    assert model.name == "cifake_general"  # the shipped copy, not another detector
    prob = float(model.predict(np.zeros((1, 32, 32, 3), np.uint8), verbose=0)[0, 0])
    assert predicted == pytest.approx(prob, abs=1e-5)
    # Grad-CAM takes the six-channel, view-averaged model apart like any other.
    from cifake_hub.explain.gradcam import gradcam

    assert gradcam(model, np.zeros((2, 32, 32, 3), np.uint8)).heatmaps.shape == (2, 32, 32)


def test_study_leaves_one_family_out_and_chooses_the_epoch_on_another(general_mix, tmp_path):
    dataset = tmp_path / "mix"
    shutil.copytree(general_mix, dataset)
    out = tmp_path / "study"
    assert main(["study", str(dataset), "--out", str(out), "--recipe", "general",
                 "--epochs", "1"]) == 0  # fmt: skip
    record = json.loads((out / "study.json").read_text())
    names = generator_names(general_mix)
    family = {n: n.removeprefix("aligned:") for n in names}
    dets = record["detectors"]
    assert sorted(d["left_out"] for d in dets) == sorted({"dcgan", "vae", SD})
    for det in dets:
        assert det["selected_on"] not in (None, det["left_out"])
        roles = {
            s["tested_on"]: s["role"] for s in record["scores"] if s["detector"] == det["name"]
        }
        for name, role in roles.items():
            expected = {det["left_out"]: "unseen", det["selected_on"]: "selection"}
            assert role == expected.get(family[name], "trained")
            assert (name in det["trained_on"]) == (role == "trained")
    scored = [s for s in record["scores"] if s["roc_auc"] is not None]
    assert all(s["roc_auc_low"] <= s["roc_auc"] <= s["roc_auc_high"] for s in scored)
    readme = (out / "README.md").read_text()
    assert "### Leave one family out" in readme and "epoch chosen on" in readme


def test_general_refuses_what_it_cannot_hold_out(general_mix, mixed_build, tmp_path, capsys):
    args = ["train", str(general_mix), "--out", str(tmp_path / "r"), "--recipe", "general"]
    assert main([*args, "--hold-out", "nope"]) == 1
    err = capsys.readouterr().err
    assert "--hold-out 'nope'" in err and "dcgan" in err and "Traceback" not in err
    _, two = mixed_build  # two SD architectures: two families
    study = ["study", str(two), "--out", str(tmp_path / "s"), "--recipe", "general"]
    assert main(study) == 1
    assert "three generator families or more" in capsys.readouterr().err
