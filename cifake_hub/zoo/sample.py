"""Images from a zoo generator: new samples (one seed per image) and aligned twins of given
images (reconstructions), from networks in memory or a generator folder (local or Hub)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.errors import CifakeError
from cifake_hub.outputs import read_marker
from cifake_hub.zoo.config import ZooConfig
from cifake_hub.zoo.families import family_info
from cifake_hub.zoo.folder import GeneratorFolder

DEFAULT_T = 300  # ddpm twins: the timestep a REAL image is noised to before denoising


def to_uint8(x: Any) -> np.ndarray:
    """[-1, 1] NCHW tensor -> uint8 NHWC array."""
    pixels = ((x.detach().clamp(-1, 1) + 1) * 127.5).round().to(dtype=_uint8())
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy())


def from_uint8(images: np.ndarray) -> Any:
    """uint8 NHWC array -> [-1, 1] float NCHW tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _uint8() -> Any:
    import torch

    return torch.uint8


class Sampler:
    """A family's sampler networks (in eval mode while sampling)."""

    def __init__(self, family: str, nets: dict[str, Any], latent: int, steps: int):
        self.family = family
        self.nets = nets
        self.latent = latent
        self.steps = steps  # the sampling scheduler's steps (a diffusion family)

    @property
    def reconstructs(self) -> bool:
        return family_info(self.family).reconstructs

    def generate(self, classes: list[int], seeds: list[int]) -> np.ndarray:
        """One image per (class, seed), (N, 32, 32, 3) uint8; the same seed makes the same
        image."""
        import torch

        y = torch.tensor(classes, dtype=torch.long)
        with _eval(self.nets), torch.no_grad():
            x = family_info(self.family).generate(self.nets, y, seeds, self.latent, self.steps)
        return to_uint8(x)

    def reconstruct(
        self, images: np.ndarray, classes: list[int], seeds: list[int], t: int = DEFAULT_T
    ) -> np.ndarray:
        """Aligned twins of ``images`` (uint8 NHWC): the VAE's decoding of the posterior mean,
        or the DDPM's denoising of the image noised to timestep ``t`` (seeded noise)."""
        import torch

        family = family_info(self.family)
        y = torch.tensor(classes, dtype=torch.long)
        x0 = from_uint8(images)
        with _eval(self.nets), torch.no_grad():
            x = family.reconstruct(self.nets, x0, y, seeds, self.steps, t)
        return to_uint8(x)


class _eval:
    """Networks in eval mode inside the block, back to their previous mode after."""

    def __init__(self, nets: dict[str, Any]):
        self.nets = nets
        self.modes: dict[str, bool] = {}

    def __enter__(self) -> None:
        for k, net in self.nets.items():
            self.modes[k] = net.training
            net.eval()

    def __exit__(self, *_: object) -> None:
        for k, net in self.nets.items():
            net.train(self.modes[k])


def weights_hash(folder: GeneratorFolder) -> str:
    """sha256 of the generator's weight files (first 16 hex digits): rows record it."""
    digest = hashlib.sha256()
    files = (
        [folder.weights]
        if folder.weights.exists()
        else sorted(p for p in folder.pipeline.rglob("*.safetensors"))
    )
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class ZooGenerator:
    """A trained zoo generator loaded from its folder."""

    def __init__(self, path: str | Path):
        self.folder = GeneratorFolder(path).require()
        try:
            self.config = ZooConfig.load(self.folder.config_path)
            family = family_info(self.config.family)
            nets = family.build_nets(self.config.width, self.config.latent)
            family.load(nets, self.folder)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CifakeError(
                f"cannot load the generator in {self.folder.path} ({type(exc).__name__}: "
                f"{first}); train it again with `cifake zoo train`"
            ) from exc
        sampler_nets = {role: nets[role] for role in family.sampler_roles}
        self.sampler = Sampler(
            self.config.family, sampler_nets, self.config.latent, self.config.sampler_steps
        )
        self.weights_hash = weights_hash(self.folder)

    @property
    def family(self) -> str:
        return self.config.family


def resolve_generator_folder(spec: str) -> Path:
    """A local generator folder, or a Hub model repo id of one (downloaded to the cache)."""
    path = Path(spec)
    if path.exists():
        marker = read_marker(path) if path.is_dir() else None
        if marker is None or marker["kind"] != GeneratorFolder.KIND:
            GeneratorFolder(path).require()  # one line saying what the folder is instead
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(spec, allow_patterns=list(GeneratorFolder.PUBLISHED)))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise CifakeError(
            f"cannot get generator {spec!r} from the Hub ({type(exc).__name__}); give a "
            "generator folder (`cifake zoo train`), or check the repo id, HF_TOKEN and network"
        ) from exc
    GeneratorFolder(folder).require()
    return folder
