from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from cifake_hub.errors import ConfigError
from cifake_hub.training.data import stratified_split, stratified_subset
from cifake_hub.training.metrics import binary_metrics
from cifake_hub.training.report import TABLES, table_markdown, table_values
from cifake_hub.training.topology import PAPER_FINAL, Topology, build_model, stage1, stage2
from tests import factories


def _expected_params(t: Topology, padding: str = "valid") -> tuple[int, int]:
    """Parameter count and flattened size, worked out by hand from the layer shapes."""
    size, channels, params = 32, 3, 0
    for _ in range(t.conv_layers):
        params += (3 * 3 * channels + 1) * t.conv_filters
        size = (size - 2 if padding == "valid" else size) // 2
        channels = t.conv_filters
    width = size * size * channels
    flat = width
    for _ in range(t.dense_layers):
        params += (width + 1) * t.dense_units
        width = t.dense_units
    return params + width + 1, flat


def test_search_space_is_the_papers():
    s1 = stage1()
    assert len(s1) == 12 and len(set(s1)) == 12
    assert {t.conv_filters for t in s1} == {16, 32, 64, 128} and {t.conv_layers for t in s1} == {
        1,
        2,
        3,
    }
    s2 = stage2(Topology(32, 2))
    assert len(s2) == 24 and all(t.extractor == Topology(32, 2) for t in s2)
    assert {t.dense_units for t in s2} == {32, 64, 128, 256, 512, 1024, 2048, 4096}
    assert Topology.parse(PAPER_FINAL) == Topology(32, 2, 64, 1)
    assert Topology.parse("conv=16x3").name == "conv=16x3"
    with pytest.raises(ConfigError, match="conv=FILTERSxLAYERS"):
        Topology.parse("dense=64x1")


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_all_36_models_shapes_and_params(padding):
    winner = Topology(32, 2)
    for t in stage1() + stage2(winner):
        model = build_model(t, padding)
        params, flat = _expected_params(t, padding)
        assert model.count_params() == params, t.name
        assert model.get_layer("flatten").output.shape[-1] == flat
        assert (
            tuple(model.inputs[0].shape) == (None, 32, 32, 3) and model.inputs[0].dtype == "uint8"
        )
        assert tuple(model.outputs[0].shape) == (None, 1)
        assert [layer.name for layer in model.layers][-2:] == ["logit", "probability"]


def test_model_takes_raw_uint8_images():
    model = build_model(Topology(16, 1))
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    p = model.predict(x, verbose=0)
    manual = model.predict(x.astype("float32"), verbose=0)  # Rescaling is inside the model
    np.testing.assert_allclose(p, manual, rtol=1e-6)
    assert ((p > 0) & (p < 1)).all()


def test_metrics_match_sklearn_on_known_predictions():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1).round(2)  # ties on purpose
    m = binary_metrics(y, p)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)


def test_metrics_hand_worked():
    # REAL is positive: 2 TP, 1 FP, 1 FN, 1 TN.
    m = binary_metrics(np.array([1, 1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.2, 0.1]))
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # of 6 (pos, neg) pairs, 5 are ordered right


def test_stratified_split_is_deterministic_and_stratified():
    label = np.repeat([0, 1], 500)
    category = np.tile(np.repeat(np.arange(10), 50), 2)
    keep, held = stratified_split(label, category, 0.1, seed=1)
    keep2, held2 = stratified_split(label, category, 0.1, seed=1)
    np.testing.assert_array_equal(held, held2)
    assert (
        len(held) == 100 and len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 1000
    )
    groups = np.unique(label[held] * 10 + category[held], return_counts=True)[1]
    assert (groups == 5).all()
    assert len(stratified_subset(label, category, 200)) == 200


def test_table_layout_is_the_papers():
    results = [
        factories.topology_result(
            f, n, validation={"accuracy": 0.9 + f / 10000 + n / 1000, "loss": 0.2}
        )
        for f in (16, 32, 64, 128)
        for n in (1, 2, 3)
    ]
    spec = next(s for s in TABLES if s.number == 2)
    values = table_values(spec, results)
    assert len(values) == 4 and all(len(r) == 3 for r in values)
    md = table_markdown(spec, values, "validation")
    lines = md.splitlines()
    assert lines[2] == "| Filters \\ Layers | 1 | 2 | 3 |"
    assert lines[4] == "| 16 | 90.26 | 90.36 | 90.46 |"
    assert [s.number for s in TABLES] == list(range(2, 12))
    assert [s.metric for s in TABLES[5:]] == ["accuracy", "loss", "precision", "recall", "f1"]


def test_wrong_size_image_in_a_table_is_one_clear_error():
    import datasets

    from cifake_hub.errors import InvalidImageError
    from cifake_hub.training.data import to_arrays
    from tests import factories

    rng = np.random.default_rng(0)
    blobs = [factories.png_bytes(factories.random_pixels(rng, size)) for size in (32, 64)]
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": b, "path": f"im{i}.png"} for i, b in enumerate(blobs)],
            "label": [0, 1],
            "category": [0, 1],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "label": datasets.Value("int64"),
                "category": datasets.Value("int64"),
            }
        ),
    )
    with pytest.raises(InvalidImageError, match="im1.png: image is 64x64, expected 32x32"):
        to_arrays(ds)


def test_validation_slice_of_tiny_data_is_not_empty_and_has_both_labels():
    label = np.repeat([0, 1], 30)
    category = np.tile(np.repeat(np.arange(10), 3), 2)  # 3 rows per (label, class)
    keep, held = stratified_split(label, category, 0.1)
    assert len(held) == 6 and len(keep) == 54
    assert set(label[held]) == {0, 1}
    assert not set(keep) & set(held)
