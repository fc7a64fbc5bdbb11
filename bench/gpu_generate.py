"""SD 1.4 generation throughput on a CUDA GPU, with the real architecture and random weights.

    python bench/gpu_generate.py [--batch-sizes 1 8 16 32] [--steps 50] [--no-compile]

Builds UNet, VAE and CLIP text encoder from Stable Diffusion 1.4's configurations (the
compute is the same as the real weights'), fp16, SDPA attention, Euler Ancestral, 512 px,
classifier-free guidance 7.5, one CPU generator per image as `cifake build` does, and reports
images/s for each batch size, without and with torch.compile on the UNet. A few minutes on
one GPU. Goal on one H200: >= 8 images/s.
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


def build(device: str, dtype: Any) -> Any:
    from cifake_hub.builders.tiny_pipeline import _byte_vocab
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

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


def rate(pipe: Any, batch: int, steps: int, size: int, repeats: int) -> float:
    import torch

    def once() -> None:
        pipe(
            prompt=["a photograph of a cat"] * batch,
            num_inference_steps=steps,
            guidance_scale=7.5,
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
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile pass")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    ap.add_argument(
        "--compile-batch-sizes", type=int, nargs="+", default=None, help="default: --batch-sizes"
    )
    args = ap.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    print(
        f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'no GPU'}), "
        f"torch {torch.__version__}, {args.size} px, {args.steps} steps, CFG 7.5, {dtype}"
    )
    pipe = build(device, dtype)
    passes = [False] if args.no_compile else [False, True]
    for compiled in passes:
        if compiled:
            started = time.perf_counter()
            pipe.unet = torch.compile(pipe.unet, mode=args.compile_mode)
        sizes = args.compile_batch_sizes or args.batch_sizes if compiled else args.batch_sizes
        for batch in sizes:
            r = rate(pipe, batch, args.steps, args.size, args.repeats)
            print(
                f"{'compiled' if compiled else 'eager':>8}  batch {batch:>3}: {r:6.2f} images/s",
                flush=True,
            )
        if compiled:
            print(f"compiled pass (compilation included): {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
