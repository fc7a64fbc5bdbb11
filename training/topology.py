"""The paper's search space (section 3.3) and the Keras model of one topology.

Stage 1: {1,2,3} conv layers x {16,32,64,128} filters (3x3, ReLU, each followed by 2x2 max
pooling), flattened into one sigmoid neuron: 12 models. Stage 2: the stage-1 winner followed
by {1,2,3} dense ReLU layers x {32,...,4096} units: 24 models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cifake_hub.errors import ConfigError
from cifake_hub.schema import IMAGE_SIZE
from cifake_hub.training.backend import import_keras

if TYPE_CHECKING:
    import keras

CONV_LAYERS = (1, 2, 3)
CONV_FILTERS = (16, 32, 64, 128)
DENSE_LAYERS = (1, 2, 3)
DENSE_UNITS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
PAPER_FINAL = "conv=32x2,dense=64x1"  # the paper's finally chosen topology

_SPEC = re.compile(r"^conv=(\d+)x(\d+)(?:,dense=(\d+)x(\d+))?$")


@dataclass(frozen=True, order=True)
class Topology:
    conv_filters: int
    conv_layers: int
    dense_units: int = 0
    dense_layers: int = 0

    def __post_init__(self) -> None:
        if self.conv_filters < 1 or self.conv_layers < 1:
            raise ConfigError(f"a topology needs >= 1 conv layer of >= 1 filter, got {self.name}")
        if (self.dense_units == 0) != (self.dense_layers == 0) or min(
            self.dense_units, self.dense_layers
        ) < 0:
            raise ConfigError(f"dense units and layers must both be > 0 or both 0, got {self.name}")
        self.check_fits("same")

    def check_fits(self, padding: str) -> None:
        if feature_size(self.conv_layers, padding) < 1:
            deepest = max(n for n in range(1, 10) if feature_size(n, padding))
            raise ConfigError(
                f"topology {self.name} has {self.conv_layers} conv+pool layers, more than a "
                f"{IMAGE_SIZE}x{IMAGE_SIZE} image allows with {padding!r} padding (at most "
                f"{deepest}); use fewer conv layers"
            )

    @property
    def name(self) -> str:
        conv = f"conv={self.conv_filters}x{self.conv_layers}"
        return (
            conv
            if not self.dense_layers
            else f"{conv},dense={self.dense_units}x{self.dense_layers}"
        )

    @property
    def stage(self) -> int:
        return 2 if self.dense_layers else 1

    @property
    def extractor(self) -> Topology:
        return Topology(self.conv_filters, self.conv_layers)

    @classmethod
    def parse(cls, spec: str) -> Topology:
        """``conv=FILTERSxLAYERS[,dense=UNITSxLAYERS]``, e.g. ``conv=32x2,dense=64x1``."""
        m = _SPEC.match(spec.replace(" ", ""))
        if m is None:
            raise ConfigError(
                f"cannot parse topology {spec!r}; expected "
                f"conv=FILTERSxLAYERS[,dense=UNITSxLAYERS], e.g. {PAPER_FINAL}"
            )
        f, c, u, d = (int(g) if g else 0 for g in m.groups())
        return cls(f, c, u, d)


def feature_size(conv_layers: int, padding: str) -> int:
    """Side of the last pooled feature map of a 32x32 input (0: the input is too small)."""
    size = IMAGE_SIZE
    for _ in range(conv_layers):
        size = (size if padding == "same" else size - 2) // 2
        if size < 1:
            return 0
    return size


def stage1() -> list[Topology]:
    return [Topology(f, n) for f in CONV_FILTERS for n in CONV_LAYERS]


def stage2(extractor: Topology) -> list[Topology]:
    e = extractor.extractor
    return [
        Topology(e.conv_filters, e.conv_layers, u, n) for u in DENSE_UNITS for n in DENSE_LAYERS
    ]


def build_model(topology: Topology, padding: str = "same") -> keras.Model:
    """The Keras model for ``topology``, taking raw uint8 RGB 32x32 images.

    Scaling to [0, 1] is a layer of the model, so users feed images as they are. The
    output neuron is split into a linear ``logit`` layer and a ``probability`` sigmoid so
    that Grad-CAM can take gradients before the sigmoid saturates.
    """
    keras = import_keras()

    layers: list[Any] = [
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8", name="image"),
        keras.layers.Rescaling(1 / 255, name="scale"),
    ]
    for i in range(1, topology.conv_layers + 1):
        layers += [
            keras.layers.Conv2D(
                topology.conv_filters, 3, padding=padding, activation="relu", name=f"conv_{i}"
            ),
            keras.layers.MaxPooling2D(2, name=f"pool_{i}"),
        ]
    layers.append(keras.layers.Flatten(name="flatten"))
    for i in range(1, topology.dense_layers + 1):
        layers.append(
            keras.layers.Dense(topology.dense_units, activation="relu", name=f"dense_{i}")
        )
    layers += [
        keras.layers.Dense(1, name="logit"),
        keras.layers.Activation("sigmoid", name="probability"),
    ]
    return keras.Sequential(layers, name=topology.name.replace("=", "").replace(",", "_"))
