"""Export a trained Keras model to ONNX (fp32, or int8 by static quantisation) for fast CPU use.

fp32: ``tf2onnx`` (opset 17, input ``image`` (N, S, S, 3) RGB 0..255, the model's own
pre-processing layers inside). int8: ONNX Runtime static quantisation (QDQ, int8 weights
per channel or per tensor, whichever agrees better with Keras on the held images, uint8
activations, MinMax calibration) over calibration photographs pre-processed exactly
as the model card says. The final softmax stays in fp32 so probabilities keep their precision.

Every export measures grade agreement with the fp32 Keras model on held photographs (the
calibration images not used for calibration, or ``check``) and refuses, writing nothing, below
``min_agreement`` (98 % by default). The model card is copied into the ONNX metadata, with the
precision and the measured agreement. The output appears atomically (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retinascreen.errors import ConfigError, ExportAgreementError, ImageError, ModelError

if TYPE_CHECKING:
    from retinascreen.models.modelcard import ModelCard

FORMATS = ("onnx",)
DEFAULT_OPSET = 17
MIN_AGREEMENT = 0.98
EXPORT_METADATA_KEY = "retinascreen_export"


@dataclass
class ExportReport:
    """What an export produced and how closely it follows the Keras model."""

    path: Path
    precision: str  # "fp32" or "int8"
    agreement: float | None  # grade agreement with the fp32 Keras model on held images
    n_checked: int
    n_calibration: int
    max_abs_diff: float  # largest probability difference on the checks (random inputs if none)
    size_bytes: int

    def summary(self) -> str:
        parts = [f"wrote {self.path} ({self.precision}, {self.size_bytes / 1e6:.1f} MB)"]
        if self.n_calibration:
            parts.append(f"calibrated on {self.n_calibration} images")
        if self.agreement is not None:
            parts.append(
                f"grade agreement with Keras fp32: {self.agreement:.1%} of {self.n_checked} held images"
            )
        parts.append(f"max probability difference {self.max_abs_diff:.2e}")
        return "; ".join(parts)


def keras_to_onnx(model: Any, out_path: str | Path, *, opset: int = DEFAULT_OPSET) -> Path:
    """Convert a Keras model to an fp32 ONNX file with a dynamic batch dimension."""

    import tensorflow as tf

    out_path = Path(out_path)
    shape = tuple(model.input_shape)
    spec = (tf.TensorSpec((None, *shape[1:]), tf.float32, name="image"),)
    errors = []
    try:
        import tf2onnx

        tf2onnx.convert.from_keras(
            model, input_signature=spec, opset=opset, output_path=str(out_path)
        )
        return out_path
    except Exception as exc:  # noqa: BLE001 - fall back to Keras's own exporter
        errors.append(f"tf2onnx: {exc}")
    try:
        model.export(str(out_path), format="onnx", input_signature=list(spec), verbose=False)
        return out_path
    except Exception as exc:  # noqa: BLE001
        errors.append(f"keras export: {exc}")
    raise ModelError("ONNX conversion failed: " + "; ".join(errors))


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
) -> Path:
    """Static int8 quantisation (QDQ) calibrated on pre-processed images (N, S, S, 3)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    pre_path = out_path.with_name(out_path.stem + ".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
    graph = onnx.load(str(pre_path)).graph
    input_name = graph.input[0].name
    keep_fp32 = [n.name for n in graph.node if n.op_type == "Softmax"]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{input_name: calibration[i : i + 1]} for i in range(len(calibration))]
            )

        def get_next(self) -> dict | None:
            return next(self._batches, None)

    quantize_static(
        str(pre_path),
        str(out_path),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=keep_fp32,
    )
    pre_path.unlink(missing_ok=True)
    return out_path


def grade_agreement(
    reference: np.ndarray, candidate: np.ndarray, rule: str = "most-probable"
) -> float:
    """Share of images whose predicted grade (by ``rule``) is the same in both arrays."""
    from retinascreen.grading import predicted_grades

    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if len(reference) == 0:
        return float("nan")
    return float(np.mean(predicted_grades(reference, rule) == predicted_grades(candidate, rule)))


def load_images_for(
    paths: Sequence[Path], preprocess: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, list[Path]]:
    """Pre-processed float32 pixels of the readable images among ``paths`` (bad ones skipped)."""
    from retinascreen.data.photo import to_rgb

    arrays, used = [], []
    for path in paths:
        try:
            arrays.append(preprocess(to_rgb(path)).astype(np.float32))
            used.append(path)
        except ImageError:
            continue
    if not arrays:
        return np.zeros((0, 1, 1, 3), np.float32), used
    return np.stack(arrays), used


def split_calibration(paths: Sequence[Path], held_every: int = 5) -> tuple[list[Path], list[Path]]:
    """(calibration, held) with every ``held_every``-th image held out for the agreement check."""
    paths = sorted(paths)
    held = [p for i, p in enumerate(paths) if i % held_every == held_every - 1]
    calib = [p for i, p in enumerate(paths) if i % held_every != held_every - 1]
    return calib, held


def export_model(
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    fmt: str = "onnx",
    int8: bool = False,
    calibration: str | os.PathLike | None = None,
    check: str | os.PathLike | None = None,
    min_agreement: float = MIN_AGREEMENT,
    opset: int = DEFAULT_OPSET,
    log: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export MODEL (a .keras file or run directory) to ``out``; see the module docstring."""
    from retinascreen.data.folders import find_images
    from retinascreen.models.engines import load_keras_model, resolve_model_path
    from retinascreen.models.modelcard import preprocessing_for
    from retinascreen.serving.task import load_card

    say = log or (lambda _msg: None)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (expected {', '.join(FORMATS)})")
    if not 0.0 <= min_agreement <= 1.0:
        raise ConfigError(f"min agreement must be within 0..1, got {min_agreement}")
    if int8 and calibration is None:
        raise ConfigError("--int8 needs --calibration DIR (representative fundus photographs)")
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"{out.name}: the output of an ONNX export must end in .onnx")
    source = resolve_model_path(model, engine="keras")
    keras_model = load_keras_model(source)
    card = load_card(source)
    segmentation = card is not None and card.task == "segmentation"
    if segmentation and int8:
        raise ConfigError(
            f"{source.name} is a segmentation model: export it as fp32 (int8 maps are not measured)"
        )
    size = _input_size(keras_model, card)
    pre = preprocessing_for(card, size)
    from retinascreen.grading import grade_rule

    rule = grade_rule(card.objective if card else None)

    calib_paths: list[Path] = []
    held_paths: list[Path] = []
    if calibration is not None:
        found = find_images(Path(calibration))
        if check is None:
            calib_paths, held_paths = split_calibration(found)
        else:
            calib_paths = found
    if check is not None:
        held_paths = find_images(Path(check))
    calib_x, calib_used = load_images_for(calib_paths, pre.apply)
    held_x, held_used = load_images_for(held_paths, pre.apply)
    if int8 and len(calib_used) == 0:
        raise ConfigError(f"no readable calibration images in {calibration}")
    if int8 and len(held_used) == 0:
        raise ConfigError(
            "no held images to measure agreement: give at least 5 calibration images "
            "(every 5th is held out) or --check DIR"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        fp32_path = keras_to_onnx(keras_model, Path(tmp) / "fp32.onnx", opset=opset)
        say(f"converted {source.name} to ONNX fp32")
        final = fp32_path
        probe = held_x if len(held_x) else _random_probe(size)
        reference = np.asarray(keras_model.predict(probe, verbose=0, batch_size=16))
        scheme = None
        if int8:
            # Per-channel weights are usually closer to fp32, but not always: measure both.
            best = None
            for per_channel in (True, False):
                name = "per-channel" if per_channel else "per-tensor"
                say(f"quantising to int8 ({name} weights) on {len(calib_used)} calibration images")
                path = quantize_int8(
                    fp32_path, Path(tmp) / f"int8-{name}.onnx", calib_x, per_channel=per_channel
                )
                probs = _run_onnx(path, probe)
                score = grade_agreement(reference, probs, rule)
                say(f"  {name}: grade agreement {score:.1%}")
                if best is None or score > best[0]:
                    best = (score, path, probs, name)
            assert best is not None  # the loop above ran twice
            _, final, candidate, scheme = best
        else:
            candidate = _run_onnx(final, probe)
        max_diff = float(np.abs(reference - candidate).max())
        agreement = (
            grade_agreement(reference, candidate, rule)
            if len(held_x) and not segmentation
            else None
        )
        precision = "int8" if int8 else "fp32"
        if agreement is not None:
            say(f"grade agreement with Keras fp32: {agreement:.1%} of {len(held_x)} held images")
            if agreement < min_agreement:
                raise ExportAgreementError(
                    f"the {precision} model agrees with the fp32 Keras model on only "
                    f"{agreement:.1%} of {len(held_x)} held images (need {min_agreement:.0%}); "
                    f"nothing written to {out}. Use more representative calibration images, "
                    "or export fp32"
                )
        if agreement is None and not int8 and max_diff > 1e-3:
            raise ExportAgreementError(
                f"the ONNX model's probabilities differ from Keras by {max_diff:.2e}; nothing written"
            )
        _write_metadata(
            final,
            card,
            {
                "precision": precision,
                "quantization": f"onnxruntime static QDQ, {scheme} int8 weights, uint8 activations, "
                "MinMax calibration"
                if int8
                else None,
                "source": source.name,
                "grade_agreement": agreement,
                "n_checked": len(held_x),
                "n_calibration": len(calib_used) if int8 else 0,
                "opset": opset,
            },
        )
        os.replace(final, out)
    return ExportReport(
        path=out,
        precision=precision,
        agreement=agreement,
        n_checked=len(held_x),
        n_calibration=len(calib_used) if int8 else 0,
        max_abs_diff=max_diff,
        size_bytes=out.stat().st_size,
    )


def _input_size(keras_model: Any, card: ModelCard | None) -> int:
    """The square input side: the model's own, else (fully convolutional) what Segmenter runs."""
    side = keras_model.input_shape[1]
    if side is None and card is not None:
        from retinascreen.serving.segmenter import network_side

        side = network_side(card.input_size)
    if side is None:
        raise ModelError("the model takes any input size and has no model card to say which")
    return int(side)


def _random_probe(size: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32)


def _run_onnx(path: Path, batch: np.ndarray) -> np.ndarray:
    from retinascreen.models.engines import OnnxEngine

    engine = OnnxEngine(path)
    return np.concatenate([engine(batch[i : i + 16]) for i in range(0, len(batch), 16)])


def _write_metadata(path: Path, card: ModelCard | None, export_info: dict[str, Any]) -> None:
    """Copy the model card into the ONNX file, noting precision and agreement."""
    import onnx

    if card is not None:
        from retinascreen.models.modelcard import write_card

        write_card(path, _with_export_note(card, export_info))
    model = onnx.load(str(path))
    entries = {p.key: p for p in model.metadata_props}
    if EXPORT_METADATA_KEY in entries:
        entries[EXPORT_METADATA_KEY].value = json.dumps(export_info)
    else:
        prop = model.metadata_props.add()
        prop.key, prop.value = EXPORT_METADATA_KEY, json.dumps(export_info)
    onnx.save(model, str(path))


def _with_export_note(card: ModelCard, export_info: dict[str, Any]) -> ModelCard:
    """The card with the export (precision, quantisation, agreement) recorded in ``extra``."""
    return dataclasses.replace(card, extra={**card.extra, "export": export_info})
