"""Where Keras keeps downloaded and converted weights, read at call time."""

from __future__ import annotations

import os
from pathlib import Path


def keras_cache_dir() -> Path:
    """``$KERAS_HOME/models`` read now (Keras reads KERAS_HOME only at import), else Keras's."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        from keras.src.backend.config import keras_home

        home = keras_home()
    return Path(home).expanduser() / "models"


__all__ = ["keras_cache_dir"]
