"""A generator's quality figure, computed offline: the sliced Wasserstein distance (SWD) of
Laplacian-pyramid patches, after Karras et al. (ICLR 2018, ProGAN), which needs no
downloaded network (FID needs Inception weights).

Definition used here: each image set (uint8 RGB 32x32) is turned into a Laplacian pyramid
with a 5-tap binomial filter (levels 32 and 16 px); from every image and level, 64 random
7x7 RGB patches (147 numbers) are drawn; each set's patches are normalised per colour
channel by their own mean and standard deviation; the SWD of a level is the mean, over 512
random unit directions (4 x 128), of the mean absolute difference between the two sets'
sorted projections. The figure is the mean over levels, times 1,000 (lower is better; two
disjoint sets of real images give the floor, reported beside it).
"""

from __future__ import annotations

import numpy as np

PATCH = 7
PATCHES_PER_IMAGE = 64
DIRECTIONS, REPEATS = 128, 4
LEVELS = 2  # 32 and 16 px
_KERNEL = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16


def _blur(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import convolve1d

    return convolve1d(convolve1d(x, _KERNEL, axis=1, mode="reflect"), _KERNEL, axis=2,
                      mode="reflect")  # fmt: skip


def laplacian_pyramid(images: np.ndarray) -> list[np.ndarray]:
    """(N, H, W, 3) float -> ``LEVELS`` band-pass images, finest first, last one low-pass."""
    levels, current = [], images.astype(np.float32)
    for _ in range(LEVELS - 1):
        down = _blur(current)[:, ::2, ::2]
        up = _blur(np.repeat(np.repeat(down, 2, axis=1), 2, axis=2))
        levels.append(current - up)
        current = down
    levels.append(current)
    return levels


def _patches(level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, h, w, c = level.shape
    ys = rng.integers(0, h - PATCH + 1, (n, PATCHES_PER_IMAGE))
    xs = rng.integers(0, w - PATCH + 1, (n, PATCHES_PER_IMAGE))
    offsets = np.arange(PATCH)
    rows = ys[..., None, None] + offsets[:, None]
    cols = xs[..., None, None] + offsets[None, :]
    idx = np.arange(n)[:, None, None, None]
    out = level[idx, rows, cols]  # (n, patches, 7, 7, c)
    out = out.reshape(-1, PATCH * PATCH, c)
    out = (out - out.mean(axis=(0, 1))) / (out.std(axis=(0, 1)) + 1e-8)
    return out.reshape(len(out), -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """SWD between two sets of uint8 images (N, 32, 32, 3), times 1,000 (see module doc)."""
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    distances = []
    for la, lb in zip(laplacian_pyramid(a[:n]), laplacian_pyramid(b[:n]), strict=True):
        pa, pb = _patches(la, rng), _patches(lb, rng)
        level = []
        for _ in range(REPEATS):
            dirs = rng.standard_normal((pa.shape[1], DIRECTIONS)).astype(np.float32)
            dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
            projected_a = np.sort(pa @ dirs, axis=0)
            projected_b = np.sort(pb @ dirs, axis=0)
            level.append(float(np.abs(projected_a - projected_b).mean()))
        distances.append(float(np.mean(level)))
    return round(1000 * float(np.mean(distances)), 2)
