"""The training and evaluation commands end to end, on a few real images and a tiny model.

A real check of the plumbing (split, cached features, both stages, calibration, model folder,
evaluation report), not of accuracy: random weights, 96x96 inputs, one epoch per stage.
"""

import json
import os

import pytest

from hematovision_core import evaluate, train
from hematovision_core.model_io import ModelFolder, read_metadata
from hematovision_core.predict import Classifier


@pytest.fixture(scope="module")
def trained_config(shared_data, tiny_model_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny-pbc"
    return train.parse_config([
        "--data", str(shared_data / "pbc"), "--out", str(out), "--weights", "none",
        "--input-size", "96", "--max-per-class", "10", "--views", "2", "--head-epochs", "1",
        "--epochs", "1", "--batch-size", "16", "--tta", "dihedral",
        "--init-from", str(tiny_model_folder),  # 3 classes: all but the 8-class head copied
        "--cache-dir", str(tmp_path_factory.mktemp("cache")),
    ])


@pytest.fixture(scope="module")
def trained_folder(trained_config):
    train.train(trained_config)
    return trained_config.out


def test_training_real_data_writes_a_loadable_model_folder(trained_folder):
    metadata = read_metadata(trained_folder)
    assert metadata["classes"][0] == "basophil" and len(metadata["classes"]) == 8
    assert metadata["display_names"][3] == "Immature granulocyte"
    assert metadata["temperature"] > 0
    assert metadata["tta"] == "dihedral"
    assert metadata["architecture"].startswith("MobileNetV2 (alpha 1.0, ImageNet, then tiny-3class)")
    assert metadata["data"]["images"] == 80
    assert metadata["metrics"]["validation"]["n"] == 8
    assert metadata["metrics"]["test"]["n"] == 16
    assert set(metadata["library_versions"]) >= {"tensorflow", "keras"}
    history = json.loads((trained_folder / "history.json").read_text())["epochs"]
    assert [row["stage"] for row in history] == ["head", "fine_tune"]
    assert (trained_folder / "split.csv").read_text().count("\n") == 81
    classifier = Classifier.load(trained_folder)
    assert classifier.tta == "dihedral"


def test_model_json_records_the_training_config_real_data(trained_config, trained_folder):
    training = read_metadata(trained_folder)["training"]
    assert training["feature_cut_layer"] == "block_10_project_BN" and training["minutes"] >= 0
    # The recipe comes back as it went in; the machine's paths are given again.
    assert train.TrainConfig.from_record(training, data=trained_config.data,
                                         out=trained_config.out,
                                         cache_dir=trained_config.cache_dir) == trained_config


def test_training_fits_the_temperature_on_the_served_logits_real_data(trained_config,
                                                                      trained_folder):
    import numpy as np

    from hematovision_core.calibration import fit_temperature
    from hematovision_core.data import read_manifest

    classifier = Classifier.load(trained_folder)
    records = [r for r in read_manifest(trained_folder / "split.csv", trained_config.data)
               if r.split == "val"]
    logits = classifier.logits(np.stack([classifier.prepare(r.path) for r in records]))  # (8, 8)
    labels = [classifier.classes.index(r.label) for r in records]
    assert classifier.temperature == pytest.approx(fit_temperature(logits, labels))


def test_init_from_starts_every_matching_layer_real_data(trained_folder, tiny_keras):
    import numpy as np

    from hematovision_core.keras_model import KerasClassifier

    trained = KerasClassifier.load(trained_folder).model
    # Below the fine-tuned blocks nothing trains: those layers still hold the source's weights.
    for name in ("Conv1", "block_5_project", "block_10_project_BN"):
        for ours, theirs in zip(trained.get_layer(name).get_weights(),
                                tiny_keras.model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert trained.get_layer("head_logits").get_weights()[0].shape == (1280, 8)


def test_evaluate_manifest_split_real_data(trained_folder, shared_data, tmp_path):
    out = tmp_path / "report.json"
    assert evaluate.main(["--model", str(trained_folder), "--data", str(shared_data / "pbc"),
                          "--split", "test", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("n", "accuracy", "macro_f1", "per_class", "confusion_matrix", "classes", "ece",
                "top2_accuracy"):
        assert key in report
    assert report["n"] == 16
    # The end-to-end evaluation agrees with the figures training wrote.
    assert report["accuracy"] == pytest.approx(read_metadata(trained_folder)["metrics"]["test"]["accuracy"])
    assert sum(map(sum, report["confusion_matrix"])) == 16


def test_evaluate_counts_unknown_classes_real_data(tiny_model_folder, shared_data, tmp_path):
    # A folder the model never saw, holding one class it knows and one it does not.
    data = tmp_path / "mixed"
    for label, count in (("eosinophil", 3), ("platelet", 2)):
        (data / label).mkdir(parents=True)
        for path in sorted((shared_data / "pbc" / label).glob("*.jpg"))[:count]:
            os.symlink(path, data / label / path.name)
    report = evaluate.evaluate(tiny_model_folder, data)
    assert report["n"] == 3
    assert report["unknown_class_images"] == 2
    assert report["unknown_classes"]["platelet"]["n"] == 2
    assert sum(report["unknown_classes"]["platelet"]["predicted_as"].values()) == 2
    assert "platelet" in evaluate.format_report(report)
    assert report["out_of_domain_rate"] is None  # the tiny model has no guard


def test_evaluate_split_folder_real_data(tiny_model_folder, shared_data, capsys):
    # blood-cells has a TRAIN split folder; upper-case class names match the model's.
    assert evaluate.main(["--model", str(tiny_model_folder), "--data",
                          str(shared_data / "blood-cells"), "--split", "train"]) == 0
    text = capsys.readouterr().out
    assert "images 261" in text  # 75 eosinophil + 27 lymphocyte + 159 neutrophil
    assert "monocyte: 16" in text


def test_evaluate_missing_split_is_a_clear_error(tiny_model_folder, shared_data, capsys):
    assert evaluate.main(["--model", str(tiny_model_folder), "--data",
                          str(shared_data / "blood-cells"), "--split", "test"]) == 2
    assert "no 'test' split" in capsys.readouterr().err


def test_evaluate_record_stores_figures_in_model_json_real_data(tiny_model_folder, shared_data,
                                                                 tmp_path):
    import shutil

    from hematovision_core import model_card

    folder = shutil.copytree(tiny_model_folder, tmp_path / "model")
    data = tmp_path / "copies"
    (data / "eosinophil").mkdir(parents=True)
    for path in sorted((shared_data / "pbc" / "eosinophil").glob("*.jpg"))[:2]:
        os.symlink(path, data / "eosinophil" / path.name)
    assert evaluate.main(["--model", str(folder), "--data", str(data),
                          "--record", "augmented_test"]) == 0
    metadata = read_metadata(folder)  # still a valid folder: the model file is untouched
    assert metadata["metrics"]["augmented_test"]["n"] == 2
    headline = model_card.headline_metrics(ModelFolder.from_metadata(metadata))
    assert list(headline["split"]) == ["test, rotated copies"]
    assert headline["images"].iloc[0] == 2


def test_training_fits_an_out_of_domain_guard_real_data(trained_folder):
    metadata = read_metadata(trained_folder)  # ood.npz is checksummed like the model files
    guard = metadata["ood"]
    assert guard["score"] == "mahalanobis"  # no outside folder to choose by
    assert "56 training images" in guard["fit_on"] and "8 validation images" in guard["threshold_on"]
    assert guard["flag_rates"]["validation"] <= 1 / 8  # at most the one above the 95th percentile
    assert Classifier.load(trained_folder).guard is not None


def test_evaluate_reports_out_of_domain_rate_and_unflagged_accuracy_real_data(trained_folder,
                                                                              shared_data):
    import numpy as np

    classifier = Classifier.load(trained_folder)
    report = evaluate.evaluate(trained_folder, shared_data / "pbc", "test", classifier=classifier)
    # The same figures from the predictions themselves.
    records, _ = evaluate.select_records(trained_folder, shared_data / "pbc", "test")
    predictions = classifier.classify([r.path for r in records])
    flagged = np.array([p.out_of_domain for p in predictions])
    correct = np.array([p.label == r.label for p, r in zip(predictions, records)])
    assert report["out_of_domain_rate"] == pytest.approx(flagged.mean())
    assert report["n_unflagged"] == int((~flagged).sum())
    if (~flagged).any():
        assert report["accuracy_unflagged"] == pytest.approx(correct[~flagged].mean())
    assert "out of domain:" in evaluate.format_report(report)


def test_evaluate_perturb_changes_what_the_model_sees_real_data(trained_folder, shared_data,
                                                                tmp_path, capsys):
    import numpy as np

    from hematovision_core.perturb import compose

    out = tmp_path / "perturbed.json"
    assert evaluate.main(["--model", str(trained_folder), "--data", str(shared_data / "pbc"),
                          "--split", "test", "--perturb", "blur=3", "--perturb", "jpeg=10",
                          "--limit", "8", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["perturbations"] == {"blur": 3.0, "jpeg": 10.0}
    assert report["n"] == 8 and "stratified sample of 8" in report["source"]
    assert "perturbed: blur=3, jpeg=10" in capsys.readouterr().out
    classifier = Classifier.load(trained_folder)
    records, _ = evaluate.select_records(trained_folder, shared_data / "pbc", "test")
    # One epoch on 56 images leaves this model's probabilities flat (1/8 each); its pooled
    # features, and so its out-of-domain scores, still show what it was shown.
    _, _, plain, _ = evaluate.record_outputs(classifier, records[:4])
    _, _, blurred, _ = evaluate.record_outputs(classifier, records[:4],
                                               perturb=compose([("blur", 3.0)]))
    assert np.abs(plain - blurred).max() > 1e-3 * np.abs(plain).max()


def test_evaluate_rejects_an_unknown_perturbation(tiny_model_folder, shared_data, capsys):
    assert evaluate.main(["--model", str(tiny_model_folder), "--data",
                          str(shared_data / "blood-cells"), "--split", "train",
                          "--perturb", "fog=1"]) == 2
    assert "brightness" in capsys.readouterr().err
