"""`cifake evaluate`: condition definitions, calibration maths, leakage, breakdowns, the job."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sklearn import metrics as skm

from cifake_hub import degrade
from cifake_hub.errors import ConfigError
from cifake_hub.evaluate import calibration
from cifake_hub.evaluate.conditions import DEFAULT_CONDITIONS, parse_condition, parse_conditions
from cifake_hub.evaluate.run import label_metrics
from cifake_hub.schema import CLASS_NAMES
from tests import factories


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([factories.learnable_pixels(rng, i % 2) for i in range(n)])


def test_conditions_are_the_pillow_operations_they_name():
    x = _images()
    rows = np.arange(len(x))
    jpeg = parse_condition("jpeg:50").apply(x, rows)
    for image, got in zip(x, jpeg, strict=True):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=50)  # Pillow's defaults
        assert np.array_equal(np.asarray(Image.open(buf).convert("RGB")), got)
    blur = parse_condition("blur:1.0").apply(x, rows)
    assert np.array_equal(
        blur[0], np.asarray(Image.fromarray(x[0]).filter(ImageFilter.GaussianBlur(1.0)))
    )
    small = parse_condition("resize:16").apply(x, rows)
    down = Image.fromarray(x[1]).resize((16, 16), Image.Resampling.BILINEAR)
    assert np.array_equal(small[1], np.asarray(down.resize((32, 32), Image.Resampling.BILINEAR)))
    assert np.array_equal(parse_condition("clean").apply(x, rows), x)


def test_batched_jpeg_writes_the_lone_files_byte_for_byte():
    rng = np.random.default_rng(1)
    # Smooth fields, noise (long scans with many stuffed 0xFF bytes) and saturated colours.
    x = np.concatenate(
        [
            _images(4),
            rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
            np.where(rng.random((3, 32, 32, 1)) < 0.5, 255, 0).astype(np.uint8)
            * np.array([1, 0, 1], dtype=np.uint8),
        ]
    )
    for quality in (95, 50, 10):
        lone = []
        for image in x:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
            lone.append(buf.getvalue())
        # chunk=4: the last chunk is partial, and one image per chunk works too.
        assert degrade.jpeg_streams(x, quality, chunk=4) == lone
        assert degrade.jpeg_streams(x[:1], quality, chunk=1) == lone[:1]
        expect = np.stack([degrade.jpeg(image, quality) for image in x])
        assert np.array_equal(degrade.jpeg_batch(x, quality), expect)
    assert degrade.jpeg_streams(x[:0], 50) == []


def test_batched_resize_and_blur_are_the_per_image_operations():
    x = np.concatenate([_images(5), np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3))])
    x = x.astype(np.uint8)
    for size in (31, 24, 16, 7, 1):
        expect = np.stack([degrade.down_up(image, size) for image in x])
        assert np.array_equal(degrade.down_up_batch(x, size), expect)
    for radius in (0.3, 0.5, 1.0, 2.5, 40):
        expect = np.stack([degrade.blur(image, radius) for image in x])
        assert np.array_equal(degrade.blur_batch(x, radius), expect)
    assert degrade.blur_batch(x[:0], 1.0).shape == (0, 32, 32, 3)


def test_noise_is_reproducible_per_row_whatever_the_batch():
    x = _images(8)
    noise = parse_condition("noise:4", seed=3)
    whole = noise.apply(x, np.arange(8))
    part = noise.apply(x[5:], np.arange(5, 8))
    assert np.array_equal(whole[5:], part)
    assert not np.array_equal(whole, x) and whole.dtype == np.uint8
    diff = whole.astype(int) - x.astype(int)
    assert 2.5 < diff.std() < 5.5  # std 4, rounded and clipped
    other = parse_condition("noise:4", seed=4).apply(x, np.arange(8))
    assert not np.array_equal(whole, other)
    # Parsed together, the levels share their draws and give what each gives alone.
    together = parse_conditions(["noise:8", "noise:4", "noise:2"], seed=3)
    rows = np.arange(8)
    for condition in [together[3], together[1], together[2], together[2]]:
        alone = parse_condition(condition.name, seed=3).apply(x, rows)
        assert np.array_equal(condition.apply(x, rows), alone)
    assert np.array_equal(together[2].apply(x[5:], rows[5:]), whole[5:])


def test_bad_and_custom_conditions(tmp_path):
    for spec, message in [
        ("jpeg:101", "jpeg:Q, Q an integer in 1..100"),
        ("blur", r"blur:R, R in \(0, 8\]"),
        ("sharpen:2", "unknown condition 'sharpen:2'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_condition(spec)
    path = tmp_path / "conditions.txt"
    path.write_text("# mine\ninvert = tests.test_evaluate:invert\njpeg:75\n")
    conditions = parse_conditions([str(path)])
    assert [c.name for c in conditions] == ["clean", "invert", "jpeg:75"]
    x = _images(2)
    assert np.array_equal(conditions[1].apply(x, np.arange(2)), 255 - x)
    path.write_text("broken = tests.test_evaluate:nothing_here\n")
    with pytest.raises(ConfigError, match=r"conditions.txt:1: cannot import"):
        parse_conditions([str(path)])
    assert len(parse_conditions(list(DEFAULT_CONDITIONS))) == 13


def invert(images: np.ndarray) -> np.ndarray:
    return 255 - images


def test_label_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.35 + rng.random(400) * 0.65, 0, 1)
    m = label_metrics(y, p)
    pred = (p >= 0.5).astype(int)
    assert m["recall_fake"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["recall_real"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))


def test_ece_on_a_constructed_case():
    # Ten predictions at 0.8 (REAL), six right: one bin, |0.6 - 0.8| = 0.2; plus ten at 0.05
    # (FAKE, confidence 0.95), all right: |1.0 - 0.95| = 0.05. ECE = 0.5 * 0.2 + 0.5 * 0.05.
    prob = np.array([0.8] * 10 + [0.05] * 10)
    y = np.array([1] * 6 + [0] * 4 + [0] * 10)
    rel = calibration.reliability(y, prob)
    assert rel.ece == pytest.approx(0.125)
    assert sum(rel.count) == 20 and len(rel.count) == calibration.ECE_BINS
    assert calibration.brier(y, prob) == pytest.approx(np.mean((prob - y) ** 2))


def test_temperature_scaling_lowers_nll_of_an_overconfident_model():
    rng = np.random.default_rng(2)
    true_logit = rng.normal(0, 2, 6000)
    y = (rng.random(6000) < calibration.sigmoid(true_logit)).astype(int)  # calibrated at T=1
    overconfident = calibration.sigmoid(4 * true_logit)
    t = calibration.fit_temperature(y, overconfident)
    assert 3 < t < 5
    after = calibration.scale(overconfident, t)
    assert calibration.nll(y, after) < calibration.nll(y, overconfident) - 0.1
    assert calibration.reliability(y, after).ece < calibration.reliability(y, overconfident).ece


def test_threshold_and_bootstrap():
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(300, int), np.ones(300, int)]
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, 600), 0, 1)  # REAL shifted up
    t = calibration.best_threshold(y, p)
    grid = np.linspace(0.01, 0.99, 99)
    balanced = [((p >= g)[y == 1].mean() + (p < g)[y == 0].mean()) / 2 for g in grid]
    mine = ((p >= t)[y == 1].mean() + (p < t)[y == 0].mean()) / 2
    assert mine >= max(balanced) - 1e-9
    first = calibration.bootstrap(y, p, resamples=300, seed=1)
    assert first == calibration.bootstrap(y, p, resamples=300, seed=1)
    low, high = first["roc_auc"]
    assert low < skm.roc_auc_score(y, p) < high
    low, high = first["accuracy"]
    assert low < np.mean((p >= 0.5) == (y == 1)) < high


def _dataset_with_leaks_and_two_generators(out, rng):
    """Train/test rows; 3 test FAKE rows are pixel copies of train rows; FAKE test rows come
    from two generators."""
    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.schema import make_row

    train_pngs = []
    with DatasetFolderWriter(out) as w:
        for c in range(10):
            for label in (0, 1):
                for _ in range(4):
                    png = factories.png_bytes(factories.learnable_pixels(rng, label))
                    train_pngs.append((png, label))
                    w.add("train", make_row(png, label, c))
        for i in range(40):
            label = i % 2
            png = factories.png_bytes(factories.learnable_pixels(rng, label))
            if i in (0, 2, 4):  # planted copies of train FAKE rows
                png = next(p for p, lab in train_pngs[i * 8 :] if lab == 0)
            gen = None if label else ("gen-a" if i % 4 == 0 else "gen-b")
            w.add("test", make_row(png, label, i % 10, model_id=gen))
        w.close()
    return out


def test_evaluate_end_to_end(small_run, tmp_path):
    from cifake_hub.evaluate.run import EvaluateConfig, evaluate_model
    from cifake_hub.training.backend import import_keras
    from cifake_hub.training.run_folder import RunFolder

    data = _dataset_with_leaks_and_two_generators(tmp_path / "ds", np.random.default_rng(5))
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    cfg = EvaluateConfig(
        dataset=str(data), conditions="clean,jpeg:50,noise:4", bootstrap=100, calibrate=True
    )
    result = evaluate_model(run, cfg)
    report = RunFolder(run).evaluation()
    assert report == json.loads(json.dumps(result.report))
    assert list(report["conditions"]) == ["clean", "jpeg:50", "noise:4"]
    assert report["leakage"]["rows_also_in_train"] == 3
    assert report["leakage"]["by_label"] == {"FAKE": 3, "REAL": 0}
    assert (
        report["conditions"]["clean"]["metrics_without_leaked"]["tp"]
        + report["conditions"]["clean"]["metrics_without_leaked"]["fn"]
        == 20
    )
    assert set(report["per_generator"]) == {"gen-a", "gen-b"}
    assert report["per_generator"]["gen-a"]["fake_rows"] == 10
    assert set(report["per_class"]) == set(CLASS_NAMES)
    for name in ("robustness.png", "reliability.png", "per_class.png"):
        assert (result.out / name).stat().st_size > 5_000
    # The calibrated copy divides the logit by T and still explains with Grad-CAM.
    keras = import_keras()
    x = _images(8)
    base = keras.saving.load_model(RunFolder(run).model).predict(x, verbose=0)[:, 0]
    calibrated = keras.saving.load_model(result.out / "model_calibrated.keras")
    got = calibrated.predict(x, verbose=0)[:, 0]
    t = report["calibration"]["temperature"]
    np.testing.assert_allclose(got, calibration.scale(base, t), atol=2e-5)
    from cifake_hub.explain.gradcam import gradcam

    assert gradcam(calibrated, x).heatmaps.shape == (8, 32, 32)


def test_model_card_and_publish_carry_the_evaluation(small_cifake, small_run, tmp_path):
    from cifake_hub.cards.model_card import render_model_card
    from cifake_hub.evaluate.run import EvaluateConfig, evaluate_model
    from cifake_hub.hub.publish import PublishConfig, dry_run

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    evaluate_model(run, EvaluateConfig(conditions="clean,blur:1.0", bootstrap=0))
    card = render_model_card(run, repo_id="u/m", dataset_repo="u/d")
    text = str(card)
    assert "## Robustness and calibration" in text and "`blur:1.0`" in text
    configs = {r.dataset_config for r in card.data.eval_results if r.dataset_config}
    assert configs == {"clean", "blur:1.0"}
    cfg = PublishConfig(
        dataset=str(small_cifake), dataset_repo="u/d", run=str(run), model_repo="u/m"
    )
    trees = dry_run(cfg, tmp_path / "publish")
    assert "evaluation/robustness.png" in trees["model"]
    published = json.loads((tmp_path / "publish/model/evaluation/evaluation.json").read_text())
    assert published["dataset"] == "u/d" and published["model"] == "u/m"


def test_evaluate_errors_are_one_line(small_run, small_cifake, tmp_path):
    import keras

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "cifake_hub.cli.main", "evaluate", *args],
            capture_output=True,
            text=True,
        )

    layers = [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
    keras.Sequential(layers).save(tmp_path / "two.keras")
    two = str(tmp_path / "two.keras")
    cases = [
        (cli(two, "--dataset", str(small_cifake), "--out", str(tmp_path / "e1"),
             "--conditions", "clean", "--bootstrap", "0"), "not a binary detector"),
        (cli(str(small_run), "--conditions", "clean,sepia:3"), "unknown condition 'sepia:3'"),
        (cli(two), "give --out"),
    ]  # fmt: skip
    for res, message in cases:
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert res.returncode == 1 and len(errors) == 1 and message in errors[0], res.stderr
        assert "Traceback" not in res.stderr
