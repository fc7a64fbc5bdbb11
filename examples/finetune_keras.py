"""Fine-tune a CIFAKE detector on new data, in Keras.

    python examples/finetune_keras.py --model RUN_DIR|MODEL.keras|REPO_ID --dataset DIR|REPO_ID \
        [--split train] [--epochs 3] [--learning-rate 1e-4] [--out finetuned.keras]

The model takes raw uint8 RGB 32x32 images (scaling is inside it), labels are FAKE=0,
REAL=1, so the only data code needed is "decode the image column into an array".
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--out", default="finetuned.keras")
    args = ap.parse_args(argv)

    import datasets
    import keras

    from cifake_hub.predict import resolve_model

    model = keras.saving.load_model(resolve_model(args.model))
    ds = datasets.load_dataset(args.dataset, split=args.split).with_format("numpy")
    x = np.stack(ds["image"][:]).astype(np.uint8)  # (N, 32, 32, 3)
    y = np.asarray(ds["label"][:])  # FAKE=0, REAL=1

    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    model.save(args.out)
    result = {
        "loss_before": before["loss"],
        "loss_after": after["loss"],
        "accuracy_before": before["accuracy"],
        "accuracy_after": after["accuracy"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
