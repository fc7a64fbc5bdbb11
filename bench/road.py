"""ROAD speed: every method's ROAD curves (9 levels, MoRF and LeRF) vs computing the maps.

    python bench/road.py --dataset DIR --run RUN_DIR [--n 1000]

On N validation images of the run (its stratified slice of DIR's train split): the baseline
computes the maps of the four methods once, batched (`gradcam(..., method=M)`); ours runs
`road()` on those maps (4 methods x 9 levels x 2 orders = 72 imputations of N images, each
followed by one batched predict). Prints both times, the share of ROAD spent imputing, and
the ratio (target <= 5).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()

    from cifake_hub.explain import road as road_module
    from cifake_hub.explain.gradcam import METHODS, gradcam
    from cifake_hub.training.data import carve, load_splits, stratified_subset, to_arrays
    from cifake_hub.training.models import load_model
    from cifake_hub.training.run_folder import RunFolder

    run = RunFolder(args.run)
    settings = run.config()
    train = load_splits(args.dataset)["train"]
    t = train.with_format("numpy")
    label, category = np.asarray(t["label"][:]), np.asarray(t["category"][:])
    _, held = carve(label, category, settings["val_fraction"], settings["max_train"], 1)
    rows = held[stratified_subset(label[held], category[held], args.n, seed=0)]
    x = to_arrays(train, rows).x
    model = load_model(run.model)
    gradcam(model, x[:64])  # warm-up (tracing), for both

    start = time.perf_counter()
    first = gradcam(model, x, method="gradcam")
    maps = {"gradcam": first.heatmaps}
    for method in METHODS:
        if method != "gradcam":
            maps[method] = gradcam(model, x, explain=first.explained, method=method).heatmaps
    maps_seconds = time.perf_counter() - start

    imputing = 0.0
    impute = road_module.noisy_imputation

    def timed(*a, **k):
        nonlocal imputing
        t0 = time.perf_counter()
        out = impute(*a, **k)
        imputing += time.perf_counter() - t0
        return out

    road_module.noisy_imputation = timed
    start = time.perf_counter()
    curves = road_module.road(
        lambda b: model.predict(b, batch_size=512, verbose=0), x, first.explained, maps
    )
    road_seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{len(x)} images, {len(maps)} methods x {len(road_module.LEVELS)} levels x 2 orders")
    print(f"  maps of all methods, batched: {maps_seconds:7.2f} s")
    print(f"  ROAD:                         {road_seconds:7.2f} s ({imputing:.1f} s imputing)")
    print(f"  ratio {road_seconds / maps_seconds:.1f} (target <= 5); peak RSS {peak:.2f} GiB")
    print("  scores: " + ", ".join(f"{c.name} {c.score:+.3f}" for c in curves))


if __name__ == "__main__":
    main()
