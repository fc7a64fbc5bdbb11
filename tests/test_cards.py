from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import yaml
from huggingface_hub import DatasetCard, ModelCard

from cifake_hub.builders.kaggle import ImportConfig, import_kaggle
from cifake_hub.cards.dataset_card import render_dataset_card
from cifake_hub.cards.model_card import render_model_card
from cifake_hub.cli.main import main
from cifake_hub.images import jpeg_quality
from cifake_hub.schema import CLASS_NAMES
from tests import factories

EXPECTED = Path(__file__).parent / "fixtures" / "model_card_expected.md"


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_model_card_equals_reviewed_file(tmp_path):
    run = factories.make_fixture_run(tmp_path / "run")
    card = render_model_card(run, repo_id="user/cifake-cnn", dataset_repo="user/cifake")
    assert str(card) == EXPECTED.read_text()


def test_model_card_parses_and_carries_the_run_numbers(tmp_path):
    run = factories.make_fixture_run(tmp_path / "run")
    assert (
        main(
            [
                "card",
                "model",
                str(run),
                "--repo-id",
                "user/cifake-cnn",
                "--dataset-repo",
                "user/cifake",
            ]
        )
        == 0
    )
    text = (run / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["library_name"] == "keras" and meta["pipeline_tag"] == "image-classification"
    card = ModelCard.load(run / "README.md")
    assert ModelCard(str(card)).data.to_dict() == card.data.to_dict()  # round trip
    final = json.loads((run / "test_results.json").read_text())["final"]
    got = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert got == {
        k: round(final["metrics"][k], 4)
        for k in ("accuracy", "precision", "recall", "f1", "roc_auc")
    }
    assert all(r.dataset_split == "test" for r in card.data.eval_results)
    assert (run / "tables" / "tables.md").read_text() in text
    summary = json.loads((run / "gradcam" / "summary.json").read_text())["faithfulness"]
    assert (
        f"{summary['mean_drop_gradcam']:.3f}" in text
        and f"{summary['mean_drop_random']:.3f}" in text
    )
    cfg = json.loads((run / "run_config.json").read_text())
    assert (
        f"| epochs | {cfg['epochs']} |" in text and f"| batch_size | {cfg['batch_size']} |" in text
    )


def test_model_card_from_a_trained_run(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    card = render_model_card(run)
    test = json.loads((run / "test_results.json").read_text())["final"]["metrics"]
    assert f"{100 * test['accuracy']:.2f}%" in str(card)
    assert "conv=16x2,dense=32x1" in str(card) and "run `cifake explain RUN_DIR`" in str(card)
    assert str(small_run.parent) not in str(card)  # no local paths leak into a card


def test_dataset_card_parses_keeps_loading_yaml_and_counts(kaggle_zip, tmp_path):
    out = tmp_path / "cifake"
    import_kaggle(ImportConfig(src=str(kaggle_zip.path), out=str(out)))
    assert (
        main(["card", "dataset", str(out), "--repo-id", "user/cifake", "--model-repo", "user/cnn"])
        == 0
    )
    text = (out / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["license"] == "mit" and meta["task_categories"] == ["image-classification"]
    assert meta["size_categories"] == ["n<1K"] and "dataset_info" in meta and "configs" in meta
    card = DatasetCard.load(out / "README.md")
    assert DatasetCard(str(card)).data.to_dict() == card.data.to_dict()
    ds = datasets.load_dataset(str(out))  # the YAML still drives loading
    for split, d in ds.items():
        counts = Counter(zip(d["label"], d["category"], strict=True))
        for label, name in ((1, "REAL"), (0, "FAKE")):
            row = [counts.get((label, c), 0) for c in range(len(CLASS_NAMES))]
            expected = (
                f"| {split} | {name} | " + " | ".join(f"{n:,}" for n in row) + f" | {sum(row):,} |"
            )
            assert expected in text
    report = json.loads((out / "import_report.json").read_text())["duplicates"]
    assert f"{report['extra_copies']} exact duplicate copies" in text
    assert "| test/FAKE/cat | 1 |" in text
    assert "same encoding" in text and "| REAL | JPEG | q75 | 420 |" in text
    assert (
        'load_dataset("user/cifake")' in text
        and "[user/cnn](https://huggingface.co/user/cnn)" in text
    )
    assert "@article{bird2024cifake" in text and "@techreport{krizhevsky2009learning" in text


def test_dataset_card_states_encoding_bias(tmp_path):
    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.schema import make_row

    rng = factories.np.random.default_rng(0)
    with DatasetFolderWriter(tmp_path) as w:
        for c in range(10):
            w.add("train", make_row(factories.png_bytes(factories.random_pixels(rng)), 0, c))
            w.add("train", make_row(factories.jpeg_bytes(factories.random_pixels(rng), 90), 1, c))
        w.close()
    text = str(render_dataset_card(tmp_path))
    assert "**Encoding bias:**" in text
    assert "| REAL | JPEG | q90 |" in text and "| FAKE | PNG | lossless |" in text


def test_jpeg_quality_estimate():
    px = factories.random_pixels(factories.np.random.default_rng(0))
    for q in (50, 75, 95):
        assert jpeg_quality(factories.jpeg_bytes(px, q)) == q
    assert jpeg_quality(factories.png_bytes(px)) is None


def test_gradcam_card_is_written_beside_the_model_card(small_run, small_cifake, tmp_path):
    import shutil

    from cifake_hub.explain.run import ExplainConfig, explain_run
    from cifake_hub.outputs import read_marker

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    explain_run(run, ExplainConfig(dataset=str(small_cifake), n=20))
    assert main(["card", "model", str(run), "--repo-id", "user/cnn"]) == 0
    text = (run / "gradcam" / "README.md").read_text()
    assert text.startswith("# Grad-CAM card") and "| **check** |" in text
    assert "## The paper's reading, measured" in text and "@inproceedings{rong2022road" in text
    assert "[Grad-CAM card](gradcam/README.md)" in (run / "README.md").read_text()
    # The card is listed in gradcam/'s marker: explaining again replaces the folder cleanly.
    assert "README.md" in read_marker(run / "gradcam")["files"]
    explain_run(run, ExplainConfig(dataset=str(small_cifake), n=20))
    assert not (run / "gradcam" / "README.md").exists()
