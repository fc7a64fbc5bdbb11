"""Generation overhead: `cifake build` for N tiny images vs a bare loop over the same pipeline.

    python bench/generate_overhead.py [--n 480] [--batch-size 8] [--steps 50]

Both make the same FAKE images (tiny random-weight SD pipeline, Euler Ancestral, 64 px
renders) with the same settings in the same run; `cifake build` also reads REAL rows,
resizes, encodes, checkpoints units and writes the dataset folder, in a fresh process.
Prints the wall-time ratio (target <= 1.10) and images/s of the bare loop at batch sizes
1, 4 and 16.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bare_loop(n: int, batch: int, steps: int) -> float:
    """Seconds for n images straight from the pipeline, one CPU generator per image."""
    import torch

    from cifake_hub.builders.generate import GeneratorConfig, load_pipeline

    pipe = load_pipeline(GeneratorConfig(model_id="tiny"), "cpu")
    start = time.perf_counter()
    for first in range(0, n, batch):
        k = min(batch, n - first)
        pipe(
            prompt=["a photograph of a cat"] * k,
            num_inference_steps=steps,
            guidance_scale=7.5,
            height=64,
            width=64,
            output_type="np",
            generator=[torch.Generator("cpu").manual_seed(first + i) for i in range(k)],
        )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=480, help="FAKE images (a multiple of 10)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sweep-n", type=int, default=32, help="images per batch size in the sweep")
    args = ap.parse_args()
    from tests.factories import make_cifar_tar

    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    tar = make_cifar_tar(work / "cifar.tar.gz", per_batch=max(20, args.n // 5 + 10)).path
    cmd = [
        str(Path(sys.executable).with_name("cifake")),
        "build",
        "--out",
        str(work / "out"),
        "--generator",
        "tiny",
        "--real",
        f"cifar-tar:{tar}",
        "--per-class-train",
        str(args.n // 10),
        "--per-class-test",
        "0",
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--unit-size",
        "100",
    ]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if res.returncode:
        raise SystemExit(f"cifake build failed:\n{res.stderr[-2000:]}")
    build_s = time.perf_counter() - t
    bare_s = bare_loop(args.n, args.batch_size, args.steps)
    print(f"{args.n} tiny images, {args.steps} steps, batch {args.batch_size}, 64 px renders")
    print(f"cifake build (fresh process, REAL rows, checkpoints, dataset folder): {build_s:.1f} s")
    print(f"bare pipeline loop (model already built)                           : {bare_s:.1f} s")
    print(f"ratio: {build_s / bare_s:.3f} (target <= 1.10)")
    for batch in (1, 4, 16):
        s = bare_loop(args.sweep_n, batch, args.steps)
        print(f"batch {batch:>2}: {args.sweep_n / s:.2f} images/s")


if __name__ == "__main__":
    main()
