"""Training recipes beyond the paper's grid: one model each, described entirely by data.

A recipe names the architecture (a VGG-style stack of 3x3 conv + BatchNorm + ReLU blocks,
max pooling between blocks, global average pooling), the optimizer (AdamW with a linear
warm-up and a cosine decay), epochs, batch size, label smoothing and the augmentation:
random horizontal flips and pad-and-crop shifts are layers inside the model (Keras runs
them in training only), the image-handling degradations of the ``robust`` recipe are
applied to the training batches on the fly (``cifake_hub.degrade``, the same operations
`cifake evaluate` scores). The model takes raw RGB uint8 32x32 images and outputs P(REAL),
like the paper's, so predict, Grad-CAM, evaluate, cards and publish use it unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from cifake_hub.errors import ConfigError
from cifake_hub.schema import IMAGE_SIZE
from cifake_hub.training.backend import import_keras

INPUTS = ("rgb", "npr", "rgb+npr")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    widths: tuple[int, ...]  # output channels of each block's convolutions
    convs_per_block: int
    dropout: float  # before the output layer
    epochs: int
    batch_size: int
    learning_rate: float  # AdamW's peak rate
    weight_decay: float
    warmup_epochs: float  # linear warm-up from 0, then cosine decay to 0
    label_smoothing: float
    flip: bool  # random horizontal flips
    shift: int  # random shifts of up to N pixels, zero-filled (pad-and-crop)
    degrade: float  # share of training images degraded on the fly (0: none)
    # The saved model averages the logits of several views of each image: with its mirror
    # image, and with the image shifted by ``shift_average`` pixels left, right, up and down
    # (2, 5 or 10 views: as many times the inference cost); training sees one image at a
    # time. Defaults for runs saved before them.
    flip_average: bool = False
    shift_average: int = 0
    # What the network sees (one of INPUTS): the pixels, their NPR residual (each pixel minus
    # the top-left pixel of its 2x2 cell: what nearest-neighbour down- and up-sampling leaves,
    # where upsampling layers leave their traces), or both as six channels.
    inputs: str = "rgb"
    # Each epoch takes every REAL training row and as many FAKE rows, in equal shares per
    # generator (a small generator's rows repeat, a large one's rotate over the epochs).
    balance: bool = False
    # The kept epoch is the one that best separates a FAKE family left out of training
    # (`cifake train --hold-out`) from the REAL validation rows, not the one with the lowest
    # validation loss.
    select_unseen: bool = False

    def __post_init__(self) -> None:
        checks = [
            (bool(self.widths) and min(self.widths) >= 1, f"widths {self.widths}"),
            (len(self.widths) <= 5, f"{len(self.widths)} pooled blocks do not fit 32x32"),
            (self.convs_per_block >= 1, f"convs per block {self.convs_per_block}"),
            (0 <= self.dropout < 1, f"dropout {self.dropout}"),
            (self.epochs >= 1, f"epochs {self.epochs}"),
            (self.batch_size >= 1, f"batch size {self.batch_size}"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning rate"),
            (self.weight_decay >= 0, f"weight decay {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"warm-up epochs {self.warmup_epochs}"),
            (0 <= self.label_smoothing < 0.5, f"label smoothing {self.label_smoothing}"),
            (0 <= self.shift < IMAGE_SIZE // 2, f"shift {self.shift}"),
            (0 <= self.degrade <= 1, f"degrade share {self.degrade}"),
            (0 <= self.shift_average < IMAGE_SIZE // 2, f"shift average {self.shift_average}"),
            (self.inputs in INPUTS, f"inputs {self.inputs!r} (choose one of {INPUTS})"),
        ]
        for ok, what in checks:
            if not ok:
                raise ConfigError(f"recipe {self.name!r}: invalid {what}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Recipe:
        return cls(**{**record, "widths": tuple(record["widths"])})

    def with_epochs(self, epochs: int | None) -> Recipe:
        return self if epochs is None else dataclasses.replace(self, epochs=epochs)


_VGG = dict(
    widths=(32, 64, 128),
    convs_per_block=2,
    dropout=0.1,
    epochs=40,
    batch_size=128,
    learning_rate=1e-3,
    weight_decay=1e-4,
    warmup_epochs=1.0,
    label_smoothing=0.05,
    flip=True,
    shift=4,
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="strong",
            description=(
                "the best clean detector from scratch at 32x32: a 288k-parameter VGG-style CNN "
                "(3 blocks of two 3x3 conv + BatchNorm + ReLU, global average pooling), AdamW "
                "with cosine decay, flips and 4-pixel shifts, label smoothing 0.05, 40 epochs; "
                "the saved model averages 10 views of each image: the image and its mirror "
                "image, each as is and shifted by one pixel left, right, up and down"
            ),
            degrade=0.0,
            flip_average=True,
            shift_average=1,
            **_VGG,  # type: ignore[arg-type]
        ),
        Recipe(
            name="robust",
            description=(
                "strong's model trained for 40 epochs on images half of which are JPEG "
                "re-encoded, blurred, resized down and up or noised on the fly "
                "(cifake_hub.degrade), so that ordinary image handling does not flip its "
                "answers; flips but no pixel shifts (they move the 8x8 JPEG grid both labels' "
                "images share); the saved model averages each image with its mirror image"
            ),
            degrade=0.5,
            flip_average=True,
            **{**_VGG, "shift": 0},  # type: ignore[arg-type]
        ),
        Recipe(
            name="general",
            description=(
                "built for generators it never saw: strong's network sees each image beside "
                "its NPR residual (the image minus its nearest-neighbour down-up-sampled copy, "
                "where upsampling leaves its traces); each epoch takes FAKE rows in equal "
                "shares per generator of a mixed dataset; half the images of both labels are "
                "degraded as robust's are; the kept epoch is the one that best separates a "
                "FAKE family left out of training (--hold-out) from the REAL validation "
                "images; flips, no shifts (they would move the 2x2 grid the residual reads); "
                "the saved model averages each image with its mirror image"
            ),
            degrade=0.5,
            flip_average=True,
            inputs="rgb+npr",
            balance=True,
            select_unseen=True,
            **{**_VGG, "shift": 0, "epochs": 16},  # type: ignore[arg-type]
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(
            f"unknown recipe {name!r}; choose one of {sorted(RECIPES)} "
            "(`cifake train --list-recipes`; the paper's grid is `cifake search`)"
        )
    return RECIPES[name]


@dataclass(frozen=True)
class View:
    """One view of each image a view-averaging model scores: the image (or its mirror
    image) with its content moved ``dx`` pixels right and ``dy`` down, the strip it leaves
    black, as the training shifts fill it."""

    dx: int
    dy: int
    mirror: bool


def averaged_views(shift: int, flip: bool) -> list[View]:
    """The views in the order the model stacks them on the batch axis."""
    offsets = [(0, 0)] + ([(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else [])
    return [View(dx, dy, m) for m in ((False, True) if flip else (False,)) for dx, dy in offsets]


# The name of the layer that averages the views' logits says which views they are, so that
# Grad-CAM can take apart any saved model without its recipe. "flip_average" alone is the
# image and its mirror (the name models saved before shifted views have).
_AVERAGE_NAME = re.compile(r"(?:shift(\d+)_)?(flip_)?average")


def views_layer_name(shift: int, flip: bool) -> str:
    return (f"shift{shift}_" if shift else "") + ("flip_" if flip else "") + "average"


def layer_views(name: str) -> list[View] | None:
    """The views a layer named ``name`` averages, or None when it is no view average."""
    match = _AVERAGE_NAME.fullmatch(name)
    if match is None:
        return None
    views = averaged_views(int(match[1] or 0), bool(match[2]))
    return views if len(views) > 1 else None


def shift_pixels(ops: Any, x: Any, dx: int, dy: int) -> Any:
    """``x`` (N, H, W, ...) with its content moved ``dx`` pixels right and ``dy`` down
    (negative: left, up); the vacated strip is zero."""
    h, w = x.shape[1], x.shape[2]
    pad = [[0, 0], [max(dy, 0), max(-dy, 0)], [max(dx, 0), max(-dx, 0)]]
    padded = ops.pad(x, pad + [[0, 0]] * (len(x.shape) - 3))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, top : top + h, left : left + w]


def apply_view(ops: Any, x: Any, view: View) -> Any:
    return shift_pixels(ops, ops.flip(x, axis=2) if view.mirror else x, view.dx, view.dy)


def undo_view(ops: Any, x: Any, view: View) -> Any:
    """Moves what a view shows (a map, say) back to the image's own pixels."""
    back = shift_pixels(ops, x, -view.dx, -view.dy)
    return ops.flip(back, axis=2) if view.mirror else back


def build_recipe_model(recipe: Recipe, *, augment: bool = True) -> Any:
    """The recipe's uncompiled Keras model: raw uint8 RGB 32x32 in, P(REAL) out. Layer names
    follow the paper's models (``scale``, ``conv_*``, ``logit``, ``probability``).

    ``augment=False`` leaves out the flip and shift layers: the model that is saved and
    shipped. Keras runs random layers whenever ``training`` is not given, so a user's plain
    ``model(x)`` would otherwise flip and shift the images it is asked about. With the
    recipe's ``flip_average`` or ``shift_average`` that model runs its layers once on the
    batch's views (:func:`averaged_views`) stacked on the batch axis and averages each image's
    logits in a layer named by :func:`views_layer_name`: built-in layers and ``keras.ops``
    only, so a plain ``keras.saving.load_model`` reads it."""
    keras = import_keras()
    L = keras.layers

    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="image")
    head, trunk = _head(recipe, augment), _trunk(recipe)
    # float32 output under mixed precision too (a float16 sigmoid saturates early).
    probability = L.Activation("sigmoid", dtype="float32", name="probability")
    name = f"cifake_{recipe.name}"
    views = averaged_views(recipe.shift_average, recipe.flip_average)
    several = not augment and len(views) > 1
    if not several and recipe.inputs == "rgb":
        return keras.Sequential([image, *head, *trunk, probability], name=name)

    x = image
    for layer in head:
        x = layer(x)
    if several:
        x = keras.ops.concatenate([apply_view(keras.ops, x, view) for view in views], axis=0)
    x = represent(recipe.inputs, x)
    for layer in trunk:
        x = layer(x)
    if several:
        average = L.Average(name=views_layer_name(recipe.shift_average, recipe.flip_average))
        x = average(keras.ops.split(x, len(views), axis=0))
    return keras.Model(image, probability(x), name=name)


def _head(recipe: Recipe, augment: bool) -> list[Any]:
    """Scaling, then (training only) the random flips and shifts."""
    L = import_keras().layers
    head: list[Any] = [L.Rescaling(1 / 255, name="scale")]
    if augment and recipe.flip:
        head.append(L.RandomFlip("horizontal", name="flip"))
    if augment and recipe.shift:
        # Nearest-neighbour, whole-pixel shifts: interpolating would blur away the
        # high-frequency traces a detector looks for.
        share = recipe.shift / IMAGE_SIZE
        head.append(
            L.RandomTranslation(
                share, share, fill_mode="constant", interpolation="nearest", name="shift"
            )
        )
    return head


def _trunk(recipe: Recipe) -> list[Any]:
    """The conv blocks, global pooling, dropout and the logit."""
    L = import_keras().layers
    trunk: list[Any] = []
    for b, width in enumerate(recipe.widths, 1):
        for c in range(1, recipe.convs_per_block + 1):
            trunk += [
                L.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv_{b}_{c}"),
                # PyTorch's running-statistics rate: Keras's 0.99 leaves the statistics
                # far from the data's for the first few hundred steps.
                L.BatchNormalization(momentum=0.9, name=f"bn_{b}_{c}"),
                L.ReLU(name=f"relu_{b}_{c}"),
            ]
        trunk.append(L.MaxPooling2D(2, name=f"pool_{b}"))
    trunk.append(L.GlobalAveragePooling2D(name="global_pool"))
    if recipe.dropout:
        trunk.append(L.Dropout(recipe.dropout, name="dropout"))
    trunk.append(L.Dense(1, name="logit"))
    return trunk


def represent(inputs: str, x: Any) -> Any:
    """``x`` (scaled pixels) as the network sees it (``Recipe.inputs``). Built-in layers only:
    a plain ``keras.saving.load_model`` reads the model."""
    if inputs == "rgb":
        return x
    L = import_keras().layers
    # A 1x1 pool with stride 2 keeps the top-left pixel of every 2x2 cell.
    cells = L.AveragePooling2D(1, strides=2, name="npr_down")(x)
    up = L.UpSampling2D(2, interpolation="nearest", name="npr_up")(cells)
    npr = L.Subtract(name="npr")([x, up])
    return npr if inputs == "npr" else L.Concatenate(name="rgb_npr")([x, npr])


def inference_copy(model: Any, recipe: Recipe) -> Any:
    """The trained ``model`` as it is saved: without its augmentation layers, with the flip
    average where the recipe asks for it (same weights, by layer name)."""
    plain = build_recipe_model(recipe, augment=False)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return plain


def compile_recipe_model(model: Any, recipe: Recipe, train_images: int) -> None:
    """AdamW with linear warm-up and cosine decay to 0 over the recipe's epochs."""
    keras = import_keras()

    steps = math.ceil(train_images / recipe.batch_size)
    warmup = int(round(recipe.warmup_epochs * steps))
    total = max(recipe.epochs * steps, warmup + 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else recipe.learning_rate,
        decay_steps=total - warmup,
        warmup_target=recipe.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
