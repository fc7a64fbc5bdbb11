"""GPU-hour estimates per generator family, from compute counted without running it.

    python bench/generate_flops.py [--images 60000] [--sd14-rate 2.85]

For each architecture (real configurations, no weights: every tensor is a PyTorch fake
tensor, shapes without storage, so even FLUX's 12B transformer costs no memory), counts the
floating-point operations of one image as `cifake build` makes it: the denoiser run
`steps` times on a batch of two (classifier-free guidance: conditional and unconditional;
FLUX is guidance-distilled, one pass), then the VAE decode. Images/s on the GPU where SD 1.4
was measured (`bench/gpu_generate.py`: 2.85 images/s at batch 8 on one H200, fp16) are
estimated by assuming every model reaches the same share of the GPU's peak as SD 1.4: an
estimate, to be replaced by `bench/gpu_generate.py` measurements where they exist.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from gpu_generate import SD14_UNET, SD14_VAE, SDXL_UNET  # noqa: E402

SD21_UNET: dict[str, Any] = {
    **SD14_UNET,
    "sample_size": 96,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}
PIXART_ALPHA: dict[str, Any] = dict(
    sample_size=128,
    num_layers=28,
    attention_head_dim=72,
    num_attention_heads=16,
    in_channels=4,
    out_channels=8,
    patch_size=2,
    cross_attention_dim=1152,
    caption_channels=4096,
    norm_type="ada_norm_single",
    use_additional_conditions=True,
)
SD3_MEDIUM: dict[str, Any] = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=192,
)
FLUX_DEV: dict[str, Any] = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
VAE_16: dict[str, Any] = {**SD14_VAE, "latent_channels": 16}


@dataclass(frozen=True)
class Arch:
    name: str
    family: str  # as in cifake_hub.builders.generate.FAMILIES
    size: int
    steps: int  # the family's default in `cifake build`
    cfg: bool  # two denoiser passes per step


ARCHS = (
    Arch("sd14", "sd", 512, 50, True),
    Arch("sd21", "sd", 768, 50, True),
    Arch("sdxl", "sdxl", 1024, 50, True),
    Arch("sdxl@512", "sdxl", 512, 50, True),
    Arch("pixart-alpha", "pixart", 1024, 20, True),
    Arch("sd3-medium", "sd3", 1024, 28, True),
    Arch("flux-dev", "flux", 1024, 28, False),
)


def denoiser_flops(arch: Arch) -> float:
    """FLOPs of one denoiser call on a batch of one image (latent of size/8)."""
    import torch
    from diffusers import (
        FluxTransformer2DModel,
        PixArtTransformer2DModel,
        SD3Transformer2DModel,
        UNet2DConditionModel,
    )
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    lat = arch.size // 8
    with FakeTensorMode(allow_non_fake_inputs=True):
        t = torch.tensor([500.0])
        if arch.family in ("sd", "sdxl"):
            config = {"sd14": SD14_UNET, "sd21": SD21_UNET}.get(arch.name, SDXL_UNET)
            model: Any = UNet2DConditionModel(**config)
            text = torch.zeros(1, 77, config["cross_attention_dim"])
            kwargs: dict[str, Any] = {"encoder_hidden_states": text}
            if arch.family == "sdxl":
                kwargs["added_cond_kwargs"] = {
                    "text_embeds": torch.zeros(1, 1280),
                    "time_ids": torch.zeros(1, 6),
                }
            call = lambda: model(torch.zeros(1, 4, lat, lat), t, **kwargs)  # noqa: E731
        elif arch.family == "pixart":
            model = PixArtTransformer2DModel(**PIXART_ALPHA)
            extra = {"resolution": torch.zeros(1, 2), "aspect_ratio": torch.zeros(1, 1)}
            call = lambda: model(  # noqa: E731
                torch.zeros(1, 4, lat, lat),
                encoder_hidden_states=torch.zeros(1, 120, 4096),
                timestep=t,
                added_cond_kwargs=extra,
            )
        elif arch.family == "sd3":
            model = SD3Transformer2DModel(**SD3_MEDIUM)
            call = lambda: model(  # noqa: E731
                torch.zeros(1, 16, lat, lat),
                encoder_hidden_states=torch.zeros(1, 333, 4096),
                pooled_projections=torch.zeros(1, 2048),
                timestep=t,
            )
        else:
            model = FluxTransformer2DModel(**FLUX_DEV)
            tokens = (lat // 2) ** 2
            call = lambda: model(  # noqa: E731
                torch.zeros(1, tokens, 64),
                encoder_hidden_states=torch.zeros(1, 512, 4096),
                pooled_projections=torch.zeros(1, 768),
                timestep=t / 1000,
                img_ids=torch.zeros(tokens, 3),
                txt_ids=torch.zeros(512, 3),
                guidance=torch.tensor([3.5]),
            )
        # The math kernel: its matmuls are counted (the fused CPU kernel has no formula).
        with (
            torch.no_grad(),
            sdpa_kernel(SDPBackend.MATH),
            FlopCounterMode(display=False) as counter,
        ):
            call()
    return float(counter.get_total_flops())


def decode_flops(arch: Arch) -> float:
    import torch
    from diffusers import AutoencoderKL
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    config = VAE_16 if arch.family in ("sd3", "flux") else SD14_VAE
    with FakeTensorMode(allow_non_fake_inputs=True):
        vae: Any = AutoencoderKL(**config)
        z = torch.zeros(1, config["latent_channels"], arch.size // 8, arch.size // 8)
        # The math kernel: its matmuls are counted (the fused CPU kernel has no formula).
        with (
            torch.no_grad(),
            sdpa_kernel(SDPBackend.MATH),
            FlopCounterMode(display=False) as counter,
        ):
            vae.decode(z)
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60_000, help="images to plan for")
    ap.add_argument(
        "--sd14-rate",
        type=float,
        default=2.85,
        help="measured SD 1.4 images/s on the GPU to scale from (H200, batch 8, fp16)",
    )
    args = ap.parse_args()
    rows = []
    for arch in ARCHS:
        per_step = denoiser_flops(arch) * (2 if arch.cfg else 1)
        total = per_step * arch.steps + decode_flops(arch)
        rows.append((arch, total))
    base = next(total for arch, total in rows if arch.name == "sd14")
    print(
        f"| generator | render px | steps | TFLOP per image | x SD 1.4 | est. images/s | "
        f"est. GPU-hours for {args.images:,} |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arch, total in rows:
        rate = args.sd14_rate * base / total
        print(
            f"| {arch.name} | {arch.size} | {arch.steps}{'' if arch.cfg else ' (no CFG)'} | "
            f"{total / 1e12:,.1f} | {total / base:.2f} | {rate:.2f} | "
            f"{args.images / rate / 3600:,.1f} |"
        )


if __name__ == "__main__":
    main()
