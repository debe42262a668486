"""A 2-D map of a split: principal component analysis of the model's pooled features, in NumPy.

Points that the model sees alike land close together, so look-alike classes overlap on the map
and mislabelled or unusual cells stand apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class FeatureMap:
    coords: np.ndarray  # (N, 2) float32: each image's position on the first two components
    explained_variance: tuple[float, float]  # share of the total variance on each axis
    components: np.ndarray  # (2, D) float32: unit directions in feature space
    mean: np.ndarray  # (D,) float32: feature mean subtracted before projecting


def pca_2d(features: np.ndarray) -> FeatureMap:
    """Project (N, D) features onto their first two principal components.

    Uses the eigenvectors of the D x D covariance when N >= D (the usual case, D = 1280), else the
    SVD of the data; signs are fixed so each component's largest loading is positive, which makes
    the map reproducible.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    count, width = features.shape
    mean = features.mean(axis=0) if count else np.zeros(width)
    if count < 2:
        return FeatureMap(np.zeros((count, 2), np.float32), (0.0, 0.0),
                          np.zeros((2, width), np.float32), mean.astype(np.float32))
    centred = features - mean
    if count < width:
        # Few points: the SVD of the (N, D) data is cheaper than the D x D covariance.
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        eigenvalues = np.sort(singular ** 2 / (count - 1))  # ascending, as eigh gives them
        top = directions[:2]
    else:
        covariance = centred.T @ centred / (count - 1)  # (D, D)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending order
        top = eigenvectors[:, ::-1][:, :2].T  # (2, D), largest variance first
    if top.shape[0] < 2:  # a single component exists: the second axis is empty
        top = np.vstack([top, np.zeros((2 - top.shape[0], width))])
    signs = np.sign(top[np.arange(2), np.abs(top).argmax(axis=1)])
    top = top * np.where(signs == 0, 1.0, signs)[:, None]
    total = float(eigenvalues.sum())
    variances = np.clip(eigenvalues[::-1][:2], 0.0, None)
    shares = tuple(float(v / total) if total > 0 else 0.0 for v in variances)
    shares = (shares + (0.0, 0.0))[:2]
    coords = (centred @ top.T).astype(np.float32)
    return FeatureMap(coords, shares, top.astype(np.float32), mean.astype(np.float32))
