"""Metrics against values worked out by hand, and temperature scaling."""

import numpy as np
import pytest

from hematovision_core import calibration, metrics

# 3 classes, 6 images. true: 0 0 1 1 2 2 ; predicted: 0 1 1 1 2 0
Y_TRUE = [0, 0, 1, 1, 2, 2]
PROBS = np.array([
    [0.8, 0.1, 0.1],   # 0 -> 0, confidence 0.8
    [0.3, 0.6, 0.1],   # 0 -> 1 (second choice 0: top-2 hit)
    [0.1, 0.7, 0.2],   # 1 -> 1
    [0.2, 0.5, 0.3],   # 1 -> 1
    [0.1, 0.1, 0.8],   # 2 -> 2
    [0.5, 0.1, 0.4],   # 2 -> 0 (second choice 2: top-2 hit)
])


def test_confusion_matrix_by_hand():
    y_pred = PROBS.argmax(axis=1)
    assert metrics.confusion_matrix(Y_TRUE, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_per_class_and_macro_f1_by_hand():
    report = metrics.summarize(Y_TRUE, PROBS, ["a", "b", "c"])
    # class a: precision 1/2, recall 1/2, f1 1/2 ; b: p 2/3, r 1, f1 0.8 ; c: p 1, r 1/2, f1 2/3
    assert report["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert report["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert report["top2_accuracy"] == pytest.approx(1.0)
    assert report["n"] == 6 and report["classes"] == ["a", "b", "c"]


def test_expected_calibration_error_by_hand():
    # confidences 0.8 0.6 0.7 0.5 0.8 0.5 ; correct 1 0 1 1 1 0
    # bins (15 equal): 0.5 -> (0.4667, 0.5333]: two images, acc 0.5, conf 0.5 -> gap 0
    # 0.6 -> (0.6, 0.6667]? 0.6 falls in (0.5333, 0.6]: one image, acc 0, conf 0.6 -> 0.6 * 1/6
    # 0.7 -> (0.6667, 0.7333]: acc 1, conf 0.7 -> 0.3 * 1/6 ; 0.8 -> (0.7333, 0.8]: acc 1, conf 0.8 -> 0.2 * 2/6
    expected = 0.6 / 6 + 0.3 / 6 + 0.2 * 2 / 6
    assert metrics.expected_calibration_error(Y_TRUE, PROBS) == pytest.approx(expected)


def test_macro_f1_ignores_classes_absent_from_truth():
    assert metrics.macro_f1([0, 0, 1], [0, 0, 1], 5) == pytest.approx(1.0)


def test_balanced_accuracy_weights_each_class_equally():
    # 9 images of class 0 all right, 1 of class 1 wrong: accuracy 0.9, balanced 0.5;
    # class 2 never occurs and does not count.
    confusion = metrics.confusion_matrix([0] * 9 + [1], [0] * 9 + [0], 3)
    assert metrics.balanced_accuracy(confusion) == pytest.approx(0.5)


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    true_logits = rng.normal(size=(2000, 4))
    true_logits[np.arange(2000), labels] += 1.5
    # Sample labels from the true model, then make the logits 3x overconfident.
    probs = calibration.apply_temperature(true_logits, 1.0)
    sampled = np.array([rng.choice(4, p=p / p.sum()) for p in probs])
    temperature = calibration.fit_temperature(true_logits * 3.0, sampled)
    assert 2.4 < temperature < 3.6
    calibrated = calibration.apply_temperature(true_logits * 3.0, temperature)
    raw = calibration.apply_temperature(true_logits * 3.0, 1.0)
    assert metrics.expected_calibration_error(sampled, calibrated) < metrics.expected_calibration_error(sampled, raw)
    assert (calibrated.argmax(1) == raw.argmax(1)).all()  # never changes the winner
