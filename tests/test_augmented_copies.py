"""Augmented copies of a model's test images, made the way the public blood-cells TEST was."""

import numpy as np
from PIL import Image

from hematovision_core import augmented_copies


def test_writes_copies_of_the_manifest_split_real_data(owning_model_folder, small_data, tmp_path):
    out = tmp_path / "copies"
    assert augmented_copies.main(["--model", str(owning_model_folder), "--data",
                                  str(small_data / "pbc"), "--split", "test", "--out", str(out),
                                  "--copies", "2"]) == 0
    written = sorted(out.glob("*/*.jpg"))
    assert len(written) == 3 * 2 * 2  # 3 classes x 2 test images x 2 copies
    assert {p.parent.name for p in written} == {"eosinophil", "lymphocyte", "neutrophil"}
    source = next((small_data / "pbc" / "eosinophil").glob(written[0].stem.rsplit("_", 1)[0] + ".*"))
    original, copy = Image.open(source), Image.open(written[0])
    assert copy.size == original.size
    assert not np.array_equal(np.asarray(copy), np.asarray(original.convert("RGB")))


def test_an_existing_folder_is_never_written_into(owning_model_folder, small_data, tmp_path,
                                                  capsys):
    out = tmp_path / "copies"
    out.mkdir()
    assert augmented_copies.main(["--model", str(owning_model_folder), "--data",
                                  str(small_data / "pbc"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and not any(out.iterdir())
