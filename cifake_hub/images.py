"""Checks on encoded images, shared by every importer and source.

A check decodes the image fully (a truncated JPEG can have a valid header), so a file that
passes is one that ``datasets`` (PIL) will decode later. JPEGs go through libjpeg-turbo
(simplejpeg) first, about 4x faster than PIL; anything it does not accept outright gets
PIL's verdict, so the set of accepted files is PIL's.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from cifake_hub.errors import InvalidImageError
from cifake_hub.schema import IMAGE_SIZE

_JPEG_MAGIC = b"\xff\xd8"
# JPEG colour spaces that PIL opens as mode "RGB".
_RGB_JPEG = ("YCbCr", "RGB")


def image_problem(data: bytes, size: int = IMAGE_SIZE) -> str | None:
    """Why ``data`` is not a ``size``x``size`` RGB image, or None when it is one."""
    if data[:2] == _JPEG_MAGIC and _fast_jpeg_ok(data, size):
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode, dims = im.mode, im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
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


def decode_rgb(data: bytes, where: str = "image") -> np.ndarray:
    """HxWx3 uint8 pixels of an encoded image (libjpeg-turbo for JPEG, PIL otherwise)."""
    if data[:2] == _JPEG_MAGIC:
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            pass  # PIL decides below, with its own error if it cannot read it either
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"{where}: unreadable image ({exc})") from exc
