"""cifake-hub: the CIFAKE study (Bird & Lotfi 2023) as Hugging Face software.

``cifake_hub.load_detector(NAME_OR_PATH)`` returns a Keras detector (raw RGB uint8 32x32 in,
P(REAL) out), resolved as ``cifake predict --model`` does. It is imported on first use, so
``import cifake_hub`` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_detector"]


def __getattr__(name: str) -> Any:
    if name == "load_detector":
        from cifake_hub.predict import load_detector

        return load_detector
    raise AttributeError(f"module 'cifake_hub' has no attribute {name!r}")
