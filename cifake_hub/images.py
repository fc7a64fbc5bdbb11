"""Checks on encoded images, shared by every importer and source.

A check decodes the image fully (a truncated JPEG can have a valid header), so a file that
passes is one that ``datasets`` (PIL) will decode later. JPEGs go through libjpeg-turbo
(simplejpeg) first, about 4x faster than PIL; anything it does not accept outright gets
PIL's verdict, so the set of accepted files is PIL's.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from cifake_hub.errors import InvalidImageError
from cifake_hub.schema import IMAGE_SIZE

_JPEG_MAGIC = b"\xff\xd8"
# JPEG colour spaces that PIL opens as mode "RGB".
_RGB_JPEG = ("YCbCr", "RGB")


# What Pillow raises on a bad file: it may be any of these (a bomb is not an OSError).
_PIL_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


def describe_problem(exc: BaseException) -> str:
    """One readable line for a Pillow error (no ``<_io.BytesIO object at 0x...>``)."""
    if isinstance(exc, UnidentifiedImageError):
        return "unreadable (not an image format Pillow can read)"
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (
            f"too large to decode safely (more than {Image.MAX_IMAGE_PIXELS:,} pixels; "
            "a decompression bomb, or resize it first)"
        )
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot be read ({exc.strerror})"
    return f"unreadable ({type(exc).__name__}: {exc})"


@contextlib.contextmanager
def _opened(source: bytes | Path) -> Iterator[Image.Image]:
    """A fully loaded Pillow image; an image over Pillow's pixel limit is an error here,
    not a warning followed by a multi-gigabyte decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()
            yield im


def image_problem(data: bytes, size: int = IMAGE_SIZE) -> str | None:
    """Why ``data`` is not a ``size``x``size`` RGB image, or None when it is one."""
    if data[:2] == _JPEG_MAGIC and _fast_jpeg_ok(data, size):
        return None
    try:
        with _opened(data) as im:
            mode, dims = im.mode, im.size
    except _PIL_ERRORS as exc:
        return describe_problem(exc)
    if mode != "RGB":
        return f"not RGB (mode {mode})"
    if dims != (size, size):
        return f"not {size}x{size} (is {dims[0]}x{dims[1]})"
    return None


def _fast_jpeg_ok(data: bytes, size: int) -> bool:
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if (width, height) != (size, size) or colorspace not in _RGB_JPEG:
            return False
        simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return False
    return True


def encode_png(pixels: object) -> bytes:
    """Lossless PNG bytes of an HxWx3 uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


def to_rgb8(im: Image.Image) -> np.ndarray:
    """HxWx3 uint8 pixels of any Pillow image; 16-bit images are scaled to 8 bits, not
    clipped (Pillow's own conversion turns most 16-bit pixels white)."""
    if im.mode.startswith("I;16"):
        wide = np.asarray(im).astype(np.uint32)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode in ("I", "F"):
        raise InvalidImageError(
            f"a {'32-bit integer' if im.mode == 'I' else 'floating-point'} image (mode "
            f"{im.mode}) has no standard 8-bit rendering; convert it to 8-bit RGB first"
        )
    return np.asarray(im.convert("RGB"))


def read_rgb(source: bytes | Path, where: str = "image") -> np.ndarray:
    """HxWx3 uint8 pixels of an encoded image or image file; one error line when it cannot
    be (unreadable, too large, a bit depth with no 8-bit rendering)."""
    if isinstance(source, bytes) and source[:2] == _JPEG_MAGIC:
        try:
            return simplejpeg.decode_jpeg(source, colorspace="RGB")
        except ValueError:
            pass  # PIL decides below, with its own error if it cannot read it either
    try:
        with _opened(source) as im:
            return to_rgb8(im)
    except _PIL_ERRORS as exc:
        raise InvalidImageError(f"{where}: {describe_problem(exc)}") from exc


def resize_to_final(pixels: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image -> 32x32 with bilinear interpolation (PIL): how renders are
    brought to CIFAR size, and how predict treats images of other sizes."""
    image = Image.fromarray(pixels).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image)
