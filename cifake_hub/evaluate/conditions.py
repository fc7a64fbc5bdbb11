"""Image-handling conditions a detector meets after deployment, defined so others can redo them.

Each condition maps a batch of decoded 32x32 RGB uint8 images to degraded uint8 images:

- ``clean``: unchanged
- ``jpeg:Q``: re-encoded with Pillow at ``quality=Q`` (Pillow's default tables, 4:2:0
  subsampling) and decoded
- ``blur:R``: Pillow ``ImageFilter.GaussianBlur(R)``
- ``resize:S``: bilinear (Pillow) to SxS and back to 32x32
- ``noise:S``: Gaussian noise of standard deviation S (0-255 scale) added, rounded, clipped;
  row ``i`` of the split draws float32 standard normals from
  ``numpy.random.default_rng([seed, i])`` (times S), so a row gets the same noise in any batch
- user-defined: ``NAME=package.module:function`` (a file of such lines), where the function
  takes and returns an (N, 32, 32, 3) uint8 array
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifake_hub.degrade import add_noise, blur_batch, down_up_batch, jpeg_batch
from cifake_hub.errors import ConfigError
from cifake_hub.schema import IMAGE_SIZE

DEFAULT_CONDITIONS = (
    "clean",
    "jpeg:95",
    "jpeg:90",
    "jpeg:75",
    "jpeg:50",
    "jpeg:30",
    "blur:0.5",
    "blur:1.0",
    "resize:24",
    "resize:16",
    "noise:2",
    "noise:4",
    "noise:8",
)
Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (images, row indices) -> images


@dataclass(frozen=True)
class Condition:
    name: str  # e.g. "jpeg:50"
    kind: str  # clean, jpeg, blur, resize, noise, or "custom"
    severity: float | None  # the number after the colon
    definition: str  # in words, for evaluation.json and the card
    apply: Transform


class _NoiseDraws:
    """The normals of one seed, shared by the noise conditions parsed together: a row's
    draws (most of a noise condition's time) are made once, every level registered here is
    made from them, and the other levels wait until they are asked for on the same rows."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.stds: list[float] = []
        self._source: tuple[np.ndarray, bytes] | None = None
        self._waiting: dict[float, np.ndarray] = {}

    def transform(self, std: float) -> Transform:
        self.stds.append(std)
        return lambda images, rows: self._apply(std, images, rows)

    def _apply(self, std: float, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        source = self._source
        same = source is not None and source[0] is images and source[1] == rows.tobytes()
        if same and std in self._waiting:
            return self._waiting.pop(std)
        made = {s: np.empty_like(images) for s in [std, *self.stds]}
        for start in range(0, len(images), 1024):
            normals = np.stack(
                [
                    np.random.default_rng([self.seed, int(r)]).standard_normal(
                        images.shape[1:], dtype=np.float32
                    )
                    for r in rows[start : start + 1024]
                ]
            )
            for s, out in made.items():
                out[start : start + 1024] = add_noise(images[start : start + 1024], s, normals)
        self._source = (images, rows.tobytes())
        self._waiting = made
        return self._waiting.pop(std)


@dataclass(frozen=True)
class ConditionKind:
    """A family of conditions with one number, ``NAME:VALUE`` (``jpeg:50``). Adding one is
    one :func:`register_condition_kind` call; parsing, `cifake evaluate`, its report, the
    card and the app's what-if tab take it from :data:`CONDITION_KINDS`."""

    name: str  # before the colon
    letter: str  # the number's letter in messages: jpeg:Q
    axis: str  # what the number is, on a plot's axis
    rule: str  # what the number must be, in words
    valid: Callable[[float], bool]
    define: Callable[[float, int], str]  # (number, seed) -> the definition in words
    # (number, seed, the shared noise draws) -> the transform
    make: Callable[[float, int, _NoiseDraws], Transform]
    unchanged_at: float = 0.0  # the number at which the image would be unchanged (plots)


CONDITION_KINDS: dict[str, ConditionKind] = {}


def register_condition_kind(kind: ConditionKind) -> ConditionKind:
    CONDITION_KINDS[kind.name] = kind
    return kind


register_condition_kind(
    ConditionKind(
        "jpeg",
        "Q",
        "quality",
        "an integer in 1..100",
        lambda n: n.is_integer() and 1 <= n <= 100,
        lambda n, seed: (
            f"Pillow JPEG round trip, quality={int(n)}, default tables, 4:2:0 subsampling"
        ),
        lambda n, seed, noise: lambda x, rows: jpeg_batch(x, int(n)),
        unchanged_at=100.0,
    )
)
register_condition_kind(
    ConditionKind(
        "blur",
        "R",
        "radius",
        "in (0, 8]",
        lambda n: 0 < n <= 8,
        lambda n, seed: f"Pillow ImageFilter.GaussianBlur({n:g})",
        lambda n, seed, noise: lambda x, rows: blur_batch(x, n),
    )
)
register_condition_kind(
    ConditionKind(
        "resize",
        "S",
        "side (px)",
        f"an integer in 1..{IMAGE_SIZE - 1}",
        lambda n: n.is_integer() and 1 <= n < IMAGE_SIZE,
        lambda n, seed: f"Pillow bilinear resize to {int(n)}x{int(n)} and back to 32x32",
        lambda n, seed, noise: lambda x, rows: down_up_batch(x, int(n)),
        unchanged_at=float(IMAGE_SIZE),
    )
)
register_condition_kind(
    ConditionKind(
        "noise",
        "S",
        "std",
        "in (0, 128]",
        lambda n: 0 < n <= 128,
        lambda n, seed: (
            f"Gaussian noise, std {n:g} on the 0-255 scale, rounded and clipped; "
            f"{n:g} x float32 standard normals of numpy.random.default_rng([{seed}, row])"
        ),
        lambda n, seed, noise: noise.transform(n),
    )
)


def parse_condition(spec: str, seed: int = 0, noise: _NoiseDraws | None = None) -> Condition:
    """``clean`` or ``KIND:VALUE`` of a registered kind (``jpeg:Q``, ``blur:R``,
    ``resize:S``, ``noise:S``) -> a condition (noise conditions of the same seed given the
    same ``noise`` share their draws)."""
    name, _, value = spec.partition(":")
    if name == "clean" and not value:
        return Condition(spec, name, None, "the decoded image, unchanged", lambda x, rows: x)
    kind = CONDITION_KINDS.get(name)
    if kind is None:
        known = ", ".join(f"{k.name}:{k.letter}" for k in CONDITION_KINDS.values())
        raise ConfigError(
            f"unknown condition {spec!r}; use clean, {known} or NAME=module:function in a "
            "conditions file"
        )
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not kind.valid(number):
        raise ConfigError(
            f"condition {spec!r}: expected {name}:{kind.letter}, {kind.letter} {kind.rule}"
        )
    return Condition(
        spec,
        name,
        number,
        kind.define(number, seed),
        kind.make(number, seed, noise or _NoiseDraws(seed)),
    )


def _custom(line: str, where: str) -> Condition:
    name, _, target = line.partition("=")
    module_name, _, attr = target.strip().partition(":")
    name = name.strip()
    if not name or not module_name or not attr:
        raise ConfigError(f"{where}: expected NAME=package.module:function, got {line!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {target.strip()!r} ({exc})") from exc
    if not callable(fn):
        raise ConfigError(f"{where}: {target.strip()!r} is not callable")

    def run(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        try:
            out = np.asarray(fn(images.copy()))
        except Exception as exc:  # noqa: BLE001 - the user's code: its failure is one line
            raise ConfigError(
                f"condition {name!r} ({target.strip()}) raised {type(exc).__name__}: {exc}; "
                "fix the function (CIFAKE_DEBUG=1 shows its traceback)"
            ) from exc
        if out.shape != images.shape or out.dtype != np.uint8:
            raise ConfigError(
                f"condition {name!r} returned {out.dtype} {out.shape}; it must return uint8 "
                f"{images.shape}"
            )
        return out

    return Condition(name, "custom", None, f"user-defined: {target.strip()}", run)


def parse_conditions(specs: Sequence[str], seed: int = 0) -> list[Condition]:
    """Conditions from specs; a spec that is a file holds ``NAME=module:function`` lines
    (or built-in specs), one per line, ``#`` starting a comment."""
    out: list[Condition] = []
    noise = _NoiseDraws(seed)
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise ConfigError(
                    f"conditions file {path} is not text; it holds NAME=package.module:function "
                    "lines or built-in conditions, one per line"
                ) from None
            for n, raw in enumerate(text.splitlines(), 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                where = f"{path}:{n}"
                out.append(
                    _custom(line, where) if "=" in line else parse_condition(line, seed, noise)
                )
        else:
            out.append(parse_condition(spec, seed, noise))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"conditions are named twice: {names}")
    if "clean" not in names:
        out.insert(0, parse_condition("clean"))
    return out
