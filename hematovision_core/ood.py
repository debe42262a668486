"""Out-of-domain guard: does an image look like the ones this model learned from?

    python -m hematovision_core.ood --model models/pbc-8class [--outside blood-cells/TRAIN]

A classifier answers every image with one of its classes, and on another lab's smears it is
confidently wrong (pbc-8class calls whole smear fields "platelet" at 0.97). Its softmax cannot
say so: the probabilities only compare its classes. The guard looks at where an image lands in
the model's own feature space (the 1280 pooled features of the last block) instead:

- "mahalanobis": one Gaussian per class with a shared, shrunk covariance, fitted on the training
  images' features; the score is the squared Mahalanobis distance to the nearest class mean
  (Lee et al., 2018). 1280 dimensions and as few as 194 training images (blood-cells) make the
  sample covariance singular, so it is shrunk towards a multiple of the identity with the
  Ledoit-Wolf weight, which needs no tuning.
- "energy": minus the log-sum-exp of the logits (Liu et al., 2020); cheap, but it only sees what
  the head sees.

Both are "higher = less like the training images". `fit_model_guard` (ood_fit.py) keeps the one
that separates the validation images from an outside folder better (AUROC) and sets the
threshold on validation images only, so that about 5% of new in-domain images are flagged. The
guard lives in the model folder as `ood.npz`, checksummed in model.json under "ood".
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hematovision_core.model_io import GUARD_FILE as OOD_FILE  # the file name lives there
from hematovision_core.model_io import (METADATA_FILE, ModelFolderError, file_sha256,
                                        read_metadata, write_json)

SCORES = ("mahalanobis", "energy")
FALSE_FLAG_RATE = 0.05  # share of in-domain (validation) images the threshold lets be flagged
NOTICE = ("Unlike the images this model learned from: another lab, stain or magnification? "
          "Its answer may be wrong however confident it looks.")


@dataclass(frozen=True, eq=False)
class DomainGuard:
    """Class means and a whitening matrix in the model's pooled-feature space, a score, a cut."""

    score_name: str  # one of SCORES
    threshold: float  # scores above it are flagged
    whitening: np.ndarray  # (D, D) float32: W with W W^T = covariance^-1
    whitened_means: np.ndarray  # (C, D) float32: class means times W

    def scores(self, logits: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        """(N, C) logits and (N, D) pooled features -> (N,) scores, higher = less familiar."""
        if self.score_name == "energy":
            return energy_scores(logits)
        return mahalanobis_scores(pooled, self.whitening, self.whitened_means)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """(N,) scores -> (N,) bool: True where the image is unlike the training images."""
        return np.asarray(scores) > self.threshold


# ----------------------------------------------------------------------------- scores


def energy_scores(logits: np.ndarray) -> np.ndarray:
    """(N, C) logits -> (N,) -logsumexp: low when some class's evidence is strong."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1)
    return -(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))


def mahalanobis_scores(pooled: np.ndarray, whitening: np.ndarray,
                       whitened_means: np.ndarray) -> np.ndarray:
    """(N, D) features -> (N,) squared Mahalanobis distance to the nearest class mean."""
    z = np.asarray(pooled, dtype=np.float32) @ whitening  # (N, D)
    # |z - m|^2 = |z|^2 - 2 z.m + |m|^2, for every class at once: (N, C)
    squared = ((z ** 2).sum(axis=1)[:, None] - 2.0 * z @ whitened_means.T
               + (whitened_means ** 2).sum(axis=1)[None, :])
    return np.maximum(squared.min(axis=1), 0.0).astype(np.float64)


# ----------------------------------------------------------------------------- fitting


def ledoit_wolf(centred: np.ndarray) -> tuple[np.ndarray, float]:
    """The Ledoit-Wolf shrunk covariance of rows already centred: (D, D) and the weight given
    to the scaled identity (0: the sample covariance, 1: all identity)."""
    x = np.asarray(centred, dtype=np.float64)
    n, d = x.shape
    sample = x.T @ x / n  # (D, D)
    scale = np.trace(sample) / d or 1.0  # one image a class leaves nothing: Euclidean, then
    target_gap = ((sample - scale * np.eye(d)) ** 2).sum() / d
    # How far each image's outer product strays from the mean one: the estimate's own noise.
    squared_norms = (x ** 2).sum(axis=1)
    noise = ((squared_norms ** 2).sum() / n - (sample ** 2).sum()) / (n * d)
    weight = float(min(max(noise, 0.0), target_gap) / target_gap) if target_gap > 0 else 1.0
    return weight * scale * np.eye(d) + (1.0 - weight) * sample, weight


def fit_gaussians(features: np.ndarray, labels: np.ndarray, num_classes: int):
    """Class-conditional Gaussians with one shared covariance.

    Returns:
        (whitening (D, D) float32, whitened means (C, D) float32, shrinkage weight). A class
        without training images gets no mean (it cannot be "nearest").
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    present = [c for c in range(num_classes) if np.any(labels == c)]
    if not present:
        raise ValueError("The guard needs training images of at least one class.")
    means = np.stack([features[labels == c].mean(axis=0) for c in present])  # (C', D)
    centred = features - means[np.searchsorted(present, labels)]
    covariance, weight = ledoit_wolf(centred)
    values, vectors = np.linalg.eigh(covariance)
    whitening = vectors / np.sqrt(np.maximum(values, 1e-12))  # (D, D): covariance^-1 = W W^T
    return whitening.astype(np.float32), (means @ whitening).astype(np.float32), weight


def threshold_for(scores: np.ndarray, false_flag_rate: float = FALSE_FLAG_RATE) -> float:
    """The score above which `false_flag_rate` of these (in-domain) images lie."""
    if len(scores) == 0:
        raise ValueError("Cannot set a threshold without validation images.")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - false_flag_rate))


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside image scores higher than an inside one), ties counted half: 1 is perfect."""
    inside = np.sort(np.asarray(inside, dtype=np.float64))
    outside = np.asarray(outside, dtype=np.float64)
    if not len(inside) or not len(outside):
        return float("nan")
    below = np.searchsorted(inside, outside, side="left")
    equal = np.searchsorted(inside, outside, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(inside) * len(outside)))


# ----------------------------------------------------------------------------- files


def save_guard(folder: str | Path, guard: DomainGuard, record: dict) -> dict:
    """Write ood.npz and its checksum, score, threshold and `record` (how it was fit) into
    model.json under "ood". model.keras and model.onnx are not touched."""
    folder = Path(folder)
    metadata = read_metadata(folder)  # refuses a folder that is not a complete model
    np.savez(folder / OOD_FILE, whitening=guard.whitening, whitened_means=guard.whitened_means)
    metadata["ood"] = {"file": OOD_FILE, "sha256": file_sha256(folder / OOD_FILE),
                       "score": guard.score_name, "threshold": guard.threshold, **record}
    write_json(folder / METADATA_FILE, metadata)
    return metadata


def load_guard(folder: str | Path | None, metadata: dict) -> DomainGuard | None:
    """The model folder's guard, or None for a model trained before guards existed."""
    entry = metadata.get("ood")
    if not entry or folder is None:
        return None
    path = Path(folder) / entry.get("file", OOD_FILE)
    if not path.is_file() or file_sha256(path) != entry.get("sha256"):
        raise ModelFolderError(f"{path} is missing or does not match the checksum in model.json; "
                               f"fit it again with `python -m hematovision_core.ood --model {folder}`.")
    if entry.get("score") not in SCORES:
        raise ModelFolderError(f"{folder}: unknown out-of-domain score {entry.get('score')!r}.")
    with np.load(path, allow_pickle=False) as arrays:
        return DomainGuard(entry["score"], float(entry["threshold"]), arrays["whitening"],
                           arrays["whitened_means"])


def main(argv=None) -> int:
    from hematovision_core.ood_fit import main as fit_main

    return fit_main(argv)


if __name__ == "__main__":
    sys.exit(main())
