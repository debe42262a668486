"""The committed models load, match their metadata, and classify real validation images.

A sample from each model's own validation split (images it did not train on), read from
../shared/data through the split manifest shipped beside the model.
"""

from pathlib import Path

import numpy as np
import pytest

from hematovision_core import data
from hematovision_core.model_io import read_metadata
from hematovision_core.predict import Classifier

MODELS = Path(__file__).resolve().parent.parent / "models"
# model folder, expected classes, images per class to sample, minimum accuracy on the sample
SHIPPED = [
    ("pbc-8class", ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
                    "neutrophil", "platelet"], 6, 0.9),
    ("blood-cells-4class", ["eosinophil", "lymphocyte", "monocyte", "neutrophil"], 4, 0.6),
]


@pytest.mark.parametrize("name,classes,per_class,minimum", SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_model_classifies_validation_images_real_data(name, classes, per_class, minimum,
                                                             shared_data):
    folder = MODELS / name
    metadata = read_metadata(folder)  # checksums match
    assert metadata["classes"] == classes
    classifier = Classifier.load(folder)
    records = data.read_manifest(folder / metadata["data"]["split_manifest"],
                                 shared_data / metadata["data"]["dataset"])
    assert data.manifest_checksum(folder / "split.csv") == metadata["data"]["split_manifest_sha256"]
    rng = np.random.default_rng(0)
    sample = []
    for label in classes:
        val = [r for r in records if r.split == "val" and r.label == label]
        sample += [val[i] for i in rng.permutation(len(val))[:per_class]]
    predictions = classifier.classify([r.path for r in sample])
    accuracy = np.mean([p.label == r.label for p, r in zip(predictions, sample)])
    assert accuracy >= minimum, f"{name}: {accuracy:.2f} on {len(sample)} validation images"
    for p in predictions:
        assert 0.0 < p.confidence <= 1.0 and abs(p.probabilities.sum() - 1) < 1e-4
