"""Loading a saved model to run it: the one home for model files, engines and Keras loading.

- :func:`resolve_model_path`: the model file a MODEL argument names (a ``.keras`` / ``.onnx``
  file, a training run directory, or None for the bundled demo model).
- :class:`KerasEngine` / :class:`OnnxEngine` (via :func:`load_engine`): call a model on a batch
  of pre-processed pixels (N, S, S, 3) float32 0..255 and get (N, 5) probabilities.
- :func:`load_keras_model`: load a ``.keras`` file with retinascreen's custom layers registered.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.errors import ModelError

MODEL_ENGINES = ("auto", "keras", "onnx")
DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_model"
DEMO_ONNX = "demo.onnx"
DEMO_KERAS = "demo.keras"
# Model files in a training run directory, in the order they are looked for.
RUN_ONNX = "model.onnx"
RUN_BEST_KERAS = "best.keras"
RUN_KERAS = "model.keras"
RUN_MODEL_FILES = (RUN_ONNX, RUN_BEST_KERAS, RUN_KERAS)
MODEL_SUFFIXES = (".keras", ".onnx")
SEGMENTATION_DIR = Path(__file__).resolve().parent.parent / "segmentation_models"
BUNDLED_SEGMENTERS = ("vessels", "lesions", "disc")


def bundled_segmenter(what: str = "vessels") -> Path:
    """Path of the bundled ``vessels`` or ``lesions`` model (``.keras``; its ``.onnx`` twin lies
    beside it). ConfigError for another name, ModelError when the file is missing."""
    from retinascreen.errors import ConfigError

    if what not in BUNDLED_SEGMENTERS:
        raise ConfigError(
            f"unknown bundled segmenter {what!r}; choose one of: {', '.join(BUNDLED_SEGMENTERS)}"
        )
    path = SEGMENTATION_DIR / f"{what}.keras"
    if not path.is_file():
        raise ModelError(
            f"bundled {what} segmentation model not found at {path}; "
            "run tools/make_segmentation_models.py"
        )
    return path


def resolve_model_path(model: str | os.PathLike[str] | None, engine: str = "auto") -> Path:
    """The model file a MODEL argument names: a file, a run directory, or None for the demo."""
    if engine not in MODEL_ENGINES:
        raise ModelError(f"unknown engine {engine!r} (expected one of {', '.join(MODEL_ENGINES)})")
    if model is None:
        candidates = [DEMO_DIR / DEMO_ONNX, DEMO_DIR / DEMO_KERAS]
        if engine == "keras":
            candidates.reverse()
        found = _first_existing(candidates, engine)
        if found is None:
            raise ModelError(
                f"the bundled demo model is missing ({DEMO_DIR}/{DEMO_ONNX} or {DEMO_KERAS}); "
                "pass a model file or run directory instead"
            )
        return found
    path = Path(model).expanduser()
    if path.is_dir():
        found = _first_existing([path / name for name in RUN_MODEL_FILES], engine)
        if found is None:
            raise ModelError(
                f"{path} is a directory without a model (expected {RUN_BEST_KERAS} or {RUN_ONNX})"
            )
        return found
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(
            f"{path.name}: not a model file (expected .keras, .onnx or a run directory)"
        )
    if engine == "keras" and path.suffix.lower() == ".onnx":
        sibling = keras_sibling(path)
        if sibling is None:
            raise ModelError(f"{path.name}: engine 'keras' needs a .keras file beside it")
        return sibling
    if engine == "onnx" and path.suffix.lower() == ".keras":
        raise ModelError(
            f"{path.name}: engine 'onnx' needs an .onnx file (see `retinascreen export`)"
        )
    return path


def is_run_directory(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding one of the run-directory model files."""
    folder = Path(path)
    return folder.is_dir() and any((folder / name).is_file() for name in RUN_MODEL_FILES)


def _first_existing(candidates: Sequence[Path], engine: str) -> Path | None:
    wanted = {"auto": (".onnx", ".keras"), "keras": (".keras",), "onnx": (".onnx",)}[engine]
    for c in candidates:
        if c.is_file() and c.suffix in wanted:
            return c
    return None


def keras_sibling(onnx_path: Path) -> Path | None:
    """A .keras file that goes with an .onnx file (same stem, best.keras or demo.keras)."""
    folder = onnx_path.parent
    stem = onnx_path.stem
    bases = (
        stem,
        stem.removesuffix("-int8").removesuffix("_int8"),
        Path(RUN_BEST_KERAS).stem,
        Path(DEMO_KERAS).stem,
        Path(RUN_KERAS).stem,
    )
    for base in bases:
        candidate = folder / f"{base}.keras"
        if candidate.is_file():
            return candidate
    return None


def set_tf_threads(threads: int | None) -> None:
    """Limit TensorFlow to ``threads`` intra-op threads (None: leave it to TensorFlow)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started: its thread pools are fixed for this process


def register_custom_layers() -> None:
    """Import the modules that register retinascreen's custom layers, so they deserialise."""
    import retinascreen.models.layers  # noqa: F401  (CaffePreprocess)
    import retinascreen.models.ordinal  # noqa: F401  (OrdinalProbabilities of ordinal models)


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` model (uncompiled) with retinascreen's custom layers registered."""
    import keras

    register_custom_layers()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad model file
        raise ModelError(f"{path.name}: cannot load the Keras model ({exc})") from exc


class KerasEngine:
    """A Keras model called under a lock (Keras predict is not re-entrant)."""

    kind = "keras"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        set_tf_threads(threads)
        self.model: Any = load_keras_model(path)
        shape = self.model.input_shape
        self.input_size: int | None = int(shape[1]) if shape[1] is not None else None
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self.model.predict_on_batch(batch)
        return np.asarray(out, dtype=np.float32)


class OnnxEngine:
    """An ONNX Runtime session tuned for CPU inference (thread-safe)."""

    kind = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(threads or 0)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session: Any = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path.name}: cannot load the ONNX model ({exc})") from exc
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        size = inp.shape[1] if len(inp.shape) == 4 else None
        self.input_size: int | None = size if isinstance(size, int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]
        return np.asarray(out, dtype=np.float32)


Engine = KerasEngine | OnnxEngine


def load_engine(path: str | os.PathLike[str], threads: int | None = None) -> Engine:
    """The engine for a model file: ONNX Runtime for ``.onnx``, Keras for ``.keras``."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxEngine(path, threads)
    return KerasEngine(path, threads)


def flip_averaged(predict: Callable[[np.ndarray], Any], batch: np.ndarray) -> np.ndarray:
    """Test-time flip averaging of a segmentation model: the mean of the maps of ``batch``
    (N, H, W, C) and of its mirror image, mirrored back (a second pass). A model whose card
    says ``flip_average`` is served and scored this way."""
    plain = np.asarray(predict(batch), dtype=np.float32)
    mirrored = np.asarray(predict(np.ascontiguousarray(batch[:, :, ::-1])), dtype=np.float32)
    return (plain + mirrored[:, :, ::-1]) / 2
