"""Select the Keras backend before Keras is imported: TensorFlow unless KERAS_BACKEND is set."""

from __future__ import annotations

import os


def ensure_backend() -> None:
    """Default Keras to the TensorFlow backend and quiet TensorFlow's C++ start-up logs."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
