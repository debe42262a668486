"""Temperature scaling (Guo et al., 2017): one scalar that makes softmax confidences honest.

Fit on the validation split after training; it never changes which class wins.
"""

from __future__ import annotations

import numpy as np


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits / T, row-wise, numerically stable."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probabilities = apply_temperature(logits, temperature)
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising validation NLL (a log-spaced grid, then a finer one)."""
    labels = np.asarray(labels, int)
    grid = np.geomspace(0.05, 20.0, 200)
    best = min(grid, key=lambda t: negative_log_likelihood(logits, labels, t))
    fine = np.linspace(best * 0.95, best * 1.05, 41)
    return float(min(fine, key=lambda t: negative_log_likelihood(logits, labels, t)))
