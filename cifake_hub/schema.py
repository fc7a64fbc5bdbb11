"""The one row schema shared by every split and every way of building a CIFAKE dataset.

One row per image. ``label`` follows the paper (FAKE=0, REAL=1); ``category`` is the
CIFAR-10 class. Provenance columns are nullable: a generated (FAKE) row fills the prompt,
seed and generator settings; a REAL row fills where it came from. Imported rows fill what
the import knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cifake_hub.errors import ClassNameError

if TYPE_CHECKING:
    import datasets

LABEL_NAMES: tuple[str, ...] = ("FAKE", "REAL")
FAKE, REAL = 0, 1

# CIFAR-10's standard class order; the Kaggle CIFAKE suffix "(k)" is 1 + this index.
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

IMAGE_SIZE = 32
SPLITS: tuple[str, ...] = ("train", "test")

# name -> datasets dtype; all nullable.
PROVENANCE_COLUMNS: dict[str, str] = {
    "source": "string",  # e.g. "kaggle-cifake", "hub:uoft-cs/cifar10", "cifar-tar", "generator"
    "source_file": "string",  # file or batch the image came from, when there is one
    "source_index": "int64",  # index within the source split (REAL) or within the class (Kaggle)
    "prompt": "string",
    "seed": "int64",
    "model_id": "string",
    "scheduler": "string",
    "steps": "int32",
    "guidance_scale": "float32",
    "render_size": "int32",
    "batch_size": "int32",
    "batch_index": "int32",  # position in its batch: CPU/GPU kernels can differ by position
    "family": "string",  # FAKE: the generator's family (sd, sdxl, dcgan, aligned-vae ...)
    "weights_sha256": "string",  # zoo FAKE: sha256 (first 16 hex) of the generator's weights
}
# ``generator``: which generator or image source made a FAKE row (null for REAL rows), a
# ClassLabel of the dataset's own generator ids in sorted order, so the Hub viewer and
# ``Dataset.filter`` can select by it; ``model_id`` stays the free-text id per row.
GENERATOR = "generator"
COLUMNS: tuple[str, ...] = ("image", "label", "category", GENERATOR, *PROVENANCE_COLUMNS)
# Provenance values that the dataset card explains.
KAGGLE_SOURCE = "kaggle-cifake"  # `source` of rows imported from the Kaggle CIFAKE download
# The generator of the paper's FAKE images (Kaggle CIFAKE's FAKE rows name it in `generator`).
PAPER_GENERATOR = "CompVis/stable-diffusion-v1-4"
TINY_MODEL_ID = "tiny-random-sd"  # `model_id` of the random-weight test pipeline: noise images
# Every random-weight pipeline (--generator NAME -> the `model_id` its rows record).
TINY_MODEL_IDS = {
    "tiny": TINY_MODEL_ID,
    "tiny-sdxl": "tiny-random-sdxl",
    "tiny-pixart": "tiny-random-pixart",
}


def features(generators: Sequence[str] = ()) -> datasets.Features:
    """The ``datasets.Features`` of a CIFAKE dataset whose FAKE rows come from ``generators``
    (the names of the ``generator`` ClassLabel; see :func:`generator_names`)."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(LABEL_NAMES)),
            "category": datasets.ClassLabel(names=list(CLASS_NAMES)),
            GENERATOR: datasets.ClassLabel(names=list(generators)),
            **{name: datasets.Value(dtype) for name, dtype in PROVENANCE_COLUMNS.items()},
        }
    )


def generator_names(ids: Iterable[str]) -> tuple[str, ...]:
    """The ``generator`` ClassLabel names for these ids: distinct and sorted, so the same set
    of generators gets the same labels whatever order they were given in."""
    return tuple(sorted(set(ids)))


def dataset_generators(features: Mapping[str, Any]) -> tuple[str, ...]:
    """The generator names a dataset's features declare (none for datasets made before the
    column existed)."""
    column = features.get(GENERATOR)
    return tuple(getattr(column, "names", ()))


# A zoo's aligned twins ("aligned:vae", or "aligned-vae" when brought under that name) are
# the family they are named after, remade from REAL images: leaving a family out of
# training leaves its twins out with it.
ALIGNED_PREFIXES = ("aligned:", "aligned-")


def generator_family(name: str) -> str:
    """The family of a generator name: the name itself, or what an aligned twin is of."""
    for prefix in ALIGNED_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def generator_families(names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Indices into ``names`` per family (:func:`generator_family`), in the order of each
    family's first generator."""
    out: dict[str, tuple[int, ...]] = {}
    for g, name in enumerate(names):
        family = generator_family(name)
        out[family] = (*out.get(family, ()), g)
    return out


def make_row(
    image_bytes: bytes,
    label: int,
    category: int | None,
    *,
    image_path: str | None = None,
    generator: int | None = None,
    **provenance: Any,
) -> dict[str, Any]:
    """One row in the encoded (Arrow-ready) form; unknown provenance names are an error.
    ``generator`` is the index of the row's generator in the dataset's generator names;
    ``category`` is None for an imported image whose class is not known."""
    unknown = set(provenance) - set(PROVENANCE_COLUMNS)
    if unknown:
        raise KeyError(
            f"unknown provenance columns {sorted(unknown)}; known: {list(PROVENANCE_COLUMNS)}"
        )
    if label not in (FAKE, REAL):
        raise ValueError(f"label must be 0 (FAKE) or 1 (REAL), got {label!r}")
    if category is not None and not 0 <= category < len(CLASS_NAMES):
        raise ValueError(f"category must be 0..{len(CLASS_NAMES) - 1}, got {category!r}")
    if generator is not None and (label != FAKE or generator < 0):
        raise ValueError(f"generator index {generator!r} on a {LABEL_NAMES[label]} row")
    row: dict[str, Any] = {
        "image": {"bytes": image_bytes, "path": image_path},
        "label": label,
        "category": category,
        GENERATOR: generator,
    }
    for name in PROVENANCE_COLUMNS:
        row[name] = provenance.get(name)
    return row


UNKNOWN_CLASS = "unknown class"


def class_name(category: int | None) -> str:
    """The CIFAR-10 class name of ``category``; rows without a class (None, or -1 in arrays)
    have none."""
    return CLASS_NAMES[category] if category is not None and category >= 0 else UNKNOWN_CLASS


def category_index(name: str) -> int:
    """CIFAR-10 class index of ``name`` (case-insensitive)."""
    try:
        return CLASS_NAMES.index(name.strip().lower())
    except ValueError:
        raise ClassNameError(
            f"unknown class name {name!r}; expected one of {', '.join(CLASS_NAMES)}"
        ) from None
