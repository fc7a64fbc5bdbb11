"""`cifake train` throughput: a recipe's training loop vs the same model fed from in-memory
NumPy arrays.

    python bench/train_throughput.py --dataset DIR --recipe robust [--n 20000]

DIR is an imported folder of the Kaggle train zip. Ours: `run_training` with the recipe for 3
epochs on N stratified train rows (for `robust`, batches degraded on the fly by two threads;
checkpoints after each epoch). Baseline: the same model and optimizer, `model.fit` on the
same decoded arrays (x, y), no augmentation data pipeline, no checkpoints. Both in fresh
processes, one after the other; the fastest of epochs 2 and 3 is compared (the first
includes tracing; this VM's epoch times vary by +-20% from run to run, and the fastest is the
one least disturbed). Prints images/s of each and their ratio (target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import run_measured  # noqa: E402

OURS = """
import json, sys
from cifake_hub.training.train import TrainConfig, run_training
out = run_training(sys.argv[1], sys.argv[2], TrainConfig(recipe=sys.argv[3], epochs=3,
                   max_train=int(sys.argv[4])))
print(json.dumps({"epoch_seconds": out.result.epoch_seconds, "images": out.result.train_images}))
"""

BASELINE = """
import json, sys, time
import numpy as np
from cifake_hub.training.backend import import_keras
from cifake_hub.training.data import DataOptions, prepare
from cifake_hub.training.recipes import build_recipe_model, compile_recipe_model, get_recipe
keras = import_keras()
recipe = get_recipe(sys.argv[2]).with_epochs(3)
data = prepare(sys.argv[1], DataOptions(max_train=int(sys.argv[3])))
keras.utils.set_random_seed(1)
model = build_recipe_model(recipe)
compile_recipe_model(model, recipe, len(data.train))
seconds = []
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        seconds.append(time.perf_counter() - self.t)
model.fit(data.train.x, data.train.y.astype(np.float32), batch_size=recipe.batch_size,
          epochs=3, shuffle=True, verbose=0, callbacks=[Clock()],
          validation_data=(data.validation.x, data.validation.y.astype(np.float32)),
          validation_batch_size=512)
print(json.dumps({"epoch_seconds": seconds, "images": len(data.train)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--recipe", default="robust")
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="bench-train-")) / "run"
    _, rss_ours, out = run_measured(
        [sys.executable, "-c", OURS, str(args.dataset), str(run_dir), args.recipe, str(args.n)]
    )
    ours = json.loads(out.strip().splitlines()[-1])
    _, rss_base, out = run_measured(
        [sys.executable, "-c", BASELINE, str(args.dataset), args.recipe, str(args.n)]
    )
    base = json.loads(out.strip().splitlines()[-1])
    ips_ours = ours["images"] / min(ours["epoch_seconds"][1:])
    ips_base = base["images"] / min(base["epoch_seconds"][1:])
    print(f"recipe {args.recipe}, {ours['images']:,} training images, fastest of epochs 2-3")
    print(
        f"  cifake train:           {ips_ours:8.1f} images/s  peak RSS {rss_ours / 2**30:.2f} GiB"
    )
    print(
        f"  model.fit(NumPy arrays): {ips_base:8.1f} images/s  peak RSS {rss_base / 2**30:.2f} GiB"
    )
    print(f"  ratio {ips_ours / ips_base:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
