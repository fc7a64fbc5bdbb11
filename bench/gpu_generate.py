"""Generation throughput on a CUDA GPU, with a real architecture and random weights.

    python bench/gpu_generate.py [--arch sd14|sdxl] [--size PX] [--dtype fp16|bf16]
                                 [--batch-sizes 1 8 16 32] [--steps 50] [--no-compile]

Builds the UNet, VAE and text encoder(s) from Stable Diffusion 1.4's or SDXL's
configurations (the compute is the same as the real weights'), SDPA attention, Euler
Ancestral, classifier-free guidance, one CPU generator per image as `cifake build` does, and
reports images/s for each batch size, without and with torch.compile on the UNet, so GPU
hours per generator can be planned. SD 1.4 renders 512 px (the paper), SDXL its native
1024 px (or `--size 512`). `--arch tiny` / `tiny-sdxl` run the same code on the random-weight
test pipelines (a CPU smoke test). Goal for SD 1.4 on one H200: >= 8 images/s.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

SD14_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=(
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
SD14_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    sample_size=512,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
SD14_TEXT: dict[str, Any] = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)


SDXL_UNET: dict[str, Any] = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
SDXL_TEXT_2: dict[str, Any] = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)
# (default size, guidance) per architecture.
ARCHS = {"sd14": (512, 7.5), "sdxl": (1024, 5.0), "tiny": (64, 7.5), "tiny-sdxl": (64, 5.0)}


def build_sdxl(device: str, dtype: Any) -> Any:
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from cifake_hub.builders.tiny_pipeline import _byte_vocab

    vocab = _byte_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    pipe: Any = StableDiffusionXLPipeline(
        vae=AutoencoderKL(**{**SD14_VAE, "sample_size": 1024}),
        unet=UNet2DConditionModel(**SDXL_UNET),
        text_encoder=CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), **SD14_TEXT)),
        text_encoder_2=CLIPTextModelWithProjection(
            CLIPTextConfig(vocab_size=len(vocab), **SDXL_TEXT_2)
        ),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=EulerAncestralDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def build_tiny(arch: str, device: str, dtype: Any) -> Any:
    from cifake_hub.builders.generate import GeneratorConfig, load_pipeline

    pipe = load_pipeline(GeneratorConfig(model_id=arch, device="cpu"), "cpu")
    return pipe.to(device, dtype)


def build(device: str, dtype: Any) -> Any:
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from cifake_hub.builders.tiny_pipeline import _byte_vocab

    vocab = _byte_vocab()
    pipe: Any = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD14_VAE),
        unet=UNet2DConditionModel(**SD14_UNET),
        text_encoder=CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), **SD14_TEXT)),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77),
        scheduler=EulerAncestralDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def rate(pipe: Any, batch: int, steps: int, size: int, repeats: int, guidance: float) -> float:
    import torch

    def once() -> None:
        pipe(
            prompt=["a photograph of a cat"] * batch,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=size,
            width=size,
            output_type="np",
            generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)],
        )

    once()  # warm-up: kernels, allocator, compilation
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=tuple(ARCHS), default="sd14")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=None, help="default: the architecture's")
    ap.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16", help="on CUDA")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile pass")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    ap.add_argument(
        "--compile-batch-sizes", type=int, nargs="+", default=None, help="default: --batch-sizes"
    )
    args = ap.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    half = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    dtype = half if device == "cuda" else torch.float32
    size = args.size or ARCHS[args.arch][0]
    guidance = ARCHS[args.arch][1]
    print(
        f"{args.arch}: device {device} "
        f"({torch.cuda.get_device_name() if device == 'cuda' else 'no GPU'}), "
        f"torch {torch.__version__}, {size} px, {args.steps} steps, CFG {guidance}, {dtype}"
    )
    if args.arch == "sd14":
        pipe = build(device, dtype)
    elif args.arch == "sdxl":
        pipe = build_sdxl(device, dtype)
    else:
        pipe = build_tiny(args.arch, device, dtype)
    passes = [False] if args.no_compile else [False, True]
    for compiled in passes:
        if compiled:
            started = time.perf_counter()
            pipe.unet = torch.compile(pipe.unet, mode=args.compile_mode)
        sizes = args.compile_batch_sizes or args.batch_sizes if compiled else args.batch_sizes
        for batch in sizes:
            r = rate(pipe, batch, args.steps, size, args.repeats, guidance)
            print(
                f"{'compiled' if compiled else 'eager':>8}  batch {batch:>3}: {r:6.2f} images/s",
                flush=True,
            )
        if compiled:
            print(f"compiled pass (compilation included): {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
