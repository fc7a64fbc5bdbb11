"""Image-handling operations on decoded 32x32 RGB uint8 images: the JPEG re-encode, blur,
down-and-up resize and noise that ``cifake evaluate`` measures a detector under and the
``robust`` training recipe applies on the fly. One definition serves both, so a model is
trained on exactly the operations it is scored on."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, ImageFilter

from cifake_hub.schema import IMAGE_SIZE


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG re-encode at ``quality`` (default tables, 4:2:0 subsampling), decoded."""
    return _decode(_encode(pixels, quality))


def _encode(pixels: np.ndarray, quality: int, **options: Any) -> bytes:
    """The condition's encoder: Pillow, default tables, 4:2:0 chroma subsampling."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(
        buf, format="JPEG", quality=quality, subsampling="4:2:0", **options
    )
    return buf.getvalue()


def _decode(stream: bytes) -> np.ndarray:
    # libjpeg-turbo's decode with Pillow's settings (accurate IDCT, fancy upsampling) gives
    # Pillow's pixels (tested) in a fifth of the time.
    out: np.ndarray = simplejpeg.decode_jpeg(
        stream, colorspace="RGB", fastdct=False, fastupsample=False
    )
    return out


def _scan_start(stream: bytes) -> int:
    """Offset of the entropy-coded data: just after the start-of-scan segment."""
    sos = stream.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(stream[sos + 2 : sos + 4], "big")


def jpeg_streams(images: np.ndarray, quality: int, chunk: int = 1024) -> list[bytes]:
    """The files ``jpeg`` writes for each of ``images``, byte for byte, from one Pillow
    call per ``chunk`` images instead of one per image (most of whose time is Python).

    Pillow encodes the images stacked vertically, with a restart marker after every two
    16-pixel MCU rows, i.e. after every image. libjpeg converts colour per pixel, averages
    chroma within each MCU and codes each block on its own; a restart resets the DC
    prediction and pads to a byte. So the data between two markers is exactly the scan of
    that image encoded alone, and behind the header of a lone 32x32 file at the same
    quality it is that file (tested)."""
    if not len(images):
        return []
    lone = _encode(images[0], quality)
    header = lone[: _scan_start(lone)]
    streams: list[bytes] = []
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        stacked = _encode(part.reshape(-1, IMAGE_SIZE, 3), quality, restart_marker_rows=2)
        # Stuffing writes a data byte 0xFF as FF 00, so FF D0..D7 can only be a marker.
        scans = re.split(rb"\xff[\xd0-\xd7]", stacked[_scan_start(stacked) : -2])
        if len(scans) != len(part):
            raise RuntimeError(f"{len(scans)} restart intervals for {len(part)} images")
        streams += [header + scan + b"\xff\xd9" for scan in scans]
    return streams


def jpeg_batch(images: np.ndarray, quality: int) -> np.ndarray:
    """``jpeg`` of every image in an (N, 32, 32, 3) batch: the same pixels, a third of the time."""
    out = np.empty_like(images)
    for i, stream in enumerate(jpeg_streams(images, quality)):
        out[i] = _decode(stream)
    return out


def blur(pixels: np.ndarray, radius: float) -> np.ndarray:
    """Pillow ``ImageFilter.GaussianBlur(radius)``."""
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius)))


def down_up(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pillow bilinear resize to ``size`` x ``size`` and back to 32x32."""
    bilinear = Image.Resampling.BILINEAR
    small = Image.fromarray(pixels).resize((size, size), bilinear)
    return np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), bilinear))


PillowOp = Callable[[Image.Image], Image.Image]


def _separable(images: np.ndarray, rows_op: PillowOp, columns_op: PillowOp) -> np.ndarray:
    """Two Pillow operations that each work on every row (``rows_op``: a horizontal pass,
    which may change the width) or every column (``columns_op``) of an image on its own,
    applied to every image of a batch in two calls per chunk: the row pass to the images
    stacked vertically, the column pass to them side by side. Pillow's resize and box blur
    are such passes (horizontal first, rounded to uint8 between), so this gives one call per
    image's pixels (tested)."""
    n, h, w, c = images.shape
    parts = []
    for start in range(0, n, 1024):
        part = images[start : start + 1024]
        k = len(part)
        tall = rows_op(Image.fromarray(part.reshape(k * h, w, c)))
        part = np.asarray(tall).reshape(k, h, tall.width, c)
        wide = columns_op(Image.fromarray(part.transpose(1, 0, 2, 3).reshape(h, -1, c)))
        parts.append(np.asarray(wide).reshape(wide.height, k, tall.width, c).transpose(1, 0, 2, 3))
    return np.concatenate(parts) if parts else images.copy()


def blur_batch(images: np.ndarray, radius: float) -> np.ndarray:
    """``blur`` of every image in an (N, 32, 32, 3) batch: the same pixels, faster."""
    return _separable(
        images,
        lambda im: im.filter(ImageFilter.GaussianBlur((radius, 0))),
        lambda im: im.filter(ImageFilter.GaussianBlur((0, radius))),
    )


def down_up_batch(images: np.ndarray, size: int) -> np.ndarray:
    """``down_up`` of every image in an (N, 32, 32, 3) batch: the same pixels, in half the time."""
    bilinear = Image.Resampling.BILINEAR

    def resize(batch: np.ndarray, to: int) -> np.ndarray:
        return _separable(
            batch,
            lambda im: im.resize((to, im.height), bilinear),
            lambda im: im.resize((im.width, to), bilinear),
        )

    return resize(resize(images, size), IMAGE_SIZE)


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
