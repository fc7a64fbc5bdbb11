"""`cifake zoo train`: a zoo generator trained on the REAL rows of a dataset's train split
(never its test split), checkpointed every epoch and resumed after any stop.

Resuming repeats the uninterrupted run exactly: every epoch draws its order and noise from
its own ``torch.Generator`` seeded by (seed, epoch), and the checkpoint written after each
epoch holds the networks and optimizers; a run killed mid-epoch restarts that epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.errors import CifakeError, ConfigError, DatasetFolderError
from cifake_hub.outputs import atomic_write_text, claim, json_text, writes
from cifake_hub.schema import CLASS_NAMES, REAL
from cifake_hub.training.data import labels_and_classes, load_splits, stratified_subset, to_arrays
from cifake_hub.zoo.config import ZooConfig
from cifake_hub.zoo.families import Trainer, family_info
from cifake_hub.zoo.folder import GeneratorFolder
from cifake_hub.zoo.quality import sliced_wasserstein
from cifake_hub.zoo.sample import Sampler

GRID_SEED = 12345  # the grids show the same seeds every epoch
# The per-epoch grids watch the training; they must not cost a DDPM a large share of an epoch.
PREVIEW_PER_CLASS, PREVIEW_STEPS = 6, 20
FINAL_PER_CLASS = 10


@dataclass
class EpochRecord:
    epoch: int
    seconds: float
    images: int
    losses: dict[str, float]

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


@dataclass
class ZooOutcome:
    folder: GeneratorFolder
    epochs_run: int  # epochs trained by this call (0: the folder was already finished)
    resumed_from: int  # epochs found in the checkpoint
    training: dict[str, Any]  # training.json


# (epoch, batch, batches per epoch, the batch's losses)
Progress = Callable[[int, int, int, dict[str, float]], None]


def real_train_images(dataset: Any, max_images: int | None, seed: int) -> tuple[Any, Any]:
    """(images uint8 NHWC, classes) of the REAL rows of the train split, class-stratified
    down to ``max_images``. Rows without a class get class 0 (the generators are
    class-conditional; such rows are counted in training.json)."""
    splits = load_splits(dataset)
    if "train" not in splits:
        raise DatasetFolderError(
            f"{dataset} has splits {list(splits)}; a zoo generator trains on 'train' only"
        )
    train = splits["train"]
    label, category = labels_and_classes(train)
    rows = np.flatnonzero(label == REAL)
    if rows.size < 2:
        raise DatasetFolderError(
            f"{dataset}'s train split holds {rows.size} REAL rows; a zoo generator learns from "
            "REAL images: give a dataset with REAL train rows"
        )
    if max_images is not None and max_images < rows.size:
        rows = rows[stratified_subset(label[rows], category[rows], max_images, seed)]
    arrays = to_arrays(train, rows)
    return arrays.x, arrays.category


def _epoch_generator(seed: int, epoch: int) -> Any:
    import torch

    digest = hashlib.sha256(f"cifake-zoo:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") & (2**63 - 1))


def _check_resume(folder: GeneratorFolder, config: ZooConfig) -> None:
    if not folder.config_path.exists():
        return
    earlier = ZooConfig.load(folder.config_path)
    changed = [
        f.name
        for f in dataclasses.fields(config)
        if getattr(earlier, f.name) != getattr(config, f.name)
    ]
    if changed:
        raise ConfigError(
            f"{folder.path} holds a {earlier.family} generator trained with other "
            f"{', '.join(changed)}; run it again with the same options, or give another --out"
        )


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    import torch

    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "epoch" not in state:
            raise ValueError("not a zoo checkpoint")
        return state
    except Exception as exc:  # torch.load raises many kinds on a damaged file
        raise CifakeError(
            f"checkpoint {path} is damaged ({type(exc).__name__}); delete it to train from "
            "the start, or give another --out"
        ) from exc


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def grid_png(images: np.ndarray, per_row: int) -> bytes:
    """A grid of uint8 images (a row of ``per_row`` per class), 2x nearest, 2-px gaps."""
    from PIL import Image

    n, size = len(images), images.shape[1] * 2
    rows = (n + per_row - 1) // per_row
    canvas = Image.new("RGB", (per_row * (size + 2) + 2, rows * (size + 2) + 2), "white")
    for i, img in enumerate(images):
        tile = Image.fromarray(img).resize((size, size), Image.Resampling.NEAREST)
        canvas.paste(tile, (2 + (i % per_row) * (size + 2), 2 + (i // per_row) * (size + 2)))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def grid_seeds(per_class: int) -> tuple[list[int], list[int]]:
    """(classes, seeds) of a grid: ``per_class`` images of each class, fixed seeds."""
    classes = [c for c in range(len(CLASS_NAMES)) for _ in range(per_class)]
    return classes, [GRID_SEED + i for i in range(len(classes))]


@writes("out", finishes=GeneratorFolder.KIND)
def train_generator(
    dataset: Any,
    out: str | Path,
    config: ZooConfig,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> ZooOutcome:
    """Train ``config.family`` on ``dataset``'s REAL train rows into ``out`` (resumed when it
    holds a checkpoint of the same options); export the sampler and the quality figure."""
    import torch

    say = say or (lambda _msg: None)
    if isinstance(dataset, (str, Path)) and not config.dataset:
        config = dataclasses.replace(config, dataset=str(dataset))
    folder = GeneratorFolder(claim(out, GeneratorFolder.KIND))
    _check_resume(folder, config)
    state = _load_checkpoint(folder.checkpoint)
    if state is None and folder.is_generator():  # finished before: nothing to do
        return ZooOutcome(folder, 0, int(config.epochs or 0), folder.training())
    say("decoding the REAL train rows")
    images, classes = real_train_images(dataset, config.max_images, config.seed)
    config.save(folder.config_path)
    trainer, history, start = _trainer(config, state, say)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8, NCHW
    y_all = torch.from_numpy(np.where(classes < 0, 0, classes))
    nets = {r: trainer.nets[r] for r in trainer.family.sampler_roles}
    sampler = Sampler(config.family, nets, config.latent, config.sampler_steps)
    preview = Sampler(config.family, nets, config.latent, min(config.sampler_steps, PREVIEW_STEPS))
    epochs, n = int(config.epochs or 0), len(x_all)
    unclassed = int((classes < 0).sum())
    params = {r: sum(p.numel() for p in net.parameters()) for r, net in trainer.nets.items()}
    for epoch in range(start + 1, epochs + 1):
        started = time.perf_counter()
        images_seen, losses = _train_epoch(trainer, x_all, y_all, config, epoch, progress)
        grid_classes, seeds = grid_seeds(PREVIEW_PER_CLASS)
        _write_bytes(
            folder.epoch_grid(epoch),
            grid_png(preview.generate(grid_classes, seeds), PREVIEW_PER_CLASS),
        )
        # The epoch's cost: its batches and its sample grid (the checkpoint, a few MB, after).
        record = EpochRecord(epoch, round(time.perf_counter() - started, 3), images_seen, losses)
        history.append({**dataclasses.asdict(record),
                        "images_per_second": round(record.images_per_second, 1)})  # fmt: skip
        _save_checkpoint(
            folder.checkpoint, {"epoch": epoch, "history": history, "trainer": trainer.state_dict()}
        )
        _write_training(folder, config, history, n, unclassed, params, quality=None)
    say("exporting the sampler and computing the quality figure")
    trainer.family.export(trainer, folder)
    quality = _quality(sampler, images, classes, config)
    grid_classes, seeds = grid_seeds(FINAL_PER_CLASS)
    _write_bytes(folder.grid, grid_png(sampler.generate(grid_classes, seeds), FINAL_PER_CLASS))
    training = _write_training(folder, config, history, n, unclassed, params, quality=quality)
    folder.checkpoint.unlink()  # finished: the exported weights are the result
    return ZooOutcome(folder, epochs - start, start, training)


def _trainer(
    config: ZooConfig, state: dict[str, Any] | None, say: Callable[[str], None]
) -> tuple[Trainer, list[dict[str, Any]], int]:
    """(the family's trainer, the epochs' history, the last epoch done), from the checkpoint
    when there is one, else freshly initialised from the seed."""
    import torch

    info = family_info(config.family)
    preset = dataclasses.replace(
        info.presets[config.preset], width=config.width, latent=config.latent
    )
    torch.manual_seed(config.seed)
    trainer = Trainer(config.family, preset, float(config.lr or 0))
    if state is None:
        return trainer, [], 0
    trainer.load_state_dict(state["trainer"])
    history, start = list(state["history"]), int(state["epoch"])
    say(f"resuming after epoch {start} of {config.epochs}")
    return trainer, history, start


def _train_epoch(
    trainer: Trainer,
    x_all: Any,
    y_all: Any,
    config: ZooConfig,
    epoch: int,
    progress: Progress | None,
) -> tuple[int, dict[str, float]]:
    """One epoch in the order its seed draws: (images trained on, mean loss per batch)."""
    import torch

    n, batch = len(x_all), int(config.batch_size or 0)
    batches = max(n // batch, 1)  # the last partial batch is dropped (BatchNorm, GAN balance)
    gen = _epoch_generator(config.seed, epoch)
    order = torch.randperm(n, generator=gen)
    trainer.train()
    sums: dict[str, float] = {}
    for b in range(batches):
        idx = order[b * batch : (b + 1) * batch]
        x = x_all[idx].float() / 127.5 - 1
        losses = trainer.step(x, y_all[idx], gen)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        if progress:
            progress(epoch, b + 1, batches, losses)
    return batches * min(batch, n), {k: round(v / batches, 5) for k, v in sums.items()}


def _quality(
    sampler: Sampler, images: np.ndarray, classes: np.ndarray, config: ZooConfig
) -> dict[str, Any]:
    """SWD of generated vs REAL training images (same class mix), and of two disjoint halves
    of the REAL images (the floor)."""
    rng = np.random.default_rng(config.seed)
    k = min(config.quality_images, len(images) // 2)
    picked = rng.permutation(len(images))
    real_a, real_b = picked[:k], picked[k : 2 * k]
    made = []
    for s in range(0, k, 250):
        chunk = real_a[s : s + 250]
        made.append(
            sampler.generate(
                [int(max(c, 0)) for c in classes[chunk]],
                [10_000_000 + int(i) for i in range(s, s + len(chunk))],
            )
        )
    generated = np.concatenate(made)
    return {
        "metric": "swd",
        "images": k,
        "swd": sliced_wasserstein(generated, images[real_b]),
        "swd_real_vs_real": sliced_wasserstein(images[real_a], images[real_b]),
    }


def _write_training(
    folder: GeneratorFolder,
    config: ZooConfig,
    history: list[dict[str, Any]],
    images: int,
    unclassed: int,
    params: dict[str, int],
    quality: dict[str, Any] | None,
) -> dict[str, Any]:
    import torch

    record = {
        "family": config.family,
        "pixels": family_info(config.family).pixels,
        "dataset": config.dataset,
        "train_images": images,
        "train_images_without_class": unclassed,
        "epochs_done": len(history),
        "epochs": config.epochs,
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "parameters": params,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "history": history,
        "quality": quality,
    }
    atomic_write_text(folder.training_path, json_text(record))
    return json.loads(json_text(record))
