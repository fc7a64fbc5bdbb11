from __future__ import annotations

import csv
import io
import json

import datasets
import numpy as np
from PIL import Image

from cifake_hub.cli.main import main


def test_predict_folder_matches_evaluation_and_reports_bad_files(small_run, small_cifake, tmp_path):
    """Files written from the test split get the labels the model gives the arrays."""
    ds = datasets.load_dataset(str(small_cifake))["test"].cast_column(
        "image", datasets.Image(decode=False)
    )
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    labels = {}
    for i, row in enumerate(ds):
        name = f"{i:03d}.png"
        (folder / name).write_bytes(row["image"]["bytes"])
        labels[name] = row["label"]
    big = Image.open(io.BytesIO(ds[0]["image"]["bytes"])).resize((128, 128))
    big.save(folder / "big.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not an image")
    out = tmp_path / "pred.json"
    code = main(
        [
            "predict",
            str(tmp_path / "images"),
            "--model",
            str(small_run),
            "--output",
            str(out),
            "--gradcam",
            str(tmp_path / "cams"),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in result["predictions"]}
    assert len(rows) == len(labels) + 2
    assert rows["broken.jpg"]["label"] is None and "unreadable" in rows["broken.jpg"]["error"]
    assert rows["big.png"]["resized"] is True and "resized to 32x32" in result["note"]

    import keras

    model = keras.saving.load_model(small_run / "model.keras")
    x = np.stack([np.asarray(Image.open(folder / n).convert("RGB")) for n in sorted(labels)])
    p = model.predict(x, verbose=0).ravel()
    for name, prob in zip(sorted(labels), p, strict=True):
        assert (
            rows[name]["probability_real"] == prob.item()
            or abs(rows[name]["probability_real"] - prob) < 1e-6
        )
        assert rows[name]["label"] == ("REAL" if prob >= 0.5 else "FAKE")
    assert len(list((tmp_path / "cams").glob("*.png"))) == len(labels) + 1

    csv_out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                str(folder / "000.png"),
                "--model",
                str(small_run / "model.keras"),
                "--output",
                str(csv_out),
            ]
        )
        == 0
    )
    (row,) = list(csv.DictReader(csv_out.open()))
    assert row["label"] == rows["000.png"]["label"]


def test_predict_missing_path_is_one_error(small_run, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope"), "--model", str(small_run)]) == 1
    assert "does not exist" in capsys.readouterr().err
