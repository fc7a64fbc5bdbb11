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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cifake_hub.errors import ConfigError

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


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    pixels: str  # how the family makes pixels, for cards and --help
    reconstructs: bool  # can make aligned twins of REAL images
    presets: dict[str, Preset]


TINY_IMAGES = 60  # the tiny presets train on this many REAL rows: seconds, for tests
FAMILIES: dict[str, FamilyInfo] = {
    "dcgan": FamilyInfo(
        "dcgan",
        "transposed convolutions (GAN)",
        False,
        {
            "tiny": Preset(8, 16, 3, 16, 2e-4, TINY_IMAGES),
            "default": Preset(32, 100, 25, 128, 2e-4),
        },
    ),
    "upconv-gan": FamilyInfo(
        "upconv-gan",
        "bilinear upsampling + 3x3 convolutions, spectral norm, hinge loss (GAN)",
        False,
        {
            "tiny": Preset(8, 16, 3, 16, 2e-4, TINY_IMAGES),
            "default": Preset(32, 100, 10, 128, 2e-4),
        },
    ),
    "vae": FamilyInfo(
        "vae",
        "sub-pixel convolutions (PixelShuffle), a convolutional VAE",
        True,
        {
            "tiny": Preset(8, 8, 3, 16, 1e-3, TINY_IMAGES),
            "default": Preset(32, 128, 20, 128, 1e-3),
        },
    ),
    "ddpm": FamilyInfo(
        "ddpm",
        "a denoising diffusion UNet (nearest upsampling + convolutions), DDIM sampling",
        True,
        {
            "tiny": Preset(8, 0, 3, 16, 2e-4, TINY_IMAGES, sampler_steps=4),
            "default": Preset(32, 0, 16, 128, 2e-4, sampler_steps=50),
        },
    ),
}


def family_info(name: str) -> FamilyInfo:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown generator family {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def one_hot(y: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.one_hot(y, NUM_CLASSES).float()


def build_nets(family: str, width: int, latent: int) -> dict[str, torch.nn.Module]:
    """The family's networks by role (``generator``/``discriminator``, ``encoder``/``decoder``
    or ``unet``), freshly initialised from the global torch seed."""
    builders: dict[str, Callable[[int, int], dict[str, Any]]] = {
        "dcgan": _dcgan,
        "upconv-gan": _upconv_gan,
        "vae": _vae,
        "ddpm": _ddpm,
    }
    return builders[family_info(family).name](width, latent)


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


def _ddpm(w: int, latent: int) -> dict[str, Any]:
    return {"unet": ddpm_unet(w)}


# The networks a sampler needs (what GEN_DIR's weights hold); the rest is training only.
SAMPLER_NETS = {
    "dcgan": ("generator",),
    "upconv-gan": ("generator",),
    "vae": ("encoder", "decoder"),
    "ddpm": ("unet",),
}
VAE_BETA = 0.1  # weight of the KL term against the summed squared error (sharper samples)


def ddpm_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


class Trainer:
    """One family's networks, optimizers and training step."""

    def __init__(self, family: str, preset: Preset, lr: float):
        import torch

        self.family = family
        self.preset = preset
        self.nets = build_nets(family, preset.width, preset.latent)
        betas = (0.5, 0.999) if family.endswith("gan") else (0.9, 0.999)
        self.optimizers = {
            role: torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
            for role, net in self._optimized().items()
        }
        self.scheduler = ddpm_scheduler() if family == "ddpm" else None

    def _optimized(self) -> dict[str, Any]:
        from torch import nn

        if self.family == "vae":  # one optimizer for the encoder and decoder together
            return {"vae": nn.ModuleList([self.nets["encoder"], self.nets["decoder"]])}
        return dict(self.nets)

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
        if self.family == "vae":
            return self._vae_step(x, y, gen)
        if self.family == "ddpm":
            return self._ddpm_step(x, y, gen)
        return self._gan_step(x, y, gen)

    def _gan_step(self, x: Any, y: Any, gen: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        g, d = self.nets["generator"], self.nets["discriminator"]
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        n = x.shape[0]
        z = torch.randn(n, self.preset.latent, generator=gen)
        fake_y = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        fake = g(z, fake_y)
        hinge = self.family == "upconv-gan"
        real_out, fake_out = d(x, y), d(fake.detach(), fake_y)
        if hinge:
            loss_d = F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()
        else:
            loss_d = F.softplus(-real_out).mean() + F.softplus(fake_out).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out = d(fake, fake_y)
        loss_g = -out.mean() if hinge else F.softplus(-out).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    def _vae_step(self, x: Any, y: Any, gen: Any) -> dict[str, float]:
        import torch

        mu, logvar = self.nets["encoder"](x, y)
        z = mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp()
        recon = self.nets["decoder"](z, y)
        n = x.shape[0]
        rec = (recon - x).pow(2).sum() / n
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / n
        loss = rec + VAE_BETA * kl
        opt = self.optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"recon": rec.item(), "kl": kl.item()}

    def _ddpm_step(self, x: Any, y: Any, gen: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        assert self.scheduler is not None
        n = x.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), generator=gen)
        noise = torch.randn(x.shape, generator=gen)
        noisy = self.scheduler.add_noise(x, noise, t)
        pred = self.nets["unet"](noisy, t, class_labels=y).sample
        loss = F.mse_loss(pred, noise)
        opt = self.optimizers["unet"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}
