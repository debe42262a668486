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


# model folder, its own test images a class, the other lab's folder and images a class, the most
# own images flagged and the fewest other-lab images flagged (measured rates in the README)
GUARDED = [
    ("pbc-8class", 2, "blood-cells/TRAIN", 4, 2, 14),
    ("blood-cells-4class", 2, "pbc", 2, 2, 13),
]


@pytest.mark.parametrize("name,own,other,per_class,most_own,fewest_other", GUARDED,
                         ids=[g[0] for g in GUARDED])
def test_shipped_model_guard_tells_its_test_images_from_another_labs_real_data(
        name, own, other, per_class, most_own, fewest_other, shared_data):
    folder = MODELS / name
    metadata = read_metadata(folder)  # ood.npz matches its checksum
    classifier = Classifier.load(folder)
    assert classifier.guard is not None and metadata["ood"]["threshold"] > 0
    records = data.read_manifest(folder / "split.csv", shared_data / metadata["data"]["dataset"])
    mine = [r.path for label in classifier.classes
            for r in [r for r in records if r.split == "test" and r.label == label][:own]]
    theirs = [path for folder_ in sorted((shared_data / other).iterdir()) if folder_.is_dir()
              for path in sorted(folder_.iterdir())[:per_class]]
    flagged_mine = sum(p.out_of_domain for p in classifier.classify(mine))
    flagged_theirs = sum(p.out_of_domain for p in classifier.classify(theirs))
    assert flagged_mine <= most_own, f"{flagged_mine} of {len(mine)} own test images flagged"
    assert flagged_theirs >= fewest_other, f"{flagged_theirs} of {len(theirs)} others flagged"
