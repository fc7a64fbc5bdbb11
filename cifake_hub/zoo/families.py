"""The zoo's generator families: their networks, one training step, sampling and (where the
family can) reconstruction of a given image.

Each family makes pixels its own way, which is the point of a zoo for detector training:

- ``dcgan``: a GAN whose generator upsamples with transposed convolutions (Radford et al.
  2016), trained with the non-saturating loss;
- ``upconv-gan``: a GAN whose generator upsamples by bilinear interpolation followed by a
  3x3 convolution (no transposed convolutions: no checkerboard), with a spectrally
  normalised discriminator and the hinge loss (Miyato et al. 2018);
- ``vae``: a convolutional VAE whose decoder upsamples by sub-pixel convolution
  (``PixelShuffle``); it reconstructs images (aligned fakes);
- ``ddpm``: a DDPM (Ho et al. 2020) on diffusers' ``UNet2DModel`` (nearest upsampling and
  convolutions), trained with ``DDPMScheduler`` and sampled with ``DDIMScheduler``; it
  reconstructs images by noising them to a timestep and denoising (aligned fakes).

All are class-conditional (the GANs' discriminators by projection, Miyato & Koyama 2018), so
the rows they make carry a CIFAR-10 class. Images are float tensors in [-1, 1], NCHW.
Everything random takes an explicit ``torch.Generator``: a training epoch's draws come from
its own seed (resuming repeats them exactly), and each sampled image has its own seed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cifake_hub.errors import ConfigError
from cifake_hub.zoo.folder import GeneratorFolder

if TYPE_CHECKING:
    import torch

NUM_CLASSES = 10


@dataclass(frozen=True)
class Preset:
    """A family's size: network widths, latent size, epochs and batch size."""

    width: int
    latent: int
    epochs: int
    batch_size: int
    lr: float
    max_images: int | None = None  # REAL training rows used (None: all)
    sampler_steps: int = 0  # DDIM steps when sampling (ddpm)


class Family:
    """A zoo generator family: its networks, one training step, how it samples and (if it
    can) how it reconstructs a given image. Adding one is a subclass registered with
    :func:`register_family`; `cifake zoo train`, the generator folder, its card,
    `cifake build --generator` and publishing take it from :data:`FAMILIES`."""

    name: ClassVar[str]
    pixels: ClassVar[str]  # how the family makes pixels, for cards and --help
    presets: ClassVar[dict[str, Preset]]  # "tiny" (tests: seconds) and "default"
    sampler_roles: ClassVar[tuple[str, ...]]  # the networks a sampler needs (GEN_DIR's weights)
    reconstructs: ClassVar[bool] = False  # can make aligned twins of REAL images
    scheduler: ClassVar[str] = ""  # a diffusion family's sampling scheduler ("": one pass)
    library: ClassVar[str] = "pytorch"  # the card's library_name
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)  # Adam's

    def build_nets(self, width: int, latent: int) -> dict[str, Any]:
        """The networks by role, freshly initialised from the global torch seed."""
        raise NotImplementedError

    def optimized(self, nets: dict[str, Any]) -> dict[str, Any]:
        """The modules that get an optimizer each, by name."""
        return dict(nets)

    def step(self, trainer: Trainer, x: Any, y: Any, gen: Any) -> dict[str, float]:
        """One optimisation step on a batch; returns its losses."""
        raise NotImplementedError

    def generate(self, nets: dict[str, Any], y: Any, seeds: list[int], latent: int,
                 steps: int) -> Any:  # fmt: skip
        """One image per (class, seed), a [-1, 1] NCHW tensor."""
        raise NotImplementedError

    def reconstruct(
        self, nets: dict[str, Any], x0: Any, y: Any, seeds: list[int], steps: int, t: int
    ) -> Any:
        """Aligned twins of the images ``x0`` (families that reconstruct)."""
        raise ConfigError(
            f"aligned: needs a family that reconstructs images ({', '.join(reconstructing())}); "
            f"{self.name!r} cannot; use it as --generator GEN_DIR instead"
        )

    def export(self, trainer: Trainer, folder: GeneratorFolder) -> None:
        """Write the sampler's weights into the generator folder (safetensors)."""
        from safetensors.torch import save_file

        tensors = {
            f"{role}.{k}": v.detach().contiguous()
            for role in self.sampler_roles
            for k, v in trainer.nets[role].state_dict().items()
        }
        tmp = folder.path / f".{GeneratorFolder.WEIGHTS}.{os.getpid()}.tmp"
        save_file(tensors, str(tmp), metadata={"family": self.name})
        os.replace(tmp, folder.weights)

    def load(self, nets: dict[str, Any], folder: GeneratorFolder) -> None:
        """Load the sampler's weights from the generator folder into ``nets``."""
        from safetensors.torch import load_file

        state = load_file(folder.weights)
        for role in self.sampler_roles:
            prefix = f"{role}."
            nets[role].load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )


TINY_IMAGES = 60  # the tiny presets train on this many REAL rows: seconds, for tests
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def reconstructing() -> list[str]:
    """The registered families that make aligned twins."""
    return [name for name, family in FAMILIES.items() if family.reconstructs]


def family_info(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown generator family {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def one_hot(y: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.one_hot(y, NUM_CLASSES).float()


def _projection_head(channels: int, sn: bool) -> Any:
    """A discriminator's head: a linear logit plus the projection of a class embedding."""
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    wrap = spectral_norm if sn else (lambda m: m)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = wrap(nn.Linear(channels, 1))
            self.embed = wrap(nn.Embedding(NUM_CLASSES, channels))

        def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            h = h.sum(dim=(2, 3))
            return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)

    return Head()


def _discriminator(features: Any, channels: int, sn: bool) -> Any:
    """Convolutional features, summed over space, then the projection head."""
    from torch import nn

    class D(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = features
            self.head = _projection_head(channels, sn)

        def forward(self, x: Any, y: Any) -> Any:
            return self.head(self.features(x), y)

    return D()


def _dcgan(w: int, latent: int) -> dict[str, Any]:
    import torch
    from torch import nn

    class G(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.ConvTranspose2d(latent + NUM_CLASSES, 4 * w, 4, 1, 0, bias=False),  # 4x4
                nn.BatchNorm2d(4 * w),
                nn.ReLU(True),
                nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),  # 8x8
                nn.BatchNorm2d(2 * w),
                nn.ReLU(True),
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),  # 16x16
                nn.BatchNorm2d(w),
                nn.ReLU(True),
                nn.ConvTranspose2d(w, 3, 4, 2, 1),  # 32x32
                nn.Tanh(),
            )

        def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([z, one_hot(y)], 1)[:, :, None, None])

    features = nn.Sequential(
        nn.Conv2d(3, w, 4, 2, 1),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),
        nn.BatchNorm2d(2 * w),
        nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False),
        nn.BatchNorm2d(4 * w),
        nn.LeakyReLU(0.2, True),
    )
    return {"generator": G(), "discriminator": _discriminator(features, 4 * w, sn=False)}


def _upconv_gan(w: int, latent: int) -> dict[str, Any]:
    import torch
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm as sn

    def up(c_in: int, c_out: int) -> list[nn.Module]:
        return [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(True),
        ]

    class G(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(latent + NUM_CLASSES, 4 * 4 * 4 * w)
            self.net = nn.Sequential(
                nn.BatchNorm2d(4 * w),
                nn.ReLU(True),
                *up(4 * w, 2 * w),  # 8x8
                *up(2 * w, w),  # 16x16
                *up(w, w),  # 32x32
                nn.Conv2d(w, 3, 3, 1, 1),
                nn.Tanh(),
            )

        def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            h = self.fc(torch.cat([z, one_hot(y)], 1)).view(-1, 4 * w, 4, 4)
            return self.net(h)

    lrelu = nn.LeakyReLU(0.1, True)
    features = nn.Sequential(
        sn(nn.Conv2d(3, w, 3, 1, 1)),
        lrelu,
        sn(nn.Conv2d(w, 2 * w, 4, 2, 1)),  # 16x16
        lrelu,
        sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)),  # 8x8
        lrelu,
        sn(nn.Conv2d(4 * w, 4 * w, 4, 2, 1)),  # 4x4
        lrelu,
    )
    return {"generator": G(), "discriminator": _discriminator(features, 4 * w, sn=True)}


def _vae(w: int, latent: int) -> dict[str, Any]:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, w, 4, 2, 1),  # 16x16
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),  # 8x8
                nn.BatchNorm2d(2 * w),
                nn.LeakyReLU(0.2, True),
                nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False),  # 4x4
                nn.BatchNorm2d(4 * w),
                nn.LeakyReLU(0.2, True),
                nn.Flatten(),
            )
            self.fc = nn.Linear(4 * w * 16 + NUM_CLASSES, 2 * latent)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mu, logvar = self.fc(torch.cat([self.net(x), one_hot(y)], 1)).chunk(2, dim=1)
            return mu, logvar.clamp(-30, 20)

    def up(c_in: int, c_out: int) -> list[nn.Module]:
        return [
            nn.Conv2d(c_in, 4 * c_out, 3, 1, 1, bias=False),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(c_out),
            nn.ReLU(True),
        ]

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(latent + NUM_CLASSES, 4 * w * 16)
            self.net = nn.Sequential(
                nn.ReLU(True),
                *up(4 * w, 2 * w),  # 8x8
                *up(2 * w, w),  # 16x16
                *up(w, w),  # 32x32
                nn.Conv2d(w, 3, 3, 1, 1),
                nn.Tanh(),
            )

        def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.net(self.fc(torch.cat([z, one_hot(y)], 1)).view(-1, 4 * w, 4, 4))

    return {"encoder": Encoder(), "decoder": Decoder()}


def ddpm_unet(w: int) -> Any:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(w, 2 * w, 2 * w),
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        layers_per_block=1,
        add_attention=False,  # attention at 8x8 costs more CPU time than it is worth here
        norm_num_groups=min(32, w),
        num_class_embeds=NUM_CLASSES,
    )


VAE_BETA = 0.1  # weight of the KL term against the summed squared error (sharper samples)


def ddpm_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


def seeded_noise(shape: tuple[int, ...], seeds: list[int]) -> Any:
    """One standard normal draw of ``shape`` per seed, stacked."""
    import torch

    return torch.stack(
        [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
    )


class _GAN(Family):
    sampler_roles = ("generator",)
    betas = (0.5, 0.999)
    hinge: ClassVar[bool] = False

    def step(self, trainer: Trainer, x: Any, y: Any, gen: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        g, d = trainer.nets["generator"], trainer.nets["discriminator"]
        opt_g, opt_d = trainer.optimizers["generator"], trainer.optimizers["discriminator"]
        n = x.shape[0]
        z = torch.randn(n, trainer.preset.latent, generator=gen)
        fake_y = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        fake = g(z, fake_y)
        real_out, fake_out = d(x, y), d(fake.detach(), fake_y)
        if self.hinge:
            loss_d = F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()
        else:
            loss_d = F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = d(fake, fake_y)
        loss_g = -out.mean() if self.hinge else F.softplus(-out).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    def generate(self, nets: dict[str, Any], y: Any, seeds: list[int], latent: int,
                 steps: int) -> Any:  # fmt: skip
        return nets["generator"](seeded_noise((latent,), seeds), y)


class DCGAN(_GAN):
    name = "dcgan"
    pixels = "transposed convolutions (GAN)"
    presets = {
        "tiny": Preset(8, 16, 3, 16, 2e-4, TINY_IMAGES),
        "default": Preset(32, 100, 25, 128, 2e-4),
    }

    def build_nets(self, width: int, latent: int) -> dict[str, Any]:
        return _dcgan(width, latent)


class UpconvGAN(_GAN):
    name = "upconv-gan"
    pixels = "bilinear upsampling + 3x3 convolutions, spectral norm, hinge loss (GAN)"
    presets = {
        "tiny": Preset(8, 16, 3, 16, 2e-4, TINY_IMAGES),
        "default": Preset(32, 100, 10, 128, 2e-4),
    }
    hinge = True

    def build_nets(self, width: int, latent: int) -> dict[str, Any]:
        return _upconv_gan(width, latent)


class VAE(Family):
    name = "vae"
    pixels = "sub-pixel convolutions (PixelShuffle), a convolutional VAE"
    presets = {
        "tiny": Preset(8, 8, 3, 16, 1e-3, TINY_IMAGES),
        "default": Preset(32, 128, 20, 128, 1e-3),
    }
    sampler_roles = ("encoder", "decoder")
    reconstructs = True

    def build_nets(self, width: int, latent: int) -> dict[str, Any]:
        return _vae(width, latent)

    def optimized(self, nets: dict[str, Any]) -> dict[str, Any]:
        from torch import nn

        # One optimizer for the encoder and decoder together.
        return {"vae": nn.ModuleList([nets["encoder"], nets["decoder"]])}

    def step(self, trainer: Trainer, x: Any, y: Any, gen: Any) -> dict[str, float]:
        import torch

        mu, logvar = trainer.nets["encoder"](x, y)
        z = mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()
        recon = trainer.nets["decoder"](z, y)
        n = x.shape[0]
        rec = (recon - x).pow(2).sum() / n
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / n
        loss = rec + VAE_BETA * kl
        opt = trainer.optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"recon": rec.item(), "kl": kl.item()}

    def generate(self, nets: dict[str, Any], y: Any, seeds: list[int], latent: int,
                 steps: int) -> Any:  # fmt: skip
        return nets["decoder"](seeded_noise((latent,), seeds), y)

    def reconstruct(
        self, nets: dict[str, Any], x0: Any, y: Any, seeds: list[int], steps: int, t: int
    ) -> Any:
        mu, _ = nets["encoder"](x0, y)  # the posterior mean: no draw
        return nets["decoder"](mu, y)


class DDPM(Family):
    name = "ddpm"
    pixels = "a denoising diffusion UNet (nearest upsampling + convolutions), DDIM sampling"
    presets = {
        "tiny": Preset(8, 0, 3, 16, 2e-4, TINY_IMAGES, sampler_steps=4),
        "default": Preset(32, 0, 16, 128, 2e-4, sampler_steps=50),
    }
    sampler_roles = ("unet",)
    reconstructs = True
    scheduler = "DDIMScheduler"
    library = "diffusers"

    def build_nets(self, width: int, latent: int) -> dict[str, Any]:
        return {"unet": ddpm_unet(width)}

    def step(self, trainer: Trainer, x: Any, y: Any, gen: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        scheduler = trainer.scheduler
        assert scheduler is not None, "a diffusion family's trainer has its noise schedule"
        n = x.shape[0]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        noisy = scheduler.add_noise(x, noise, t)
        pred = trainer.nets["unet"](noisy, t, class_labels=y).sample
        loss = F.mse_loss(pred, noise)
        opt = trainer.optimizers["unet"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def generate(self, nets: dict[str, Any], y: Any, seeds: list[int], latent: int,
                 steps: int) -> Any:  # fmt: skip
        return self._denoise(nets, seeded_noise((3, 32, 32), seeds), y, steps, start=None)

    def reconstruct(
        self, nets: dict[str, Any], x0: Any, y: Any, seeds: list[int], steps: int, t: int
    ) -> Any:
        noise = seeded_noise((3, 32, 32), seeds)
        return self._denoise(nets, noise, y, steps, start=(x0, t))

    def _denoise(
        self, nets: dict[str, Any], noise: Any, y: Any, steps: int, start: tuple[Any, int] | None
    ) -> Any:
        """DDIM (eta 0) from pure noise, or from ``start`` = (image, t) noised to t."""
        import torch
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(ddpm_scheduler().config)
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        if start is None:
            x = noise
        else:
            image, t = start
            total = scheduler.config.num_train_timesteps
            if not 0 < t < total:
                raise ConfigError(f"t must be in (0, {total}), got {t}")
            timesteps = timesteps[timesteps <= t]
            if len(timesteps) == 0:
                raise ConfigError(f"t={t} is below the first of {steps} DDIM steps")
            x = scheduler.add_noise(image, noise, torch.full((len(image),), int(timesteps[0])))
        unet = nets["unet"]
        for step in timesteps:
            eps = unet(x, step, class_labels=y).sample
            x = scheduler.step(eps, step, x, eta=0.0).prev_sample
        return x

    def export(self, trainer: Trainer, folder: GeneratorFolder) -> None:
        """A diffusers pipeline folder (``save_pretrained``), swapped in whole."""
        from diffusers import DDPMPipeline

        pipe = DDPMPipeline(unet=trainer.nets["unet"], scheduler=trainer.scheduler)
        tmp = folder.path / f".{GeneratorFolder.PIPELINE}.{os.getpid()}.tmp"
        pipe.save_pretrained(tmp)  # type: ignore[attr-defined]
        if folder.pipeline.exists():
            shutil.rmtree(folder.pipeline)
        os.replace(tmp, folder.pipeline)

    def load(self, nets: dict[str, Any], folder: GeneratorFolder) -> None:
        from diffusers import UNet2DModel

        nets["unet"] = UNet2DModel.from_pretrained(folder.pipeline / "unet")


for _family in (DCGAN(), UpconvGAN(), VAE(), DDPM()):
    register_family(_family)


class Trainer:
    """One family's networks, optimizers and training step."""

    def __init__(self, family: str, preset: Preset, lr: float):
        import torch

        self.family = family_info(family)
        self.preset = preset
        self.nets = self.family.build_nets(preset.width, preset.latent)
        self.optimizers = {
            role: torch.optim.Adam(net.parameters(), lr=lr, betas=self.family.betas)
            for role, net in self.family.optimized(self.nets).items()
        }
        # A diffusion family trains against DDPM's noise schedule.
        self.scheduler = ddpm_scheduler() if self.family.scheduler else None

    def train(self) -> None:
        for net in self.nets.values():
            net.train()

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])

    def step(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> dict[str, float]:
        """One optimisation step on a batch; returns its losses."""
        return self.family.step(self, x, y, gen)
