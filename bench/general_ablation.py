"""What makes the `general` detector generalise: an ablation at a reduced, equal budget.

    python bench/general_ablation.py --dataset DIR --out DIR [--real 12000] [--epochs 6]

DIR is the mixed dataset of bench/RESULTS.md ("The mixed dataset"): REAL and Stable Diffusion
1.4 rows of CIFAKE's train split plus the zoo's families and aligned twins. Every arm is the
`general` recipe (`run_training`, resumable: an arm whose model exists is not trained again)
on the same REAL rows (a stratified sample of ``--real`` REAL train rows) and the same number
of images per epoch (balanced: as many FAKE rows as REAL ones, equal shares per generator)
for the same epochs, its epoch kept by the lowest loss on its validation slice (no family is
held out to choose on: at this budget a held-out family's AUC can stay below 0.5 for every
epoch, and choosing on it then keeps the first); arms differ only in the FAKE generators they
train on or in one recipe setting:

    sd               SD 1.4 only
    sd+zoo           SD 1.4, DCGAN, VAE
    sd+zoo+aligned   SD 1.4, DCGAN, VAE and the VAE's aligned twins (the base arm)
    rgb, npr         the base arm with raw pixels only / the NPR residual only as input
    no-augmentation  the base arm without the degradations

No arm trains on the DDPM family (samples and aligned twins) or on UpConv-GAN: their test
rows are the unseen families every arm is scored on. Scores: each generator's FAKE test rows
against as many REAL test rows (stratified), ROC AUC with a 95% bootstrap interval, and
CIFAKE's (sd14) accuracy. Writes OUT/ablation.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

BASE = ("sd14", "dcgan", "vae", "aligned-vae")
ARMS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "sd": (("sd14",), {}),
    "sd+zoo": (("sd14", "dcgan", "vae"), {}),
    "sd+zoo+aligned": (BASE, {}),
    "rgb": (BASE, {"inputs": "rgb"}),
    "npr": (BASE, {"inputs": "npr"}),
    "no-augmentation": (BASE, {"degrade": 0.0}),
}
UNSEEN = ("ddpm", "aligned-ddpm", "upconv-gan")


def train_rows(train: Any, names: tuple[str, ...], fakes: tuple[str, ...], real: int) -> np.ndarray:
    from cifake_hub.schema import FAKE, REAL
    from cifake_hub.training.data import generator_index, labels_and_classes, stratified_subset

    label, category = labels_and_classes(train)
    gen = generator_index(train)
    ids = [names.index(n) for n in fakes]
    fake = np.flatnonzero((label == FAKE) & np.isin(gen, ids))
    reals = np.flatnonzero(label == REAL)
    reals = reals[stratified_subset(label[reals], category[reals], real, seed=1)]
    return np.sort(np.concatenate([fake, reals]))


def score(y: np.ndarray, category: np.ndarray, gen: np.ndarray, names, prob) -> dict[str, Any]:
    from cifake_hub.evaluate.calibration import bootstrap
    from cifake_hub.schema import FAKE, REAL
    from cifake_hub.training.data import stratified_subset
    from cifake_hub.training.metrics import binary_metrics

    out = {}
    real = np.flatnonzero(y == REAL)
    for g, name in enumerate(names):
        fake = np.flatnonzero((y == FAKE) & (gen == g))
        rows = np.concatenate([fake, real[stratified_subset(y[real], category[real], len(fake))]])
        m = binary_metrics(y[rows], prob[rows])
        low, high = bootstrap(y[rows], prob[rows], 1000, seed=g)["roc_auc"]
        out[name] = {"accuracy": m["accuracy"], "roc_auc": m["roc_auc"], "interval": [low, high]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--real", type=int, default=12000, help="REAL train rows per arm")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()

    import datasets

    from cifake_hub.outputs import atomic_write_text
    from cifake_hub.schema import dataset_generators
    from cifake_hub.training.data import load_splits, to_arrays
    from cifake_hub.training.models import load_model
    from cifake_hub.training.recipes import get_recipe
    from cifake_hub.training.train import TrainConfig, run_training

    splits = load_splits(args.dataset)
    names = dataset_generators(splits["train"].features)
    test = to_arrays(splits["test"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "dataset": args.dataset,
        "real_rows": args.real,
        "epochs": args.epochs,
        "unseen": list(UNSEEN),
        "arms": {},
    }
    if (out / "ablation.json").exists():
        record["arms"] = json.loads((out / "ablation.json").read_text())["arms"]
    for arm in args.arms.split(","):
        fakes, change = ARMS[arm]
        general = get_recipe("general")
        recipe = dataclasses.replace(general, epochs=args.epochs, select_unseen=False, **change)
        rows = train_rows(splits["train"], names, fakes, args.real)
        config = TrainConfig(recipe="general", recipe_data=recipe.to_dict(), dataset=args.dataset)
        run = out / arm
        if not (run / "model.keras").exists():
            started = time.perf_counter()
            data = datasets.DatasetDict({"train": splits["train"].select(rows)})
            run_training(data, run, config, say=print)
            print(f"{arm}: {time.perf_counter() - started:.0f} s")
        result = json.loads((run / "recipe_result.json").read_text())
        prob = np.asarray(
            load_model(run / "model.keras").predict(test.x, batch_size=1024, verbose=0)
        )
        record["arms"][arm] = {
            "trained_on": list(fakes),
            "change": change,
            "train_rows": int(len(rows)),
            "epoch_images": result["epoch_images"],
            "train_seconds": result["train_seconds"],
            "kept_epoch": result["best_epoch"],
            "scores": score(test.y, test.category, test.generator, names, prob[:, 0].astype(float)),
        }
        atomic_write_text(out / "ablation.json", json.dumps(record, indent=1) + "\n")
    from cifake_hub.cards.detector_card import ablation_table

    print(ablation_table(record))


if __name__ == "__main__":
    main()
