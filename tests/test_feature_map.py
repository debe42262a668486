"""The 2-D map: NumPy PCA compared with a reference SVD, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from hematovision_core.feature_map import pca_2d


def test_pca_matches_a_reference_svd_up_to_sign():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 40)) @ rng.normal(size=(40, 40))  # correlated columns
    result = pca_2d(features)
    centred = features - features.mean(axis=0)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ directions[:2].T
    signs = np.sign((result.coords * reference).sum(axis=0))
    np.testing.assert_allclose(result.coords, reference * signs, rtol=1e-4, atol=1e-3)
    shares = singular[:2] ** 2 / (singular ** 2).sum()
    np.testing.assert_allclose(result.explained_variance, shares, rtol=1e-5)
    assert result.explained_variance[0] >= result.explained_variance[1]
    assert result.coords.shape == (200, 2) and result.coords.dtype == np.float32


def test_pca_is_reproducible_and_handles_tiny_inputs():
    features = np.random.default_rng(1).normal(size=(30, 8)).astype(np.float16)
    np.testing.assert_array_equal(pca_2d(features).coords, pca_2d(features).coords)
    assert pca_2d(np.zeros((0, 8))).coords.shape == (0, 2)
    assert pca_2d(np.ones((1, 8))).coords.shape == (1, 2)
    assert pca_2d(np.ones((5, 8))).explained_variance == (0.0, 0.0)  # no variance at all
    with pytest.raises(ValueError):
        pca_2d(np.zeros(8))
