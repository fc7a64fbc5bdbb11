"""Checks on encoded images, shared by every importer and source.

A check decodes the image fully (a truncated JPEG can have a valid header), so a file that
passes is one that ``datasets`` (PIL) will decode later. JPEGs go through libjpeg-turbo
(simplejpeg) first, about 4x faster than PIL; anything it does not accept outright gets
PIL's verdict, so the set of accepted files is PIL's.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
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
    if isinstance(exc, RefusedFileError):
        return f"cannot be read ({exc})"
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


class RefusedFileError(OSError):
    """A file entry refused before it is read: not a regular file (after following links; a
    FIFO or a device would block or never end), or a zip member too large to be an image."""

    def __str__(self) -> str:
        return str(self.args[0])

    @property
    def reason(self) -> str:
        return str(self.args[0])


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device", stat.S_IFDIR: "a folder"}  # fmt: skip


def read_regular(path: str | Path) -> bytes:
    """The bytes of the regular file at ``path`` (links followed). Anything else raises
    :class:`RefusedFileError` without blocking (opened non-blocking, checked before it is
    read); a missing file or a dangling or looping link raises the usual OSError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a file")
            raise RefusedFileError(f"{kind}, not a regular file")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


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


def read_checked(data: bytes) -> tuple[np.ndarray | None, tuple[int, int] | None, str | None]:
    """(32x32 RGB pixels, the size they were resized from or None, the problem or None) of an
    image a user brought: unreadable and non-RGB images are problems (a detector must not
    learn colour modes), any size is resized the way generated renders are."""
    try:
        with _opened(data) as im:
            if im.mode != "RGB":
                return None, None, f"not RGB (mode {im.mode}); convert it to RGB first"
            pixels = np.asarray(im)
    except _PIL_ERRORS as exc:
        return None, None, describe_problem(exc)
    if pixels.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        return pixels, None, None
    return resize_to_final(pixels), (pixels.shape[1], pixels.shape[0]), None


def resize_to_final(pixels: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image -> 32x32 with bilinear interpolation (PIL): how renders are
    brought to CIFAR size, and how predict treats images of other sizes."""
    image = Image.fromarray(pixels).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image)


_STANDARD_LUMA = (  # the JPEG standard's luminance table (Annex K), in zig-zag order
    16,
    11,
    12,
    14,
    12,
    10,
    16,
    14,
    13,
    14,
    18,
    17,
    16,
    19,
    24,
    40,
    26,
    24,
    22,
    22,
    24,
    49,
    35,
    37,
    29,
    40,
    58,
    51,
    61,
    60,
    57,
    51,
    56,
    55,
    64,
    72,
    92,
    78,
    64,
    68,
    87,
    69,
    55,
    56,
    80,
    109,
    81,
    87,
    95,
    98,
    103,
    104,
    103,
    62,
    77,
    113,
    121,
    112,
    100,
    120,
    92,
    101,
    103,
    99,
)


def jpeg_quality(data: bytes) -> int | None:
    """The IJG quality whose scaled standard table best matches the first quantisation
    table of a baseline JPEG, or None when there is none."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDB and length >= 67 and data[i + 4] >> 4 == 0:
            return _closest_quality(data[i + 5 : i + 69])
        if marker == 0xDA:
            break
        i += 2 + length
    return None


@functools.lru_cache(maxsize=4096)
def _closest_quality(table: bytes) -> int:
    # A dataset holds few distinct tables (one per encoder setting): match each once.
    return min(
        range(1, 101),
        key=lambda q: sum(
            abs(_scaled(s, q) - t) for s, t in zip(_STANDARD_LUMA, table, strict=True)
        ),
    )


def _scaled(base: int, quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return min(255, max(1, (base * scale + 50) // 100))


def describe_encoding(data: bytes) -> tuple[str, str, str]:
    """(format, quality, chroma subsampling) of encoded image bytes, for reports and cards."""
    if data[:2] == b"\xff\xd8":
        try:
            subsampling = simplejpeg.decode_jpeg_header(data)[3]
        except ValueError:
            subsampling = "?"
        quality = jpeg_quality(data)
        return "JPEG", f"q{quality}" if quality else "?", subsampling
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG", "lossless", "none"
    return "other", "-", "-"
