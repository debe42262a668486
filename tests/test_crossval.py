"""Cross-validation: stratified folds over the development images, the test split untouched."""

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

from hematovision_core import crossval, data as datasets, train
from hematovision_core.data import ImageRecord
from hematovision_core.model_io import read_metadata


def _records(counts: dict[str, int], duplicates: int = 0):
    records = [ImageRecord(f"/x/{label}/{i}.jpg", label, "train", f"{label}{i}")
               for label, n in counts.items() for i in range(n)]
    # Byte-identical copies of the first images (same digest, another path).
    return records + [ImageRecord(f"/x/copy/{i}.jpg", r.label, "train", r.digest)
                      for i, r in enumerate(records[:duplicates])]


def test_folds_are_stratified_and_keep_duplicates_together():
    records = _records({"eosinophil": 20, "monocyte": 6, "neutrophil": 41}, duplicates=3)
    numbers = crossval.assign_folds(records, 5, seed=42)
    assert set(numbers) == set(range(5))
    for label, total in Counter(r.label for r in records).items():
        per_fold = Counter(n for r, n in zip(records, numbers) if r.label == label)
        assert max(per_fold.values()) - min(per_fold.values()) <= 2, (label, per_fold)
    fold_of = {}
    for record, number in zip(records, numbers):
        assert fold_of.setdefault(record.digest, number) == number
    assert numbers == crossval.assign_folds(records, 5, seed=42)  # deterministic


def test_each_fold_validates_on_its_own_images_only():
    records = [ImageRecord(f"/x/{i}.jpg", "a", "test" if i < 2 else "train", str(i))
               for i in range(8)]
    numbers = [-1, -1, 0, 1, 0, 1, 0, 1]
    fold = crossval.fold_records(records, numbers, 1)
    assert [r.split for r in fold] == ["test", "test", "train", "val", "train", "val", "train", "val"]


def test_crossval_scores_every_development_image_once_real_data(small_data, tmp_path,
                                                                tiny_model_folder):
    out = tmp_path / "cv"
    recipe_model = tmp_path / "recipe-model"  # the model trained with the recipe under test
    shutil.copytree(tiny_model_folder, recipe_model)
    assert crossval.main([
        "--data", str(small_data / "pbc"), "--out", str(out), "--folds", "2",
        "--record-into", str(recipe_model),
        "--weights", "none", "--input-size", "96", "--views", "1", "--head-epochs", "1",
        "--epochs", "0", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache"),
    ]) == 0
    report = json.loads((out / "crossval.json").read_text())
    records = datasets.split_records(list(datasets.discover(small_data / "pbc").records),
                                     (0.7, 0.1, 0.2), datasets.DEFAULT_SEED)
    development = [r for r in records if r.split != "test"]
    assert report["n"] == len(development) == sum(map(sum, report["confusion_matrix"]["matrix"]))
    assert len(report["fold_accuracy"]) == 2 and 0 <= report["accuracy"] <= 1
    validated = []
    for fold in range(2):
        manifest = datasets.read_manifest(out / f"fold-{fold}" / "split.csv", small_data / "pbc")
        validated += [r.path for r in manifest if r.split == "val"]
        assert sorted(r.path for r in manifest if r.split == "test") == \
            sorted(r.path for r in records if r.split == "test")
    assert sorted(validated) == sorted(r.path for r in development)
    # Each development image's out-of-fold answer, agreeing with the summed confusion matrix.
    predictions = report["predictions"]
    assert sorted(p["path"] for p in predictions) == sorted(
        Path(r.path).relative_to(small_data / "pbc").as_posix() for r in development)
    matrix = report["confusion_matrix"]["matrix"]
    assert sum(p["label"] == p["predicted"] for p in predictions) == sum(
        matrix[i][i] for i in range(len(matrix)))
    assert all(0 < p["confidence"] <= 1 and p["fold"] in (0, 1) for p in predictions)
    # ... with its uncalibrated logits, for a temperature fit on all of them (recalibrate).
    assert all(len(p["logits"]) == len(matrix) for p in predictions)
    # The model trained with this recipe records the figures, without the per-image list.
    recorded = read_metadata(recipe_model)["metrics"]["cross_validation"]
    assert recorded["n"] == report["n"] and recorded["accuracy"] == report["accuracy"]
    assert "predictions" not in recorded


def test_crossval_varies_a_train_config_without_a_command_line_real_data(small_data, tmp_path,
                                                                        monkeypatch):
    def no_command_line(*args, **kwargs):
        raise AssertionError("crossval parsed a command line")

    trained = []  # each fold's config, in order; nothing is really trained
    monkeypatch.setattr(train, "build_parser", no_command_line)
    monkeypatch.setattr(train, "train", trained.append)
    monkeypatch.setattr(crossval, "out_of_fold_predictions", lambda folder, records, root, fold: [
        {"path": Path(r.path).relative_to(root).as_posix(), "fold": fold, "label": r.label,
         "predicted": r.label, "confidence": 1.0} for r in records if r.split == "val"])
    base = train.TrainConfig(data=small_data / "pbc", out=tmp_path / "cv", weights="none",
                             input_size=96, head_epochs=1, epochs=0, **crossval.FOLD_DEFAULTS)
    figures = crossval.cross_validate(base, folds=2)
    for fold, config in enumerate(trained):
        folder = tmp_path / "cv" / f"fold-{fold}"
        # Only where the fold trains and which split it uses differ from the recipe.
        assert config == dataclasses.replace(base, out=folder, manifest=folder / "fold-split.csv")
        assert config == crossval.fold_config(base, fold) and config.manifest.is_file()
    assert len(trained) == 2 and (trained[0].select, trained[0].skip_ood) == ("last", True)
    assert figures["accuracy"] == 1.0 and figures["n"] == len(figures["predictions"]) > 0
