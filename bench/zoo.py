"""`cifake zoo train` throughput and sampling speed, per family.

    python bench/zoo.py [--families dcgan,upconv-gan,vae,ddpm] [--n 6400] [--epochs 3]

Ours: `train_generator` (the default preset's networks, batch size and optimizer) on a
dataset folder of N REAL images made here (smooth random colour fields, PNG), each epoch
with its per-epoch sample grid, checkpoint and progress callback. Baseline: a bare torch
loop over the same networks (built from the same seed), optimizers, batches (the same
uint8 tensor, order and noise generator) and training step, with no grid, checkpoint or
callback. Both in fresh processes, one after the other; epochs 2.. are compared (the first
warms up). Prints per family: images/s of each, ours/baseline time ratio (goal <= 1.10),
sampling images/s (batches of 250) and the peak RSS of each process.
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
import json, sys, time
from cifake_hub.zoo.config import ZooConfig
from cifake_hub.zoo.train import train_generator
from cifake_hub.zoo.sample import ZooGenerator
family, data, out, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = ZooConfig(family, epochs=epochs, quality_images=10)
train_generator(data, out, cfg, progress=lambda *a: None)
from cifake_hub.zoo.folder import GeneratorFolder
seconds = [h["seconds"] for h in GeneratorFolder(out).training()["history"]]
gen = ZooGenerator(out)
gen.sampler.generate([0] * 10, list(range(10)))
started = time.perf_counter()
for b in range(2):
    gen.sampler.generate([i % 10 for i in range(250)], list(range(b * 250, b * 250 + 250)))
rate = 500 / (time.perf_counter() - started)
images = GeneratorFolder(out).training()["history"][0]["images"]
print(json.dumps({"epoch_seconds": seconds, "images": images, "sampling": rate}))
"""

BASELINE = """
import dataclasses, json, sys, time
import numpy as np, torch
from cifake_hub.training.data import load_splits, to_arrays
from cifake_hub.zoo.families import FAMILIES, Trainer
from cifake_hub.zoo.config import ZooConfig
from cifake_hub.zoo.train import _epoch_generator
family, data, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = ZooConfig(family, epochs=epochs)
x = to_arrays(load_splits(data)["train"])
x_all = torch.from_numpy(x.x).permute(0, 3, 1, 2).contiguous()
y_all = torch.from_numpy(x.category)
preset = FAMILIES[family].presets["default"]
torch.manual_seed(cfg.seed)
trainer = Trainer(family, preset, cfg.lr)
n, batch = len(x_all), cfg.batch_size
seconds = []
for epoch in range(1, epochs + 1):
    gen = _epoch_generator(cfg.seed, epoch)
    order = torch.randperm(n, generator=gen)
    trainer.train()
    started = time.perf_counter()
    for b in range(n // batch):
        idx = order[b * batch : (b + 1) * batch]
        trainer.step(x_all[idx].float() / 127.5 - 1, y_all[idx], gen)
    seconds.append(time.perf_counter() - started)
print(json.dumps({"epoch_seconds": seconds}))
"""


def make_data(out: Path, n: int) -> None:
    import numpy as np

    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.images import encode_png
    from cifake_hub.schema import REAL, make_row

    rng = np.random.default_rng(0)
    with DatasetFolderWriter(out) as writer:
        for i in range(n):
            base = rng.integers(30, 220, (4, 4, 3)).astype(np.float32)
            img = np.kron(base, np.ones((8, 8, 1), np.float32)) + rng.normal(0, 8, (32, 32, 3))
            px = np.clip(img, 0, 255).astype(np.uint8)
            writer.add("train", make_row(encode_png(px), REAL, i % 10, source="bench",
                                         source_index=i))  # fmt: skip
        writer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="dcgan,upconv-gan,vae,ddpm")
    ap.add_argument("--n", type=int, default=6400)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_data(data, args.n)
        for family in args.families.split(","):
            _, ours_rss, out = run_measured(
                [sys.executable, "-c", OURS, family, str(data), f"{tmp}/{family}",
                 str(args.epochs)]
            )  # fmt: skip
            ours = json.loads(out.strip().splitlines()[-1])
            _, base_rss, out = run_measured(
                [sys.executable, "-c", BASELINE, family, str(data), str(args.epochs)]
            )
            base = json.loads(out.strip().splitlines()[-1])
            t_ours, t_base = sum(ours["epoch_seconds"][1:]), sum(base["epoch_seconds"][1:])
            images = ours["images"] * (args.epochs - 1)
            print(
                f"{family}: ours {images / t_ours:,.0f} images/s, bare loop "
                f"{images / t_base:,.0f} images/s, time ratio {t_ours / t_base:.3f}; sampling "
                f"{ours['sampling']:,.0f} images/s; peak RSS ours {ours_rss / 2**20:,.0f} MiB, "
                f"bare {base_rss / 2**20:,.0f} MiB"
            )


if __name__ == "__main__":
    main()
