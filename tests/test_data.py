"""Dataset discovery, junk skipping, deterministic duplicate-aware splits, manifests."""

import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from hematovision_core import data


def make_image(path: Path, colour=(200, 100, 150), size=(32, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_discover_real_data_class_layout(shared_data):
    dataset = data.discover(shared_data / "pbc", verify=False)
    assert dataset.classes == ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte",
                               "monocyte", "neutrophil", "platelet")
    assert not dataset.has_split_folders
    assert len(dataset.records) == 15385
    assert data.class_counts(dataset.records)["neutrophil"] == 2996


def test_discover_real_data_split_layout_lowercases_classes(shared_data):
    dataset = data.discover(shared_data / "blood-cells")
    assert dataset.has_split_folders
    assert dataset.classes == ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
    assert {r.split for r in dataset.records} == {"train"}
    assert data.class_counts(dataset.records) == {
        "eosinophil": 75, "lymphocyte": 27, "monocyte": 16, "neutrophil": 159}


def test_junk_files_are_skipped_with_one_warning(tmp_path, caplog):
    make_image(tmp_path / "EOSINOPHIL" / "a.png")
    make_image(tmp_path / "eosinophil" / "b.jpg")
    (tmp_path / "EOSINOPHIL" / ".DS_Store.jpg").write_bytes(b"\x00\x01 not an image")
    (tmp_path / "EOSINOPHIL" / "notes.txt").write_text("hello")
    (tmp_path / "EOSINOPHIL" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    make_image(tmp_path / "neutrophil" / "c.bmp")
    with caplog.at_level(logging.WARNING):
        dataset = data.discover(tmp_path)
    assert dataset.classes == ("eosinophil", "neutrophil")  # EOSINOPHIL and eosinophil merge
    assert len(dataset.records) == 3
    assert len(dataset.skipped) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Skipped 3 file(s)" in warnings[0].getMessage()


def test_unknown_top_folders_in_split_layout_are_ignored(tmp_path):
    make_image(tmp_path / "TRAIN" / "LYMPHOCYTE" / "a.png")
    make_image(tmp_path / "TEST" / "LYMPHOCYTE" / "b.png")
    make_image(tmp_path / "TEST_SIMPLE" / "LYMPHOCYTE" / "c.png")
    dataset = data.discover(tmp_path)
    assert sorted(r.split for r in dataset.records) == ["test", "train"]


def test_missing_folder_raises_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No dataset folder"):
        data.discover(tmp_path / "nowhere")


def _toy_dataset(root: Path, per_class=20):
    for label, colour in (("a", (255, 0, 0)), ("b", (0, 255, 0))):
        for i in range(per_class):
            make_image(root / label / f"{label}{i}.png", colour=(colour[0], colour[1], i * 5))
    return data.discover(root)


def test_split_is_deterministic_stratified_and_complete(tmp_path):
    dataset = _toy_dataset(tmp_path)
    first = data.split_records(dataset.records, seed=7)
    second = data.split_records(dataset.records, seed=7)
    assert [(r.path, r.split) for r in first] == [(r.path, r.split) for r in second]
    assert len(first) == 40
    for label in ("a", "b"):
        splits = [r.split for r in first if r.label == label]
        assert (splits.count("train"), splits.count("val"), splits.count("test")) == (14, 2, 4)
    other_seed = data.split_records(dataset.records, seed=8)
    assert [r.split for r in first] != [r.split for r in other_seed]


def test_exact_duplicates_stay_on_one_side(tmp_path):
    dataset = _toy_dataset(tmp_path)
    # Byte-identical copies, one of them under the other class (as in the public PBC set).
    for i in range(6):
        shutil.copy(tmp_path / "a" / f"a{i}.png", tmp_path / "a" / f"copy{i}.png")
    shutil.copy(tmp_path / "a" / "a7.png", tmp_path / "b" / "cross.png")
    dataset = data.discover(tmp_path)
    for seed in range(5):
        records = data.split_records(dataset.records, seed=seed)
        by_digest = {}
        for r in records:
            by_digest.setdefault(r.digest, set()).add(r.split)
        assert all(len(splits) == 1 for splits in by_digest.values())


def test_existing_split_folders_are_kept_and_val_carved_from_train(tmp_path):
    for i in range(20):
        make_image(tmp_path / "TRAIN" / "X" / f"{i}.png", colour=(i, 0, 0))
        make_image(tmp_path / "TRAIN" / "Y" / f"{i}.png", colour=(0, i, 0))
    for i in range(3):
        make_image(tmp_path / "TEST" / "X" / f"t{i}.png", colour=(i, 9, 9))
    records = data.split_records(data.discover(tmp_path).records)
    test = [r for r in records if r.split == "test"]
    assert sorted(r.path.name for r in test) == ["t0.png", "t1.png", "t2.png"]
    assert all("TEST" in r.path.parts for r in test)
    val = [r for r in records if r.split == "val"]
    assert val and all("TRAIN" in r.path.parts for r in val)


def test_manifest_round_trip(tmp_path):
    dataset = _toy_dataset(tmp_path / "data")
    records = data.split_records(dataset.records)
    manifest = tmp_path / "model" / data.MANIFEST_NAME
    data.write_manifest(records, dataset.root, manifest)
    back = data.read_manifest(manifest, dataset.root)
    assert back == records
    assert len(data.manifest_checksum(manifest)) == 64
