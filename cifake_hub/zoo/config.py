"""ZooConfig: what `cifake zoo train` trains (saved as a generator folder's zoo_config.json;
a loader rebuilds the networks from it)."""

from __future__ import annotations

from dataclasses import dataclass

from cifake_hub.config import Config, option
from cifake_hub.errors import ConfigError
from cifake_hub.zoo.families import FAMILIES, family_info

PRESETS = ("default", "tiny")


@dataclass(frozen=True)
class ZooConfig(Config):
    family: str = option(help="generator family", positional=True, choices=lambda: tuple(FAMILIES))
    preset: str = option("default", "size: default (the measured one) or tiny (tests: seconds)",
                         choices=PRESETS)  # fmt: skip
    epochs: int | None = option(None, "epochs (default: the preset's)")
    batch_size: int | None = option(None, "batch size (default: the preset's)")
    lr: float | None = option(None, "learning rate (default: the preset's)")
    max_images: int | None = option(
        None, "REAL train rows used, class-stratified (default: the preset's; all for default)"
    )
    seed: int = option(0, "seed of the initial weights, data order and noise")
    quality_images: int = option(2000, "images per set for the quality figure (SWD)")
    # Resolved from the family and preset (saved: a loader rebuilds the networks from them).
    width: int = option(0, cli=False)
    latent: int = option(0, cli=False)
    sampler_steps: int = option(0, cli=False)
    dataset: str = option("", cli=False)

    def __post_init__(self) -> None:
        info = family_info(self.family)
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose {' or '.join(PRESETS)}")
        preset = info.presets[self.preset]
        resolved = {
            "epochs": self.epochs if self.epochs is not None else preset.epochs,
            "batch_size": self.batch_size or preset.batch_size,
            "lr": self.lr if self.lr is not None else preset.lr,
            "max_images": self.max_images if self.max_images is not None else preset.max_images,
            "width": self.width or preset.width,
            "latent": self.latent or preset.latent,
            "sampler_steps": self.sampler_steps or preset.sampler_steps,
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        checks = [
            (int(self.epochs or 0) >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (int(self.batch_size or 0) >= 2, f"batch size must be >= 2, got {self.batch_size}"),
            (float(self.lr or 0) > 0, f"learning rate must be > 0, got {self.lr}"),
            (
                self.max_images is None or self.max_images >= 2,
                f"max images must be >= 2, got {self.max_images}",
            ),
            (self.quality_images >= 10, f"quality images must be >= 10, got {self.quality_images}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
