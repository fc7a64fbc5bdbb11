"""Image-handling operations on decoded 32x32 RGB uint8 images: the JPEG re-encode, blur,
down-and-up resize and noise that ``cifake evaluate`` measures a detector under and the
``robust`` training recipe applies on the fly. One definition serves both, so a model is
trained on exactly the operations it is scored on."""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, ImageFilter

from cifake_hub.schema import IMAGE_SIZE


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG re-encode at ``quality`` (default tables, 4:2:0 subsampling), decoded."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
    # libjpeg-turbo's decode with Pillow's settings (accurate IDCT, fancy upsampling) gives
    # Pillow's pixels (tested) in a fifth of the time.
    out: np.ndarray = simplejpeg.decode_jpeg(
        buf.getvalue(), colorspace="RGB", fastdct=False, fastupsample=False
    )
    return out


def blur(pixels: np.ndarray, radius: float) -> np.ndarray:
    """Pillow ``ImageFilter.GaussianBlur(radius)``."""
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius)))


def down_up(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pillow bilinear resize to ``size`` x ``size`` and back to 32x32."""
    bilinear = Image.Resampling.BILINEAR
    small = Image.fromarray(pixels).resize((size, size), bilinear)
    return np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), bilinear))


def add_noise(images: np.ndarray, std: float, normals: np.ndarray) -> np.ndarray:
    """``images + std * normals`` (float32 standard normals of the same shape), rounded
    and clipped to uint8."""
    noisy = images + np.float32(std) * normals
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def random_degradation(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the four operations, chosen uniformly, at a severity drawn uniformly from a
    range that covers `cifake evaluate`'s default conditions: JPEG quality 25..95, blur
    radius 0.25..1.25, resize to 12..28 px, noise std 1..10."""
    kind = int(rng.integers(4))
    if kind == 0:
        return jpeg(pixels, int(rng.integers(25, 96)))
    if kind == 1:
        return blur(pixels, float(rng.uniform(0.25, 1.25)))
    if kind == 2:
        return down_up(pixels, int(rng.integers(12, 29)))
    normals = rng.standard_normal(pixels.shape, dtype=np.float32)
    return add_noise(pixels, float(rng.uniform(1.0, 10.0)), normals)
