"""FAKE images with a diffusers text-to-image pipeline. With Stable Diffusion 1.4 it is the
paper's recipe: Table 1 prompts, Euler Ancestral, 50 steps, 512 px renders resized to 32 px
with bilinear interpolation. Any other text-to-image model loads through diffusers'
``AutoPipelineForText2Image``, with its family's policy (:data:`FAMILIES`): Euler Ancestral
where the model's scheduler config allows it (as in the paper), its own scheduler otherwise
(flow-matching models), its native render size, and the family's steps and guidance unless
given; every row records what was used.

Reproducibility: every image has its own CPU ``torch.Generator``, seeded from (base seed,
split, class, index, attempt). Euler Ancestral draws fresh noise at every step from that
generator, so the seed fixes the whole trajectory and any image can be made again alone.
On GPUs the batch size can still change pixels, so rows record it.

SD 1.4's safety checker replaces flagged images with black ones, which a detector would
learn to spot: such images are made again with the next attempt's seed, and the row
records the seed actually used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifake_hub.builders import tiny_pipeline
from cifake_hub.builders.prompts import prompt_for
from cifake_hub.config import Config, option
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.images import encode_png, resize_to_final
from cifake_hub.schema import FAKE, PAPER_GENERATOR, TINY_MODEL_IDS, make_row
from cifake_hub.zoo.folder import is_aligned, is_zoo_folder, zoo_name

DEFAULT_MODEL = PAPER_GENERATOR
SOURCE = "generator"
TINY_SIZE = 64  # random-weight pipelines render small: they make noise at any size


@dataclass(frozen=True)
class GeneratorConfig(Config):
    # The build's `--generator` values (BuildConfig.generators) each set this field.
    model_id: str = option(DEFAULT_MODEL, cli=False)
    steps: int | None = option(None, "denoising steps (default: the family's; SD 1.x: 50)")
    guidance_scale: float | None = option(
        None, "classifier-free guidance scale (default: the family's; SD 1.x: 7.5)"
    )
    render_size: int = option(
        0,
        "render size in pixels, for every generator; 0: each model's native size (SD 1.4: "
        f"512; {TINY_SIZE} for the tiny ones)",
    )
    batch_size: int = option(8, "images per pipeline call")
    device: str = option("auto", "auto, cuda[:N], mps or cpu")
    seed: int = option(0, "base seed: each image's seed comes from it, its split, class, index")
    max_attempts: int = option(
        5, "renders per image before a blacked-out image is an error", cli=False
    )
    # aligned:GEN_DIR of a ddpm: the timestep REAL images are noised to (``,t=T``).
    noise_t: int | None = option(None, cli=False)

    def __post_init__(self) -> None:
        checks = [
            (self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (
                self.guidance_scale is None or self.guidance_scale >= 0,
                f"guidance scale must be >= 0, got {self.guidance_scale}",
            ),
            (
                self.render_size == 0 or (self.render_size >= 8 and self.render_size % 8 == 0),
                f"render size must be a multiple of 8 (>= 8), got {self.render_size}",
            ),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.max_attempts >= 1, f"max attempts must be >= 1, got {self.max_attempts}"),
            (
                self.noise_t is None or 0 < self.noise_t < 1000,
                f"t must be in (0, 1000), got {self.noise_t}",
            ),
            (
                self.device == "auto" or self.device.split(":")[0] in ("cuda", "mps", "cpu"),
                f"device must be auto, cuda[:N], mps or cpu, got {self.device!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def recorded_model_id(self) -> str:
        return recorded_id(self.model_id)


def recorded_id(model_id: str) -> str:
    """The ``model_id`` (and ``generator`` name) rows of ``model_id`` record."""
    if is_aligned(model_id) or is_zoo_folder(model_id):
        return zoo_name(model_id)
    return TINY_MODEL_IDS.get(model_id, model_id)


@dataclass(frozen=True)
class GeneratorSpec:
    """One ``--generator`` value: ``MODEL[:N][,steps=S][,guidance=G][,size=R][,t=T]``.

    ``N`` is the generator's share of each class's FAKE quota (given for all generators or
    for none: none splits it evenly); the settings override the shared ones for this
    generator only."""

    model_id: str
    share: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    render_size: int | None = None
    noise_t: int | None = None

    @classmethod
    def parse(cls, text: str) -> GeneratorSpec:
        head, *settings = [part.strip() for part in text.split(",")]
        model_id, share = head, None
        name, sep, count = head.rpartition(":")
        if sep and count.isdigit():  # a local path may hold ':' too, but not end in ':digits'
            model_id, share = name, int(count)
        values: dict[str, Any] = {}
        for item in settings:
            key, _, value = item.partition("=")
            field, kind = _SPEC_SETTINGS.get(key.strip(), (None, None))
            try:
                if field is None or kind is None:
                    raise ValueError
                values[field] = kind(value)
            except ValueError:
                raise ConfigError(
                    f"--generator {text!r}: cannot read {item!r}; write "
                    "MODEL[:N][,steps=S][,guidance=G][,size=R][,t=T]"
                ) from None
        if not model_id or (share is not None and share < 1):
            raise ConfigError(
                f"--generator {text!r}: need a model id and a share N >= 1 (MODEL[:N])"
            )
        return cls(model_id, share, **values)

    def config(self, shared: GeneratorConfig) -> GeneratorConfig:
        """The shared settings with this generator's model and overrides."""
        return dataclasses.replace(
            shared,
            model_id=self.model_id,
            steps=self.steps if self.steps is not None else shared.steps,
            guidance_scale=self.guidance_scale
            if self.guidance_scale is not None
            else shared.guidance_scale,
            # 0 again: the new model's native size, unless given for it or for all.
            render_size=self.render_size or shared.render_size,
            noise_t=self.noise_t if self.noise_t is not None else shared.noise_t,
        )


_SPEC_SETTINGS: dict[str, tuple[str, Any]] = {
    "steps": ("steps", int),
    "guidance": ("guidance_scale", float),
    "size": ("render_size", int),
    "t": ("noise_t", int),
}


@dataclass(frozen=True)
class Family:
    """How a family of pipelines is driven when the user does not say otherwise. Adding one
    is one :func:`register_family` call."""

    name: str
    steps: int
    guidance_scale: float
    pipelines: tuple[str, ...] = ()  # the diffusers pipeline classes it drives, by name
    # Its random-weight twin for offline tests and demos: (the --generator value, a builder).
    tiny: tuple[str, Callable[[], Any]] | None = None


FAMILIES: dict[str, Family] = {}
OTHER_FAMILY = Family("other", 50, 7.5)


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    if family.tiny is not None:
        TINY_MODEL_IDS.setdefault(family.tiny[0], f"tiny-random-{family.name}")
    return family


def family_of(pipe: Any) -> Family:
    kind = type(pipe).__name__
    return next((f for f in FAMILIES.values() if kind in f.pipelines), OTHER_FAMILY)


# SD 1.x/2.x keep the paper's settings; the others use their model cards' usual values.
register_family(
    Family("sd", 50, 7.5, ("StableDiffusionPipeline",), ("tiny", tiny_pipeline.build_tiny_pipeline))
)
register_family(
    Family(
        "sdxl",
        50,
        5.0,
        ("StableDiffusionXLPipeline",),
        ("tiny-sdxl", tiny_pipeline.build_tiny_sdxl_pipeline),
    )
)
register_family(
    Family(
        "pixart",
        20,
        4.5,
        ("PixArtAlphaPipeline", "PixArtSigmaPipeline"),
        ("tiny-pixart", tiny_pipeline.build_tiny_pixart_pipeline),
    )
)
register_family(Family("sd3", 28, 7.0, ("StableDiffusion3Pipeline",)))
register_family(Family("flux", 28, 3.5, ("FluxPipeline",)))


@dataclass(frozen=True)
class Settings:
    """What a generator actually runs with (the config resolved against the pipeline)."""

    family: str
    scheduler: str
    steps: int
    guidance_scale: float
    render_size: int
    extra: tuple[tuple[str, Any], ...]  # pipeline-specific call arguments


def resolve_settings(config: GeneratorConfig, pipe: Any) -> Settings:
    """The family's policy for ``pipe``, with the user's values where given."""
    import inspect

    family = family_of(pipe)
    tiny = config.model_id in TINY_MODEL_IDS
    accepts = inspect.signature(pipe.__call__).parameters
    extra = []
    if "clean_caption" in accepts:  # PixArt: needs bs4/ftfy, changes prompts
        extra.append(("clean_caption", False))
    if "use_resolution_binning" in accepts:  # PixArt: snaps sizes to its training bins
        extra.append(("use_resolution_binning", False))
    return Settings(
        family=family.name,
        scheduler=type(pipe.scheduler).__name__,
        steps=config.steps or family.steps,
        guidance_scale=family.guidance_scale
        if config.guidance_scale is None
        else config.guidance_scale,
        render_size=config.render_size or (TINY_SIZE if tiny else native_size(pipe)),
        extra=tuple(extra),
    )


def native_size(pipe: Any) -> int:
    """The render size a pipeline makes by default (its denoiser's sample size in pixels)."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
    factor = getattr(pipe, "vae_scale_factor", 8)
    if isinstance(sample, (list, tuple)):
        sample = sample[0]
    return int(sample * factor) if sample else 512


@dataclass(frozen=True)
class Job:
    """One FAKE image to make."""

    split: str
    category: int
    index: int

    @property
    def key(self) -> str:
        return f"{self.split}/FAKE/{self.category}/{self.index}"


def image_seed(base: int, job: Job, attempt: int = 0) -> int:
    """A 63-bit seed from (base seed, split, class, index, attempt), stable across runs."""
    text = f"cifake:{base}:{job.split}:{job.category}:{job.index}:{attempt}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


def pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"device {requested!r} asked for, but torch sees no CUDA GPU; use --device cpu"
            )
        return requested
    if torch.cuda.is_available():
        # Under torchrun / accelerate launch each process on a node takes its own GPU.
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_pipeline(config: GeneratorConfig, device: str) -> Any:
    """The diffusers pipeline, with Euler Ancestral built from the model's scheduler config
    where the scheduler is one Euler Ancestral can replace (as the paper did for SD 1.4)."""
    import torch
    from diffusers import AutoPipelineForText2Image, EulerAncestralDiscreteScheduler

    tiny = {f.tiny[0]: f.tiny[1] for f in FAMILIES.values() if f.tiny is not None}
    if config.model_id in tiny:
        pipe = tiny[config.model_id]()
    else:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(config.model_id, torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            raise CifakeError(
                f"cannot load {config.model_id!r} ({type(exc).__name__}); without network, give "
                "a local folder (--generator PATH), or download it once and set "
                "HF_HUB_OFFLINE=1 to use the Hub cache"
            ) from exc
    if EulerAncestralDiscreteScheduler in getattr(pipe.scheduler, "compatibles", []):
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    # diffusers uses PyTorch's scaled-dot-product attention by default (torch >= 2).
    return pipe.to(device)


@dataclass
class Generated:
    job: Job
    row: dict[str, Any]
    attempts: int  # renders made (1 unless the safety checker blacked one out)


class FakeImageGenerator:
    """Makes FAKE rows for jobs, in batches, with one generator per image."""

    def __init__(
        self, config: GeneratorConfig, pipeline: Any | None = None, *, label: int | None = None
    ):
        self.config = config
        self.label = label  # the rows' ``generator`` value (index in the dataset's names)
        self.device = pick_device(config.device)
        self.pipe = pipeline if pipeline is not None else load_pipeline(config, self.device)
        self.settings = resolve_settings(config, self.pipe)
        self.blacked_out = 0  # renders replaced because the safety checker blacked them out

    def render(self, prompts: list[str], seeds: list[int]) -> tuple[np.ndarray, list[bool]]:
        """Renders (N, R, R, 3) uint8 and whether each was blacked out."""
        import torch

        run = self.settings
        out = self.pipe(
            prompt=prompts,
            num_inference_steps=run.steps,
            guidance_scale=run.guidance_scale,
            height=run.render_size,
            width=run.render_size,
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            output_type="np",
            **dict(run.extra),
        )
        images = np.clip(np.round(np.asarray(out.images) * 255), 0, 255).astype(np.uint8)
        # Only pipelines with a safety checker say what it flagged.
        flagged = list(getattr(out, "nsfw_content_detected", None) or [False] * len(images))
        black = [bool(f) or int(img.max()) == 0 for f, img in zip(flagged, images, strict=True)]
        return images, black

    def generate(self, jobs: list[Job]) -> list[Generated]:
        """One batch (at most ``batch_size`` jobs); blacked-out images are made again."""
        cfg = self.config
        attempts = [0] * len(jobs)
        done: dict[int, np.ndarray] = {}
        todo = list(range(len(jobs)))
        while todo:
            prompts = [prompt_for(jobs[i].category, jobs[i].index) for i in todo]
            seeds = [image_seed(cfg.seed, jobs[i], attempts[i]) for i in todo]
            renders, black = self.render(prompts, seeds)
            retry = []
            for i, render, is_black in zip(todo, renders, black, strict=True):
                attempts[i] += 1
                if not is_black:
                    done[i] = render
                elif attempts[i] >= cfg.max_attempts:
                    raise CifakeError(
                        f"{jobs[i].key}: blacked out by the safety checker {attempts[i]} times; "
                        "raise --max-attempts or check the prompt"
                    )
                else:
                    self.blacked_out += 1
                    retry.append(i)
            todo = retry
        return [self._row(job, done[i], attempts[i], len(jobs), i) for i, job in enumerate(jobs)]

    def _row(
        self, job: Job, render: np.ndarray, attempts: int, batch: int, position: int
    ) -> Generated:
        cfg, run = self.config, self.settings
        row = make_row(
            encode_png(resize_to_final(render)),
            FAKE,
            job.category,
            image_path=f"{job.split}-fake-{job.category}-{job.index}.png",
            generator=self.label,
            source=SOURCE,
            source_index=job.index,
            prompt=prompt_for(job.category, job.index),
            seed=image_seed(cfg.seed, job, attempts - 1),
            model_id=cfg.recorded_model_id,
            scheduler=run.scheduler,
            steps=run.steps,
            guidance_scale=run.guidance_scale,
            render_size=run.render_size,
            batch_size=batch,
            batch_index=position,
            family=run.family,
        )
        return Generated(job, row, attempts)

    def regenerate(self, job: Job, batch_size: int, batch_index: int = 0) -> Generated:
        """Make one image again, alone: a batch of the size and at the position it was made
        in (its row's ``batch_size`` and ``batch_index``), filled with copies of itself,
        each with its own generator seeded alike. Kernels can round differently by batch
        size and position, so both are kept for an exact copy."""
        return self.generate([job] * batch_size)[batch_index]
