"""Temperature scaling of a saved model's five grade probabilities (site recalibration).

A recalibrated model keeps its weights; its model card carries ``output_temperature`` and the
:class:`retinascreen.Predictor` applies it to whatever the engine (Keras or ONNX Runtime)
outputs, so the same code serves both file types and both objectives:

- softmax models: ``p_k ∝ exp(log p_k / T)`` (the classic temperature on the logits; the most
  probable grade does not change);
- regression ("ordinal") models: the cumulative logits ``logit P(grade >= k)`` are divided by
  ``T``, which is exactly the ordinal layer's own temperature multiplied by ``T``
  (:mod:`retinascreen.models.ordinal`); the median grade does not change. An ``offset`` ``b``
  is subtracted from those logits first (card ``output_offset``): the same as moving every
  grade threshold of the ordinal layer up by ``b`` times its temperature, so a camera or
  population whose photos all score higher is brought back to its graders' scale (this does
  move the median grade). :func:`fit_ordinal_scaling` fits both.

``T > 1`` softens the probabilities, ``T < 1`` sharpens them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retinascreen.grading import N_CLASSES

EPS = 1e-7
"""Probabilities are kept in [EPS, 1 - EPS] before taking logarithms or logits."""
TEMPERATURE_BOUNDS = (0.05, 20.0)


def scale_probabilities(
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    temperature: float,
    objective: str = "softmax",
    offset: float = 0.0,
) -> np.ndarray:
    """(n, 5) probabilities with ``temperature`` (and, for ordinal models, ``offset``) applied
    as the model's objective requires."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, N_CLASSES)
    t, b = float(temperature), float(offset)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if not np.isfinite(b) or (b != 0.0 and objective != "ordinal"):
        raise ValueError(f"an offset applies to ordinal models only (a finite number), got {b!r}")
    if t == 1.0 and b == 0.0:
        return p
    if objective == "ordinal":
        at_least = np.clip(1.0 - np.cumsum(p, axis=1)[:, :-1], EPS, 1.0 - EPS)  # k = 1..4
        logits = np.log(at_least) - np.log1p(-at_least)
        scaled = 0.5 * (1.0 + np.tanh(0.5 * (logits - b) / t))
        ones, zeros = np.ones((len(p), 1)), np.zeros((len(p), 1))
        cumulative = np.concatenate([ones, scaled, zeros], axis=1)
        return np.clip(cumulative[:, :-1] - cumulative[:, 1:], 0.0, 1.0)
    logits = np.log(np.clip(p, EPS, 1.0)) / t
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(
    y_true: Sequence[int] | np.ndarray, probabilities: Sequence[Sequence[float]] | np.ndarray
) -> float:
    """Mean negative log-likelihood of the true grades (lower is better calibrated)."""
    y = np.asarray(y_true, dtype=int).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, N_CLASSES)
    return float(-np.log(np.clip(p[np.arange(y.size), y], EPS, 1.0)).mean())


def fit_temperature(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    objective: str = "softmax",
    *,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """The temperature minimising the negative log-likelihood of ``y_true`` (search on log T)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, dtype=int).reshape(-1)
    if y.size == 0:
        raise ValueError("cannot fit a temperature on zero cases")
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, N_CLASSES)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(y, scale_probabilities(p, float(np.exp(log_t)), objective))

    found = minimize_scalar(
        loss,
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def fit_ordinal_scaling(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    *,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    max_offset: float = 10.0,
) -> tuple[float, float]:
    """``(temperature, offset)`` of an ordinal model's cumulative logits minimising the negative
    log-likelihood of ``y_true``: a temperature alone cannot undo a shift of every score (a
    camera whose photos all look worse), which is what srahim-dr's raw photos show (README,
    "Site recalibration")."""
    from scipy.optimize import minimize

    y = np.asarray(y_true, dtype=int).reshape(-1)
    if y.size == 0:
        raise ValueError("cannot fit a temperature on zero cases")
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, N_CLASSES)

    def loss(x: np.ndarray) -> float:
        scaled = scale_probabilities(p, float(np.exp(x[0])), "ordinal", float(x[1]))
        return negative_log_likelihood(y, scaled)

    found = minimize(
        loss,
        x0=np.array([0.0, 0.0]),
        method="L-BFGS-B",
        bounds=[(np.log(bounds[0]), np.log(bounds[1])), (-max_offset, max_offset)],
    )
    return float(np.exp(found.x[0])), float(found.x[1])
