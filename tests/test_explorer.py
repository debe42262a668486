"""The explorer's logic: data folders, splits, paging, filters, confusion cells, highlights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hematovision_core import explorer
from hematovision_core.explorer import ALL, Filters
from hematovision_core.model_io import ModelFolder
from hematovision_core.split_predictions import SplitPredictions

CLASSES = ("eosinophil", "lymphocyte", "neutrophil")


def fake_predictions(labels, predicted, confidence) -> SplitPredictions:
    """Predictions whose top class and confidence are exactly as given (no model needed)."""
    count = len(labels)
    probabilities = np.zeros((count, len(CLASSES)), np.float32)
    for row, (name, top) in enumerate(zip(predicted, confidence)):
        probabilities[row, :] = (1.0 - top) / (len(CLASSES) - 1)
        probabilities[row, CLASSES.index(name)] = top
    return SplitPredictions(
        root=Path("/data/pbc"), split="test",
        paths=tuple(f"{label}/{i}.jpg" for i, label in enumerate(labels)),
        labels=tuple(labels), classes=CLASSES, logits=np.log(probabilities),
        probabilities=probabilities, coords=np.zeros((count, 2), np.float32),
        explained_variance=(0.5, 0.2), skipped=(), folder=Path("/nowhere"),
    )


@pytest.fixture
def table() -> pd.DataFrame:
    labels = ["eosinophil"] * 4 + ["neutrophil"] * 4 + ["lymphocyte", "basophil"]
    predicted = ["eosinophil", "eosinophil", "neutrophil", "neutrophil",
                 "neutrophil", "neutrophil", "eosinophil", "lymphocyte",
                 "lymphocyte", "lymphocyte"]
    confidence = [0.9, 0.6, 0.95, 0.5, 0.8, 0.7, 0.99, 0.4, 0.55, 0.97]
    return explorer.prediction_table(fake_predictions(labels, predicted, confidence))


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 100, 150)).save(path)


def test_list_datasets_finds_class_folders_and_split_folders(tmp_path):
    write_image(tmp_path / "pbc" / "eosinophil" / "a.png")
    write_image(tmp_path / "blood-cells" / "TRAIN" / "EOSINOPHIL" / "a.png")
    write_image(tmp_path / "blood-cells" / "TEST" / "EOSINOPHIL" / "b.png")
    (tmp_path / "empty" / "nothing").mkdir(parents=True)
    assert explorer.list_datasets(tmp_path) == ["blood-cells/TEST", "blood-cells/TRAIN", "pbc"]
    assert explorer.list_datasets(tmp_path / "pbc") == ["."]
    assert explorer.list_datasets(tmp_path / "missing") == []


def test_split_options_offer_the_manifest_only_for_the_models_own_data(owning_classifier):
    assert explorer.split_options(owning_classifier, "pbc") == ["test", "val", "train", ALL]
    assert explorer.split_options(owning_classifier, "blood-cells/TRAIN") == [ALL]
    assert ModelFolder.from_metadata({"classes": ["a", "b"], "data": {"dataset": "pbc"}}).dataset \
        == "pbc"


def test_split_source_reads_the_manifest_or_lists_the_folder(owning_classifier, small_data):
    test = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    assert len(test.paths) == 6 and set(test.labels) == set(CLASSES)
    everything = explorer.split_source(small_data, owning_classifier, "pbc", ALL)
    assert len(everything.paths) == 12
    assert all((everything.root / path).is_file() for path in everything.paths)
    with pytest.raises(ValueError):
        explorer.split_source(small_data, owning_classifier, "pbc", "holdout")
    with pytest.raises(FileNotFoundError):
        explorer.split_source(small_data, owning_classifier, "nowhere", ALL)
    counts = explorer.class_distribution(owning_classifier, small_data, "pbc", test)
    assert list(counts.columns) == ["train", "val", "test"]
    assert counts.loc["eosinophil"].tolist() == [1, 1, 2]


def test_gallery_pages_hold_page_size_items_and_clamp_the_page_number():
    items = list(range(50))
    first = explorer.page_of(items, 1, 24)
    last = explorer.page_of(items, 3, 24)
    assert first.items == tuple(range(24)) and first.count == 3 and first.total == 50
    assert last.items == (48, 49)
    assert explorer.page_of(items, 99, 24) == last
    assert explorer.page_of(items, 0, 24) == first
    assert explorer.page_of([], 1, 24).count == 1
    with pytest.raises(ValueError):
        explorer.page_of(items, 1, 0)


def test_filters_narrow_the_images(table):
    assert len(explorer.apply_filters(table, Filters())) == 10
    wrong = explorer.apply_filters(table, Filters(outcome="wrong"))
    assert set(wrong["path"]) == {"eosinophil/2.jpg", "eosinophil/3.jpg", "neutrophil/6.jpg",
                                  "neutrophil/7.jpg", "basophil/9.jpg"}
    eosinophils = explorer.apply_filters(table, Filters(true_label="eosinophil", outcome="correct"))
    assert list(eosinophils["path"]) == ["eosinophil/0.jpg", "eosinophil/1.jpg"]
    confident = explorer.apply_filters(table, Filters(confidence=(0.9, 1.0)))
    assert confident["confidence"].min() >= 0.9 and len(confident) == 4
    predicted = explorer.apply_filters(table, Filters(predicted_label="lymphocyte"))
    assert set(predicted["label"]) == {"neutrophil", "lymphocyte", "basophil"}


def test_filters_reject_values_a_page_could_not_offer():
    with pytest.raises(ValueError):
        Filters(outcome="maybe")
    with pytest.raises(ValueError):
        Filters(confidence=(0.8, 0.2))


def test_a_confusion_cell_selects_exactly_its_images(table):
    confusion = explorer.confusion_table(table, CLASSES)
    # Labels the model does not know (basophil) get a row, never a column.
    assert list(confusion.index) == [*CLASSES, "basophil"]
    assert list(confusion.columns) == list(CLASSES)
    assert confusion.to_numpy().sum() == len(table)
    for true_label in confusion.index:
        for predicted_label in confusion.columns:
            cell = explorer.cell_rows(table, true_label, predicted_label)
            assert len(cell) == confusion.loc[true_label, predicted_label]
            assert (cell["label"] == true_label).all()
            assert (cell["predicted"] == predicted_label).all()
    assert list(explorer.cell_rows(table, "eosinophil", "neutrophil")["path"]) == \
        ["eosinophil/2.jpg", "eosinophil/3.jpg"]


def test_most_confident_mistakes_and_least_confident_correct(table):
    mistakes = explorer.most_confident_mistakes(table, 3)
    # neutrophil/6 (0.99) first; basophil/9 is not a class the model knows, so it is left out.
    assert list(mistakes["path"]) == ["neutrophil/6.jpg", "eosinophil/2.jpg", "eosinophil/3.jpg"]
    unsure = explorer.least_confident_correct(table, 2)
    assert list(unsure["path"]) == ["lymphocyte/8.jpg", "eosinophil/1.jpg"]


def test_display_names_fall_back_to_the_label(owning_classifier):
    assert explorer.display_name(owning_classifier, "eosinophil") == "Eosinophil"
    assert explorer.display_name(owning_classifier, "immature_cell") == "Immature Cell"


def test_the_domain_filter_keeps_flagged_or_familiar_images():
    labels = ["eosinophil", "neutrophil", "lymphocyte"]
    predictions = fake_predictions(labels, labels, [0.9, 0.8, 0.7])
    table = explorer.prediction_table(predictions, np.array([True, False, True]))
    assert list(explorer.apply_filters(table, Filters(domain="out"))["label"]) == \
        ["eosinophil", "lymphocyte"]
    assert list(explorer.apply_filters(table, Filters(domain="in"))["label"]) == ["neutrophil"]
    assert len(explorer.apply_filters(table, Filters())) == 3
    unguarded = explorer.prediction_table(predictions)  # a model without a guard
    assert unguarded["out_of_domain"].isna().all()
    with pytest.raises(ValueError):
        Filters(domain="elsewhere")


def test_domain_scores_from_the_cache_match_the_classifier_real_data(owning_classifier,
                                                                     small_data, tmp_path):
    from hematovision_core import ood
    from hematovision_core.predict import Classifier
    from hematovision_core.split_predictions import compute

    source = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    predictions = compute(tmp_path, owning_classifier, source)
    features = np.asarray(predictions.features(), np.float32)
    labels = [CLASSES.index(label) for label in predictions.labels]
    whitening, means, _ = ood.fit_gaussians(features, labels, len(CLASSES))
    guard = ood.DomainGuard("mahalanobis", 0.0, whitening, means)
    guarded = Classifier(owning_classifier.runtime, owning_classifier.metadata,
                         owning_classifier.folder)
    guarded.guard = guard
    direct = [p.ood_score for p in guarded.classify([source.root / p for p in source.paths])]
    # The cache keeps features as float16: scores agree to that precision.
    np.testing.assert_allclose(explorer.domain_scores(predictions, guard), direct, rtol=0.02,
                               atol=1e-2)
