"""A random-weight pipeline with Stable Diffusion's architecture, built from configs.

It goes through exactly the code path of the real model (tokenizer, text encoder, UNet
with cross-attention, VAE, the scheduler, steps and guidance) at a fraction of the cost and
with no download, so tests and the offline demo run anywhere. Its images are noise.
"""

from __future__ import annotations

from typing import Any


def _byte_vocab() -> dict[str, int]:
    """A byte-level CLIP vocabulary with no merges: every character is its own token."""
    # CLIP's byte-level alphabet: printable bytes stand for themselves, the others are
    # shifted past 255 so that every byte has a visible character.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return vocab


def build_tiny_pipeline(seed: int = 0) -> Any:
    """A StableDiffusionPipeline with tiny random weights (fixed by ``seed``)."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    # Built in this order (UNet, VAE, text encoder) so the seed gives the same weights.
    unet = _tiny_unet(cross_attention_dim=32)
    vae = _tiny_vae()
    text_encoder, tokenizer = _tiny_clip(projection=False, hidden=32)
    # SD 1.4's scheduler configuration, so Euler Ancestral is built the same way.
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe


def _tiny_unet(**extra: Any) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4,
        norm_num_groups=4,
        **extra,
    )


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


def _tiny_clip(projection: bool, hidden: int) -> tuple[Any, Any]:
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    vocab = _byte_vocab()
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(vocab),
        max_position_embeddings=77,
        projection_dim=hidden,
    )
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return model, CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_sdxl_pipeline(seed: int = 0) -> Any:
    """A StableDiffusionXLPipeline with tiny random weights: two text encoders (the second
    with a projection, whose pooled output and the image sizes are the UNet's added
    conditioning), as SDXL has."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(seed)
    text_encoder, tokenizer = _tiny_clip(projection=False, hidden=32)
    text_encoder_2, tokenizer_2 = _tiny_clip(projection=True, hidden=32)
    unet = _tiny_unet(
        cross_attention_dim=64,  # both encoders' hidden states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,  # pooled text + 6 size numbers
        use_linear_projection=True,
    )
    # SDXL's scheduler configuration (EulerDiscrete, as the model ships).
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )


def build_tiny_pixart_pipeline(seed: int = 0) -> Any:
    """A PixArtAlphaPipeline with tiny random weights: a T5 text encoder and a diffusion
    transformer (no UNet), with its own DPM-Solver scheduler."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    # A character-level tokenizer (T5's sentencepiece model is a download).
    chars = [chr(c) for c in range(32, 127)]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=120,
    )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(vocab),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    transformer = PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=16,
        caption_channels=32,
        sample_size=8,
        patch_size=2,
        norm_num_groups=4,
    )
    return PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),  # built modules train (T5's dropout) until told
        vae=_tiny_vae(),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )
