"""Checks on encoded images, shared by every importer and source.

A check decodes the image fully (a truncated JPEG can have a valid header), so a file that
passes is one that ``datasets`` will decode later.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from cifake_hub.schema import IMAGE_SIZE


def image_problem(data: bytes, size: int = IMAGE_SIZE) -> str | None:
    """Why ``data`` is not a ``size``x``size`` RGB image, or None when it is one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # PIL only warns on some truncated files
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                mode, dims = im.mode, im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Warning) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if mode != "RGB":
        return f"not RGB (mode {mode})"
    if dims != (size, size):
        return f"not {size}x{size} (is {dims[0]}x{dims[1]})"
    return None


def encode_png(pixels: object) -> bytes:
    """Lossless PNG bytes of an HxWx3 uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()
