"""Classification metrics in plain NumPy, so they can be checked against hand-computed values."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """counts[i, j] = images of true class i predicted as class j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return counts


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined, as scikit-learn does)."""
    true_positive = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    support = confusion.sum(axis=1).astype(float)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """Mean F1 over the classes present in `y_true` (absent classes would only add zeros)."""
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    scores = per_class_scores(confusion)
    present = scores["support"] > 0
    return float(scores["f1"][present].mean()) if present.any() else 0.0


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes present: the accuracy a set with as many images of each
    class would give. blood-cells' public TEST folder is such a set (about as many augmented
    copies of each class, however few its source smears), so this, not plain accuracy, predicts
    a score there."""
    scores = per_class_scores(confusion)
    present = scores["support"] > 0
    return float(scores["recall"][present].mean()) if present.any() else 0.0


def top_k_accuracy(y_true, probabilities: np.ndarray, k: int = 2) -> float:
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean([t in row for t, row in zip(np.asarray(y_true), top_k)]))


def expected_calibration_error(y_true, probabilities: np.ndarray, bins: int = 15,
                               sample_weight=None) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy, over equal-width bins.
    `sample_weight` (optional, one per row) weighs images, e.g. so that each class counts as in
    a class-balanced test set."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    weight = np.ones(len(confidence)) if sample_weight is None else np.asarray(sample_weight, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any() and weight[in_bin].sum() > 0:
            w = weight[in_bin]
            ece += w.sum() / weight.sum() * abs(np.average(correct[in_bin], weights=w)
                                                - np.average(confidence[in_bin], weights=w))
    return float(ece)


def summarize(y_true, probabilities: np.ndarray, classes: list[str]) -> dict:
    """The evaluation report as a JSON-ready dict."""
    y_true = np.asarray(y_true, int)
    y_pred = probabilities.argmax(axis=1) if len(y_true) else np.zeros(0, int)
    confusion = confusion_matrix(y_true, y_pred, len(classes))
    scores = per_class_scores(confusion)
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true, y_pred, len(classes)),
        "balanced_accuracy": balanced_accuracy(confusion),
        "top2_accuracy": top_k_accuracy(y_true, probabilities, 2) if len(y_true) else 0.0,
        "ece": expected_calibration_error(y_true, probabilities) if len(y_true) else 0.0,
        "per_class": {
            name: {key: (int(v[i]) if key == "support" else float(v[i])) for key, v in scores.items()}
            for i, name in enumerate(classes)
        },
        "classes": list(classes),
        "confusion_matrix": confusion.tolist(),
    }


def reliability_bins(y_true, probabilities: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width confidence bin: images, mean confidence and accuracy (the points of a
    reliability diagram; a calibrated model's lie on the diagonal). Empty bins are left out."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            rows.append({"low": float(low), "high": float(high), "n": int(in_bin.sum()),
                         "confidence": float(confidence[in_bin].mean()),
                         "accuracy": float(correct[in_bin].mean())})
    return rows
