"""FAKE rows from a zoo generator (`cifake zoo train`) in `cifake build`:
``--generator GEN_DIR[:N]`` samples it (one seed per image, as for the diffusion
generators), ``--generator aligned:GEN_DIR[:N][,t=T]`` makes twins of the build's REAL rows
(the VAE's reconstruction; the DDPM's denoising of the image noised to timestep T): image
``i`` of a class is the twin of the class's ``i``-th REAL row of the same split, so a twin
keeps its source row's class and split, and its provenance names that row.

GEN_DIR is a local generator folder or a Hub model repo of one. Zoo generators run on the
CPU: they are small, and CPU kernels give the same pixels for the same seed and batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.builders.generate import (
    FakeImageGenerator,
    Generated,
    GeneratorConfig,
    Job,
    Settings,
    image_seed,
)
from cifake_hub.errors import ConfigError
from cifake_hub.images import encode_png, read_rgb, resize_to_final
from cifake_hub.schema import CLASS_NAMES, FAKE, make_row
from cifake_hub.zoo.families import family_info, reconstructing
from cifake_hub.zoo.folder import ALIGNED, GeneratorFolder, is_aligned, is_zoo_folder, zoo_name
from cifake_hub.zoo.sample import DEFAULT_T, ZooGenerator, resolve_generator_folder

SOURCE = "zoo"
# split -> class -> the build's REAL rows of that class, in the order they are written.
RealRows = Callable[[str], dict[int, list[dict[str, Any]]]]


class ZooImageGenerator:
    """The `FakeImageGenerator` interface over a zoo generator (samples or aligned twins)."""

    def __init__(
        self, config: GeneratorConfig, *, label: int | None, real_rows: RealRows | None
    ) -> None:
        self.config = config
        self.label = label
        self.aligned = is_aligned(config.model_id)
        spec = config.model_id[len(ALIGNED) :] if self.aligned else config.model_id
        self.zoo = ZooGenerator(resolve_generator_folder(spec))
        family = self.zoo.family
        if self.aligned and not self.zoo.sampler.reconstructs:
            raise ConfigError(
                f"--generator {config.model_id}: a {family} cannot reconstruct an image, so it "
                f"makes no aligned twins ({', '.join(reconstructing())} do); give it without "
                "aligned:"
            )
        if self.aligned and real_rows is None:
            raise ConfigError(f"--generator {config.model_id}: aligned twins need REAL rows")
        self.real_rows = real_rows
        self._real: dict[str, dict[int, list[dict[str, Any]]]] = {}
        self.t = config.noise_t or DEFAULT_T
        scheduler = family_info(family).scheduler  # a diffusion family's ("": one pass)
        self.diffusion = bool(scheduler)
        if scheduler and config.steps:  # `,steps=S` (or --steps): its steps; GANs/VAEs have none
            self.zoo.sampler.steps = config.steps
        self.settings = Settings(
            family=f"aligned-{family}" if self.aligned else family,
            scheduler=(scheduler + (f"(t={self.t})" if self.aligned else "")) if scheduler else "",
            steps=self.zoo.sampler.steps if scheduler else 0,
            guidance_scale=0.0,
            render_size=32,
            extra=(),
        )
        self.device = "cpu"
        self.blacked_out = 0  # zoo generators have no safety checker
        self.summary = self._summary(spec)

    def _summary(self, spec: str) -> dict[str, Any]:
        """What the dataset card says of this generator: family, training, where it is."""
        training = self.zoo.folder.training()
        quality = training.get("quality") or {}
        local = Path(spec).exists()
        return {
            "family": self.zoo.family,
            "aligned": self.aligned,
            "t": self.t if self.aligned and self.diffusion else None,
            "epochs": training.get("epochs_done"),
            "train_images": training.get("train_images"),
            "train_seconds": training.get("train_seconds"),
            "swd": quality.get("swd"),
            "swd_real_vs_real": quality.get("swd_real_vs_real"),
            "weights_sha256": self.zoo.weights_hash,
            "folder": Path(spec).name if local else None,
            "repo_id": None if local else spec,
        }

    def _twin_sources(self, jobs: list[Job]) -> list[dict[str, Any]]:
        assert self.real_rows is not None
        rows = []
        for job in jobs:
            if job.split not in self._real:
                self._real[job.split] = self.real_rows(job.split)
            of_class = self._real[job.split].get(job.category, [])
            if job.index >= len(of_class):
                raise ConfigError(
                    f"--generator {self.config.model_id}: {job.split} {CLASS_NAMES[job.category]} "
                    f"has {len(of_class)} REAL rows, but twin {job.index} was asked for; aligned "
                    "twins need a REAL row each: lower its share or the per-class count"
                )
            rows.append(of_class[job.index])
        return rows

    def generate(self, jobs: list[Job]) -> list[Generated]:
        cfg, run = self.config, self.settings
        seeds = [image_seed(cfg.seed, job) for job in jobs]
        classes = [job.category for job in jobs]
        sources: list[dict[str, Any] | None] = [None] * len(jobs)
        if self.aligned:
            twins = self._twin_sources(jobs)
            sources = list(twins)
            pixels = np.stack(
                [resize_to_final(read_rgb(r["image"]["bytes"], where=_where(r))) for r in twins]
            )  # fmt: skip
            images = self.zoo.sampler.reconstruct(pixels, classes, seeds, t=self.t)
        else:
            images = self.zoo.sampler.generate(classes, seeds)
        out = []
        for i, (job, image, source) in enumerate(zip(jobs, images, sources, strict=True)):
            seeded = self.diffusion or not self.aligned  # a VAE twin is the posterior mean: no draw
            provenance: dict[str, Any] = {
                "source": SOURCE if source is None else f"{ALIGNED}{source['source']}",
                "source_file": None if source is None else source["source_file"],
                "source_index": job.index if source is None else source["source_index"],
            }
            row = make_row(
                encode_png(image),
                FAKE,
                job.category,
                image_path=f"{job.split}-fake-{job.category}-{job.index}.png",
                generator=self.label,
                **provenance,
                seed=seeds[i] if seeded else None,
                model_id=zoo_name(cfg.model_id),
                scheduler=run.scheduler or None,
                steps=run.steps or None,
                render_size=32,
                batch_size=len(jobs),
                batch_index=i,
                family=run.family,
                weights_sha256=self.zoo.weights_hash,
            )
            out.append(Generated(job, row, 1))
        return out


def is_hub_zoo(model_id: str) -> bool:
    """Whether ``model_id`` is a Hub model repo holding a zoo generator (not a path, not a
    diffusers text-to-image repo); False when the Hub cannot be asked."""
    if Path(model_id).exists() or model_id.count("/") != 1:
        return False
    from huggingface_hub import file_exists

    try:
        return bool(file_exists(model_id, GeneratorFolder.CONFIG))
    except Exception:  # offline, unknown repo, bad id: not a zoo repo as far as we can tell
        return False


def open_generator(config: GeneratorConfig, label: int | None, real_rows: RealRows | None) -> Any:
    """The generator of a ``--generator`` value: a zoo generator (folder, Hub repo,
    ``aligned:``) or a diffusers pipeline."""
    model_id = config.model_id
    if is_aligned(model_id) or is_zoo_folder(model_id) or is_hub_zoo(model_id):
        return ZooImageGenerator(config, label=label, real_rows=real_rows)
    return FakeImageGenerator(config, label=label)


def _where(row: dict[str, Any]) -> str:
    return f"REAL row {row['source_file'] or row['source']}#{row['source_index']}"
