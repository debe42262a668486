"""The Transfer Learning Lab's core: seeded draws, the head, the curve, the feature cache, the
feature maps, the CLI's JSON, and random features scoring below ImageNet ones on real images.

Only the CLI tests and the `real_data` test run MobileNetV2 (a few dozen images); they need the
ImageNet weights (conftest links ../shared/weights into KERAS_HOME) and skip without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hematovision_core import inside_network, softmax_head, transfer_features, transfer_lab

from conftest import SHARED_DATA

REAL_CLASSES = ("eosinophil", "lymphocyte", "neutrophil", "platelet")
REAL_PER_CLASS = 15


def labels_of(counts: dict[str, int]) -> list[str]:
    return [label for label, count in counts.items() for _ in range(count)]


def clusters(per_class: int, classes: int = 3, width: int = 64, spread: float = 2.5, seed: int = 0):
    """Gaussian clusters around random centres: (features (N, width), labels (N,))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, width))
    labels = np.repeat(np.arange(classes), per_class)
    features = centres[labels] + spread * rng.normal(size=(len(labels), width))
    return features.astype(np.float32), [f"class{i}" for i in labels]


def test_draws_are_seeded_nested_and_disjoint_from_evaluation():
    labels = labels_of({"a": 30, "b": 30, "c": 6})
    draw = transfer_lab.draw_shots(labels, (1, 2, 5, 10), seed=3)
    again = transfer_lab.draw_shots(labels, (10, 5, 2, 1), seed=3)
    other = transfer_lab.draw_shots(labels, (1, 2, 5, 10), seed=4)
    assert draw.shots == (1, 2, 5, 10)
    for k in draw.shots:
        np.testing.assert_array_equal(draw.train[k], again.train[k])  # reproducible
    np.testing.assert_array_equal(draw.evaluate, again.evaluate)
    assert not np.array_equal(draw.train[10], other.train[10])  # the seed matters
    labels = np.array(labels)
    for small, large in zip(draw.shots, draw.shots[1:]):
        assert set(draw.train[small]) <= set(draw.train[large])  # nested: k adds examples
    for k in draw.shots:
        assert not set(draw.train[k]) & set(draw.evaluate)  # never scored on its examples
        counts = {label: int((labels[draw.train[k]] == label).sum()) for label in "abc"}
        assert counts == {"a": k, "b": k, "c": min(k, 3)}  # "c" gives at most half its 6
    assert draw.capped == {"c": 3}
    assert len(draw.evaluate) == 66 - 10 - 10 - 3  # everything outside the largest draw


def test_bad_shots_are_refused_with_a_message():
    assert transfer_lab.parse_shots("20, 1,5") == (1, 5, 20)
    for text in ("0,5", "1,51", "one", ""):
        with pytest.raises(ValueError, match="k|whole numbers"):
            transfer_lab.parse_shots(text)


def test_head_reaches_the_optimum_of_its_loss():
    """The Gram-matrix iteration minimises the primal loss: its gradient in W vanishes."""
    features, labels = clusters(8, classes=4, width=300)
    targets = transfer_lab.class_targets(labels, sorted(set(labels)))
    head = softmax_head.train_head(features, targets, 4, l2=1e-2, steps=600)
    x = (features - head.mean) / head.scale  # (n, D)
    probabilities = softmax_head._softmax(x @ head.weights + head.bias)
    error = (probabilities - np.eye(4)[targets]) / len(x)  # (n, C)
    gradient = x.T @ error + 1e-2 * head.weights  # (D, C)
    assert np.abs(gradient).max() < 1e-4
    assert np.abs(error.sum(axis=0)).max() < 1e-4  # the bias' gradient
    assert (head.predict(features) == targets).all()


def test_curve_rises_with_k_on_a_separable_case():
    features, labels = clusters(120, classes=3, width=64, spread=3.0)
    draw = transfer_lab.draw_shots(labels, transfer_lab.CURVE_SHOTS, seed=0)
    targets = transfer_lab.class_targets(labels, sorted(set(labels)))
    curve = transfer_lab.learning_curve("test", features, targets, 3, draw)
    accuracies = np.array([e.accuracy for e in curve])
    assert [e.shots for e in curve] == list(transfer_lab.CURVE_SHOTS)
    assert accuracies[-1] > accuracies[0] + 0.1
    assert accuracies[-1] > 0.9
    assert np.all(np.diff(accuracies) > -0.05)  # a rising trend, give or take a draw's luck
    assert all(e.confusion.sum() == len(draw.evaluate) for e in curve)
    assert [e.n_train for e in curve] == [3 * k for k in transfer_lab.CURVE_SHOTS]


def test_run_lab_scores_every_source_on_the_same_images():
    features, labels = clusters(20, classes=3)
    paths = tuple(f"{label}/{n}.png" for n, label in enumerate(labels))
    found = {name: transfer_features.LabFeatures(name, features * (1 if name == "a" else 0.5),
                                                 paths, tuple(labels), ())
             for name in ("a", "b")}
    run = transfer_lab.run_lab(found, (1, 5), seed=1)
    assert run.classes == ("class0", "class1", "class2")
    # The head scales its features: the same features at half size give the same answers.
    assert run.at("a", 5).accuracy == pytest.approx(run.at("b", 5).accuracy)
    np.testing.assert_array_equal(run.at("a", 5).train_indices, run.at("b", 5).train_indices)
    space = transfer_lab.feature_space(features)
    assert space.coords.shape == (60, 2)


def write_images(folder: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """Class folders of small noisy PNGs (not blank: they pass `load_image`'s checks)."""
    rng = np.random.default_rng(seed)
    for label, count in per_class.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{number}.png")
    return folder


def fake_backend(calls: list):
    """A backend giving each file a feature vector from its bytes (no network)."""
    def backend(files):
        calls.append(len(files))
        views = [transfer_features.decode_view(Path(f), "none", 32) for f in files]
        usable = np.array([v is not None for v in views])
        features = np.zeros((len(files), transfer_features.POOL_WIDTH), np.float32)
        for row, view in enumerate(views):
            if view is not None:
                features[row, :3] = view.reshape(-1, 3).mean(axis=0)
        return features, usable
    return backend


def test_features_are_cached_once_and_recomputed_when_the_images_change(tmp_path):
    root = write_images(tmp_path / "data", {"a": 3, "b": 3})
    (root / "a" / "broken.png").write_bytes(b"not a png")
    source = transfer_features.FeatureSource("random")
    images = transfer_features.list_lab_images(root)
    calls: list = []
    first = transfer_features.cached_features(tmp_path / "cache", source, images, "none",
                                              fake_backend(calls))
    assert first.skipped == ("a/broken.png",)  # skipped and counted, not fatal
    assert first.features.shape == (6, transfer_features.POOL_WIDTH)
    again = transfer_features.cached_features(tmp_path / "cache", source, images, "none",
                                              fake_backend(calls))
    assert len(calls) == 1  # read from disk the second time
    np.testing.assert_array_equal(again.features, first.features)
    write_images(root, {"b": 4}, seed=1)  # b/3.png is new, the others are rewritten
    changed = transfer_features.list_lab_images(root)
    assert changed.fingerprint != images.fingerprint
    transfer_features.cached_features(tmp_path / "cache", source, changed, "none",
                                      fake_backend(calls))
    assert len(calls) == 2
    sample = transfer_features.list_lab_images(root, per_class=2, seed=5)
    assert len(sample.paths) == 4 and sample.capped_at == 2
    assert sample == transfer_features.list_lab_images(root, per_class=2, seed=5)


def test_top_channels_are_the_strongest_and_scaled():
    activations = np.zeros((4, 4, 6), np.float32)
    activations[..., 2] = 1.0
    activations[0, 0, 5] = 8.0  # mean 0.5
    activations[..., 1] = 0.25
    response = inside_network.top_channels(activations, "middle", "block_10_expand_relu", 3)
    assert response.channels == (2, 5, 1)
    assert response.grid == (4, 4, 6) and response.stride == 16
    assert response.maps.shape == (3, 4, 4) and response.maps.max() == 1.0
    assert "Middle block" in response.sentence
    picture = inside_network.map_picture(response.maps[1], 32)
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8


def test_inside_the_network_of_a_small_random_model(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    network = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False,
                                             weights=None)
    image = write_images(tmp_path, {"a": 1}) / "a" / "0.png"
    view = inside_network.layer_responses(inside_network.layers_model(network), "random", image,
                                          "none", 96)
    assert [r.depth for r in view.responses] == ["early", "middle", "last"]
    assert [r.grid[:2] for r in view.responses] == [(24, 24), (6, 6), (3, 3)]
    assert view.image.shape == (96, 96, 3)


def imagenet_weights_or_skip() -> None:
    if transfer_features.keras_home_weights() is None:
        pytest.skip("no ImageNet weights where Keras looks ($KERAS_HOME/models/)")


def test_cli_writes_the_json_contract_on_a_tiny_folder(tmp_path, capsys):
    imagenet_weights_or_skip()
    root = write_images(tmp_path / "tiny", {"blast": 4, "lymphocyte": 4, "monocyte": 4})
    (root / "monocyte" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    out = tmp_path / "out" / "lab.json"
    code = transfer_lab.main(["--data", str(root), "--shots", "1,2", "--json", str(out),
                              "--seed", "7", "--cache", str(tmp_path / "cache")])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["imagenet"]) == set(result["random"]) == {"1", "2"}
    for source in ("imagenet", "random"):
        assert all(0.0 <= value <= 1.0 for value in result[source].values())
    assert result["n_eval"] == 12 - 3 * 2  # outside the largest draw (2 a class)
    assert result["skipped_unreadable"] == 1
    assert "Skipped 1 unreadable" in capsys.readouterr().err
    assert transfer_lab.main(["--data", str(tmp_path / "missing"), "--json", str(out)]) == 1
    assert transfer_lab.main(["--data", str(root), "--shots", "0", "--json", str(out)]) == 1


def test_random_features_score_below_imagenet_features_real_data(shared_data, tmp_path):
    imagenet_weights_or_skip()
    root = tmp_path / "pbc"
    for label in REAL_CLASSES:
        (root / label).mkdir(parents=True)
        for path in sorted((SHARED_DATA / "pbc" / label).glob("*.jpg"))[:REAL_PER_CLASS]:
            (root / label / path.name).symlink_to(path)
    out = tmp_path / "lab.json"
    assert transfer_lab.main(["--data", str(root), "--shots", "1,3,5", "--json", str(out),
                              "--cache", str(tmp_path / "cache")]) == 0
    result = json.loads(out.read_text())
    assert result["n_eval"] == 4 * (REAL_PER_CLASS - 5)
    imagenet, random = result["imagenet"], result["random"]
    assert np.mean(list(imagenet.values())) > np.mean(list(random.values())) + 0.1
    assert imagenet["5"] > 0.6  # well above chance (0.25) from 5 cells a class
