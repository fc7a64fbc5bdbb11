"""The generator folder (GEN_DIR) that `cifake zoo train` writes and `cifake build
--generator GEN_DIR` reads; it is also exactly what a Hub model repo of a zoo generator holds::

    zoo_config.json        ZooConfig: family, preset, resolved sizes, data, seed
    model.safetensors      the sampler's weights (GANs: generator; vae: encoder + decoder)
    pipeline/              ddpm: the diffusers pipeline folder (save_pretrained)
    training.json          per-epoch losses and seconds, the quality figure, total time
    samples.png            the final sample grid (a row of ten per class)
    samples/epoch-NNN.png  a preview grid after every epoch (six per class)
    checkpoint/last.pt     the resume point (networks, optimizers, epoch; not published)
    README.md              the model card
    .cifake-output.json    the marker: cifake wrote this folder

Every file name of the folder is written here only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from cifake_hub.errors import CifakeError
from cifake_hub.outputs import OutputFolder, read_json, read_marker

ALIGNED = "aligned:"  # `cifake build --generator aligned:GEN_DIR`: twins of REAL rows


class GeneratorFolder(OutputFolder):
    KIND = "generator"
    WHAT = "generator folder"
    CONFIG: ClassVar[str] = "zoo_config.json"
    WEIGHTS: ClassVar[str] = "model.safetensors"
    PIPELINE: ClassVar[str] = "pipeline"
    TRAINING: ClassVar[str] = "training.json"
    GRID: ClassVar[str] = "samples.png"
    SAMPLES: ClassVar[str] = "samples"
    CHECKPOINTS: ClassVar[str] = "checkpoint"
    CARD: ClassVar[str] = "README.md"
    # What a Hub model repo of a generator holds (no checkpoints, no per-epoch grids).
    PUBLISHED: ClassVar[tuple[str, ...]] = (CONFIG, WEIGHTS, f"{PIPELINE}/*", f"{PIPELINE}/*/*",
                                            TRAINING, GRID, CARD)  # fmt: skip

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def pipeline(self) -> Path:
        return self.path / self.PIPELINE

    @property
    def training_path(self) -> Path:
        return self.path / self.TRAINING

    @property
    def grid(self) -> Path:
        return self.path / self.GRID

    @property
    def card(self) -> Path:
        return self.path / self.CARD

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINTS / "last.pt"

    def epoch_grid(self, epoch: int) -> Path:
        return self.path / self.SAMPLES / f"epoch-{epoch:03d}.png"

    def training(self) -> dict[str, Any]:
        """training.json (empty before the first epoch ends)."""
        path = self.training_path
        return read_json(path) if path.exists() else {}

    def is_generator(self) -> bool:
        """Whether the folder holds a finished zoo generator (config and weights)."""
        return self.config_path.exists() and (self.weights.exists() or self.pipeline.is_dir())

    def require(self) -> GeneratorFolder:
        """This folder when it holds a finished generator; one error line otherwise."""
        if self.is_generator():
            return self
        marker = read_marker(self.path)
        if marker is not None and marker["kind"] == self.KIND:
            raise CifakeError(
                f"{self.path} holds a generator whose training has not finished; run its "
                "`cifake zoo train` command again to finish it"
            )
        found = "not a generator folder"
        if marker is not None:
            found = f"a cifake-hub {marker['kind']} folder, not a generator"
        raise CifakeError(
            f"{self.path} is {found} ({self.CONFIG} and {self.WEIGHTS} or {self.PIPELINE}/); "
            "train one with `cifake zoo train FAMILY DATASET --out GEN_DIR`"
        )


def is_aligned(model_id: str) -> bool:
    return model_id.startswith(ALIGNED)


def is_zoo_folder(model_id: str) -> bool:
    """Whether a ``--generator`` value names a local zoo generator folder (or its aligned use)."""
    path = Path(model_id[len(ALIGNED) :] if is_aligned(model_id) else model_id)
    return (path / GeneratorFolder.CONFIG).is_file()


def zoo_name(model_id: str) -> str:
    """The ``generator`` value of a zoo generator's rows: a local folder by its name (a path
    means nothing elsewhere), a Hub repo by its id; ``aligned:`` kept in front."""
    inner = model_id[len(ALIGNED) :] if is_aligned(model_id) else model_id
    path = Path(inner)
    name = path.name if (path / GeneratorFolder.CONFIG).is_file() else inner
    return f"{ALIGNED}{name}" if is_aligned(model_id) else name
