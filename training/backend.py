"""Import Keras quietly, on TensorFlow unless ``KERAS_BACKEND`` says otherwise (``torch``
works too: models saved by one backend load in the other)."""

from __future__ import annotations

import os
import sys
from typing import Any


def import_keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["KERAS_BACKEND"] == "tensorflow" and "tensorflow" not in sys.modules:
        # TensorFlow's C++ logs its start-up notices before any log level applies; errors
        # still surface as Python exceptions.
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            sys.stderr.flush()
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Retracing notices appear when many small models predict in a row: expected here.
        tf.get_logger().setLevel("ERROR")
    return keras
