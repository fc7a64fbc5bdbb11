"""ROAD: the noisy linear imputation solves its defining equation, and the curves rank an
oracle map above a random one on a model whose evidence is known."""

from __future__ import annotations

import numpy as np
import pytest

from cifake_hub.explain.road import (
    NEIGHBOURS,
    NOISE_STD,
    linear_imputation,
    noisy_imputation,
    removal_masks,
    road,
    road_summary,
)


def neighbour_mean(image: np.ndarray, i: int, j: int) -> np.ndarray:
    total, weight = 0.0, 0.0
    for dr, dc, w in NEIGHBOURS:
        a, b = i + dr, j + dc
        if 0 <= a < image.shape[0] and 0 <= b < image.shape[1]:
            total, weight = total + w * image[a, b], weight + w
    return total / weight


def test_removed_pixels_equal_their_neighbours_weighted_mean():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12, 10, 3)).astype(np.float64)
    removed = np.zeros((3, 12, 10), dtype=bool)
    removed[0, 3:7, 2:6] = True  # a block: removed neighbours are unknowns too
    removed[1, 0, :] = True  # a whole border row
    removed[2] = rng.random((12, 10)) < 0.7  # most of the image
    filled = linear_imputation(images, removed)
    np.testing.assert_array_equal(filled[~removed], images[~removed])
    for n, i, j in zip(*np.nonzero(removed), strict=True):
        np.testing.assert_allclose(filled[n, i, j], neighbour_mean(filled[n], i, j), atol=1e-9)
    # One removed pixel among known ones: exactly the weighted mean of the known neighbours.
    one = np.zeros((1, 12, 10), dtype=bool)
    one[0, 5, 5] = True
    expected = neighbour_mean(images[0], 5, 5)
    np.testing.assert_allclose(linear_imputation(images[:1], one)[0, 5, 5], expected)
    with pytest.raises(ValueError, match="every pixel removed"):
        linear_imputation(images[:1], np.ones((1, 12, 10), dtype=bool))


def test_noisy_imputation_adds_the_seeded_noise_to_removed_pixels_only():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    removed = rng.random((2, 16, 16)) < 0.4
    out = noisy_imputation(images, removed, np.random.default_rng(7))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[~removed], images[~removed])
    noise = np.random.default_rng(7).standard_normal(images.shape) * NOISE_STD
    expected = np.clip(np.rint(linear_imputation(images, removed) + noise), 0, 255)
    np.testing.assert_array_equal(out[removed], expected[removed])


def test_removal_masks_take_the_most_or_least_relevant_share():
    maps = np.arange(32, dtype=float).reshape(1, 4, 8)
    morf = removal_masks(maps, 0.25, most_relevant=True)
    lerf = removal_masks(maps, 0.25, most_relevant=False)
    assert morf.sum() == lerf.sum() == 8
    assert morf.reshape(-1)[-8:].all() and lerf.reshape(-1)[:8].all()


def test_an_oracle_map_beats_a_random_one_on_a_model_with_known_evidence():
    # The "model" says REAL exactly when the top-left 8x8 block is bright: its evidence is there.
    rng = np.random.default_rng(2)
    n = 40
    images = rng.integers(0, 60, (n, 32, 32, 3), dtype=np.uint8)
    images[:, :8, :8] = 230

    def predict(x: np.ndarray) -> np.ndarray:
        block = x[:, :8, :8].astype(np.float64).mean(axis=(1, 2, 3)) / 255
        return 1 / (1 + np.exp(-12 * (block - 0.5)))

    oracle = np.zeros((n, 32, 32))
    oracle[:, :8, :8] = 1 + rng.random((n, 8, 8))  # inside the block, most relevant first
    maps = {"oracle": oracle, "random": rng.random((n, 32, 32))}
    explained = np.ones(n, dtype=np.int64)
    levels = (0.05, 0.1, 0.3)
    curves = {c.name: c for c in road(predict, images, explained, maps, levels=levels)}
    assert curves["oracle"].morf[-1] < 0.1 < 0.9 < curves["random"].morf[0]
    assert all(a < b for a, b in zip(curves["oracle"].morf, curves["random"].morf, strict=True))
    assert curves["oracle"].lerf[-1] > 0.9  # removing the background leaves the evidence
    summary = road_summary(list(curves.values()), levels)
    assert summary["best"] == "oracle" and summary["curves"]["oracle"]["score"] > 0.5
