"""`cifake evaluate` speed: all default conditions vs bare `model.predict` on pre-made arrays.

    python bench/evaluate.py --dataset DIR --run RUN_DIR [--n 20000]

DIR is an imported folder of the Kaggle train zip and RUN_DIR a run trained on it (e.g. by
`bench/search_real.py --out`). Ours: `cifake evaluate RUN_DIR --split train --max-rows N`
in a fresh process (every default condition degraded and predicted, metrics; the report
times the condition loop apart from decoding and from the bootstrap). Baseline, in a fresh
process: the same N rows decoded, every condition's array made beforehand (untimed), then
`model.predict` on each, timed, and evaluate's own predict step (`predict_on_batch` per
batch) on each, timed, the two interleaved and the faster of two rounds kept. Prints the
ratio of the condition loop to bare `model.predict` (target <= 1.3), the stricter ratio to
the same predict step as evaluate's, and peak RSS of ours (target < 2 GB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import run_measured  # noqa: E402

BASELINE = """
import sys, time, json
import numpy as np
from cifake_hub.evaluate.conditions import DEFAULT_CONDITIONS, parse_condition
from cifake_hub.evaluate.run import predict_batches
from cifake_hub.training.data import load_splits, stratified_subset, to_arrays
from cifake_hub.training.models import load_model
from cifake_hub.training.run_folder import RunFolder

dataset, run, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = load_splits(dataset)["train"]
t = ds.with_format("numpy")
rows = stratified_subset(np.asarray(t["label"][:]), np.asarray(t["category"][:]), n, seed=0)
x = to_arrays(ds, rows).x
arrays = [parse_condition(c).apply(x, rows) for c in DEFAULT_CONDITIONS]
model = load_model(RunFolder(run).model)
def bare():
    for a in arrays:
        model.predict(a, batch_size=1024, verbose=0)


def stepped():
    for a in arrays:
        predict_batches(model, a, 1024)


seconds = {"predict_seconds": [], "stepped_seconds": []}
model.predict(x[:1024], batch_size=1024, verbose=0)  # warm-up, as ours has with its first call
predict_batches(model, x[:1024], 1024)
for _ in range(2):  # interleaved: this machine's speed drifts within a minute
    for key, fn in (("predict_seconds", bare), ("stepped_seconds", stepped)):
        start = time.perf_counter()
        fn()
        seconds[key].append(time.perf_counter() - start)
print(json.dumps({k: min(v) for k, v in seconds.items()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-evaluate-")) / "evaluation"
    cifake = str(Path(sys.executable).with_name("cifake"))
    _, rss, _ = run_measured(
        [cifake, "evaluate", str(args.run), "--dataset", str(args.dataset), "--split", "train",
         "--max-rows", str(args.n), "--out", str(out)]
    )  # fmt: skip
    seconds = json.loads((out / "evaluation.json").read_text())["seconds"]
    _, base_rss, printed = run_measured(
        [sys.executable, "-c", BASELINE, str(args.dataset), str(args.run), str(args.n)]
    )
    baseline = json.loads(printed.strip().splitlines()[-1])
    bare, stepped = baseline["predict_seconds"], baseline["stepped_seconds"]
    print(f"{args.n:,} images, 13 default conditions")
    print(
        f"bare model.predict on pre-made arrays : {bare:6.1f} s "
        f"(peak RSS {base_rss / 2**30:.2f} GiB)"
    )
    print(f"evaluate's predict step on the same   : {stepped:6.1f} s")
    print(
        f"cifake evaluate, condition loop       : {seconds['conditions']:6.1f} s "
        f"(+ decoding/leakage {seconds['decoding_and_leakage']:.1f} s, bootstrap "
        f"{seconds['bootstrap']:.1f} s; peak RSS {rss / 2**30:.2f} GiB)"
    )
    print(f"ratio: {seconds['conditions'] / bare:.3f} (target <= 1.3, peak RSS < 2 GB)")
    print(f"ratio against evaluate's own predict step: {seconds['conditions'] / stepped:.3f}")


if __name__ == "__main__":
    main()
