"""Grade fundus photographs with a trained model: the :class:`Predictor`.

A Predictor loads a ``.keras`` file, an ``.onnx`` file or a training run directory (None = the
bundled demo model) and turns photographs into the SPEC.md result dict::

    >>> from retinascreen import Predictor
    >>> p = Predictor("runs/xception")               # or "model.onnx", or None for the demo
    >>> p.predict("eye.png")["label"]
    'Moderate NPDR'

Each image goes file -> :func:`retinascreen.images.load_image` -> quality gate
(:func:`retinascreen.fundus.assess_quality`) -> the model card's pre-processing -> model.
Ungradable photographs still get a result, with ``gradable: false`` and the reasons.
One Predictor per process is enough for a web server: ONNX Runtime sessions are thread-safe and
Keras calls are serialised by a lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen import grading
from retinascreen.errors import ImageError, ModelError, RetinascreenError

ImageInput = str | os.PathLike | bytes | np.ndarray
ENGINES = ("auto", "keras", "onnx")
DEMO_DIR = Path(__file__).resolve().parent / "demo_model"
FUNDUS_LEVEL = 20  # pixels of a cropped photo brighter than this (any channel) are fundus
SYNTHETIC_WARNING = "model trained on synthetic data only: not for clinical use"


def resolve_model_path(model: str | os.PathLike | None, engine: str = "auto") -> Path:
    """The model file a MODEL argument names: a file, a run directory, or None for the demo."""
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r} (expected one of {', '.join(ENGINES)})")
    if model is None:
        candidates = [DEMO_DIR / "demo.onnx", DEMO_DIR / "demo.keras"]
        if engine == "keras":
            candidates.reverse()
        found = _first_existing(candidates, engine)
        if found is None:
            raise ModelError(
                f"the bundled demo model is missing ({DEMO_DIR}/demo.onnx or demo.keras); "
                "pass a model file or run directory instead"
            )
        return found
    path = Path(model).expanduser()
    if path.is_dir():
        candidates = [path / "model.onnx", path / "best.keras", path / "model.keras"]
        found = _first_existing(candidates, engine)
        if found is None:
            raise ModelError(
                f"{path} is a directory without a model (expected best.keras or model.onnx)"
            )
        return found
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() not in (".keras", ".onnx"):
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
    for base in (stem, stem.removesuffix("-int8").removesuffix("_int8"), "best", "demo", "model"):
        candidate = folder / f"{base}.keras"
        if candidate.is_file():
            return candidate
    return None


class _KerasEngine:
    """A Keras model called under a lock (Keras predict is not re-entrant)."""

    kind = "keras"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from retinascreen._backend import ensure_backend

        ensure_backend()
        _set_tf_threads(threads)
        import keras

        _register_custom_layers()
        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - any load failure is a bad model file
            raise ModelError(f"{path.name}: cannot load the Keras model ({exc})") from exc
        shape = self.model.input_shape
        self.input_size = int(shape[1]) if shape[1] is not None else None
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self.model.predict_on_batch(batch)
        return np.asarray(out, dtype=np.float32)


class _OnnxEngine:
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
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path.name}: cannot load the ONNX model ({exc})") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        size = inp.shape[1] if len(inp.shape) == 4 else None
        self.input_size = size if isinstance(size, int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]
        return np.asarray(out, dtype=np.float32)


def _set_tf_threads(threads: int | None) -> None:
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started: its thread pools are fixed for this process


def _register_custom_layers() -> None:
    """Import the model registry so custom layers/constraints deserialise."""
    import retinascreen.models.build  # noqa: F401  (CaffePreprocess)
    import retinascreen.ordinal  # noqa: F401  (OrdinalProbabilities of ordinal models)


def load_card(path: Path) -> Any | None:
    """The model card stored in a model file, or None when it has none."""
    try:
        from retinascreen.modelcard import read_card

        return read_card(path)
    except ImportError:
        return None
    except RetinascreenError:
        return None
    except (KeyError, ValueError, OSError):
        return None


class Predictor:
    """Grades photographs with one model; see the module docstring.

    ``model``: a ``.keras`` / ``.onnx`` path, a training run directory or None (the demo model).
    ``engine``: ``auto`` (ONNX when the path or run directory has one), ``keras`` or ``onnx``.
    ``threads``: intra-op threads for the model (None = all cores).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        engine: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.model_path: Path = resolve_model_path(model, engine)
        self.threads = threads
        if self.model_path.suffix.lower() == ".onnx":
            self._engine: _KerasEngine | _OnnxEngine = _OnnxEngine(self.model_path, threads)
        else:
            self._engine = _KerasEngine(self.model_path, threads)
        self.engine = self._engine.kind
        self.card = load_card(self.model_path)
        self.input_size = self._engine.input_size or _card_value(self.card, "input_size") or 299
        self.preprocessing = _make_preprocessing(self.card, int(self.input_size))
        self._keras_for_cam: Any | None = (
            self._engine.model if isinstance(self._engine, _KerasEngine) else None
        )
        self._cam_lock = threading.Lock()
        self.model_info = {
            "name": str(_card_value(self.card, "name") or self.model_path.stem),
            "version": str(_card_value(self.card, "version") or "unversioned"),
            "sha256": _sha256(self.model_path),
        }
        self.synthetic = bool(_card_value(self.card, "synthetic"))

    def __repr__(self) -> str:
        return f"Predictor({str(self.model_path)!r}, engine={self.engine!r})"

    # -- public API -------------------------------------------------------------------------
    def predict(self, image: ImageInput | Sequence[ImageInput]) -> dict | list[dict]:
        """The SPEC result dict for one image (path, bytes or RGB array); a list for a batch."""
        if _is_batch(image):
            return self.predict_batch(image)  # type: ignore[arg-type]
        return self.predict_batch([image])[0]  # type: ignore[list-item]

    def predict_batch(
        self, images: Iterable[ImageInput], *, batch_size: int = 16, errors: str = "raise"
    ) -> list[dict]:
        """Results for many images, calling the model ``batch_size`` images at a time.

        ``errors="raise"`` raises the first bad input's typed error; ``errors="include"`` puts
        ``{"error": message, "error_type": name}`` in that image's place and goes on.
        """
        if errors not in ("raise", "include"):
            raise ValueError("errors must be 'raise' or 'include'")
        items = list(images) if not isinstance(images, np.ndarray) else list(images)
        results: list[dict | None] = [None] * len(items)
        for start in range(0, len(items), max(1, batch_size)):
            chunk = range(start, min(start + batch_size, len(items)))
            prepared: list[tuple[int, np.ndarray, dict]] = []
            for i in chunk:
                try:
                    x, quality = self.prepare(items[i])
                except RetinascreenError as exc:
                    if errors == "raise":
                        raise
                    results[i] = {"error": str(exc), "error_type": type(exc).__name__}
                    continue
                prepared.append((i, x, quality))
            if not prepared:
                continue
            probs = self.predict_arrays(np.stack([p[1] for p in prepared]))
            for (i, _, quality), p in zip(prepared, probs, strict=True):
                results[i] = self._result(p, quality)
        return [r for r in results if r is not None]

    def prepare(self, image: ImageInput) -> tuple[np.ndarray, dict]:
        """(model input (S, S, 3) float32 0..255, quality dict) for one image."""
        rgb = to_rgb(image)
        quality = _assess(rgb)
        x = self.preprocess(rgb)
        return x.astype(np.float32), quality

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """The model card's pre-processing: the (S, S, 3) uint8 picture the model sees."""
        try:
            return np.asarray(self.preprocessing.apply(rgb))
        except ImageError:
            return _resize(rgb, int(self.input_size))

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, 5) for pre-processed pixels (N, S, S, 3) 0..255."""
        batch = np.asarray(batch, dtype=np.float32)
        probs = self._engine(batch)
        if probs.ndim != 2 or probs.shape[1] != grading.N_CLASSES:
            raise ModelError(
                f"{self.model_path.name}: model outputs shape {probs.shape}, "
                f"expected (N, {grading.N_CLASSES}) grade probabilities"
            )
        return probs

    def heatmap(
        self, image: ImageInput, class_index: int | None = None, alpha: float = 0.4
    ) -> np.ndarray:
        """Grad-CAM overlay (S, S, 3) RGB uint8 on the pre-processed image.

        Without ``class_index`` it shows the evidence for referable DR (grades 2-4); with it, the
        evidence for that grade. The heat is scaled by that probability, so a photo the model
        finds healthy stays cool, and cleared outside the fundus disc (no findings there).
        """
        from retinascreen.explain import explain, overlay

        model = self._cam_model()
        rgb = to_rgb(image)
        x = self.preprocess(rgb)
        target = "referable" if class_index is None else "grade"
        with self._cam_lock:
            cam, strength = explain(model, x[None].astype(np.float32), class_index, target=target)
        # sqrt spreads the peaky map so that every lesion with evidence shows, not only the top
        # one; scaling by the explained probability keeps a photo with little evidence cool.
        cam = np.sqrt(cam) * strength * (x.max(axis=2) > FUNDUS_LEVEL)
        return overlay(x, cam, alpha=alpha)

    # -- internals ----------------------------------------------------------------------------
    def _cam_model(self) -> Any:
        if self._keras_for_cam is None:
            sibling = keras_sibling(self.model_path)
            if sibling is None:
                raise ModelError(
                    f"{self.model_path.name}: heat maps need the Keras model; "
                    "put the .keras file beside the .onnx file"
                )
            self._keras_for_cam = _KerasEngine(sibling, self.threads).model
        return self._keras_for_cam

    def _result(self, probs: np.ndarray, quality: dict) -> dict:
        p = [float(v) for v in probs]
        grade = int(np.argmax(probs))
        result: dict[str, Any] = {
            "grade": grade,
            "label": grading.label(grade),
            "probabilities": p,
            "referable": grading.is_referable(grade),
            "referable_probability": grading.referable_probability(p),
            "gradable": bool(quality["gradable"]),
            "quality": {"score": float(quality["score"]), "reasons": list(quality["reasons"])},
            "model": dict(self.model_info),
        }
        if self.synthetic:
            result["synthetic"] = True
            result["warning"] = SYNTHETIC_WARNING
        return result


def _card_value(card: Any | None, key: str) -> Any:
    if card is None:
        return None
    if isinstance(card, dict):
        return card.get(key)
    return getattr(card, key, None)


def _sha256(path: Path) -> str:
    try:
        from retinascreen.modelcard import file_sha256
    except ImportError:
        import hashlib

        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    return file_sha256(path)


def _make_preprocessing(card: Any | None, size: int) -> Any:
    from retinascreen.fundus import Preprocessing

    spec = _card_value(card, "preprocessing")
    if spec:
        pre = Preprocessing.from_dict(dict(spec)) if isinstance(spec, dict) else spec
        if int(pre.size) != size:
            pre = Preprocessing.from_dict({**pre.to_dict(), "size": size})
        return pre
    return Preprocessing(size=size)


def _assess(rgb: np.ndarray) -> dict:
    from retinascreen.fundus import assess_quality

    q = assess_quality(rgb)
    return q.to_dict() if hasattr(q, "to_dict") else dict(q)


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def _is_batch(image: Any) -> bool:
    if isinstance(image, np.ndarray):
        return image.ndim == 4
    return isinstance(image, list | tuple)


def to_rgb(image: ImageInput) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a path, bytes or an array (typed errors on bad input)."""
    from retinascreen.errors import NotAnImageError

    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 8:
            raise NotAnImageError(f"expected an RGB image array (H, W, 3), got shape {image.shape}")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr)) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    if isinstance(image, bytes | bytearray | memoryview):
        from retinascreen.images import load_image

        return load_image(bytes(image))
    if isinstance(image, str | os.PathLike):
        from retinascreen.images import load_image

        path = Path(image)
        if path.is_dir():
            raise NotAnImageError(f"{path} is a directory, not an image")
        if not path.exists():
            raise NotAnImageError(f"{path}: no such file")
        return load_image(path)
    raise NotAnImageError(f"cannot read an image from a {type(image).__name__}")
