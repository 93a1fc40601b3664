"""Similarity measures between feature maps of clean and noisy images (paper Sec. 3.1, Fig. 1).

Two measures, both in float64 whatever the input dtype:

* **Cosine similarity** of the whole feature map flattened to one vector per image (Fig. 1):
  ``<vec(F_c), vec(F_n)> / (||vec(F_c)|| ||vec(F_n)||)``, in [-1, 1] (in [0, 1] after a ReLU).
* **Linear CKA** (Kornblith et al., "Similarity of Neural Network Representations Revisited",
  ICML 2019; the supplement's Fig. 9): a ``(C, H, W)`` map is read as ``H·W`` samples (spatial
  positions) × ``C`` features, columns are centred, and
  ``CKA(X, Y) = ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)``, in [0, 1]. It is invariant to
  orthogonal transforms and isotropic scaling of either side's channels.

Both return ``nan`` when a side is all zero (or constant, for CKA), where they are undefined.
"""

from __future__ import annotations

import math

import torch


def cosine_similarity(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """Cosine similarity of two feature maps flattened to vectors (paper Fig. 1).

    Args:
        clean: Features of the clean image, any shape (e.g. ``(C, H, W)``), any float dtype.
        noisy: Features of the noisy image, the same number of elements.

    Returns:
        The similarity in [-1, 1] as a Python float; ``nan`` if either vector is zero.

    Raises:
        ValueError: the two inputs have different numbers of elements.
    """
    if clean.numel() != noisy.numel():
        raise ValueError(
            f"cosine similarity needs equal sizes, got {tuple(clean.shape)} and "
            f"{tuple(noisy.shape)}"
        )
    a = clean.detach().reshape(-1).to(torch.float64)
    b = noisy.detach().reshape(-1).to(torch.float64)
    denominator = torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)
    if denominator == 0:
        return math.nan
    return float(torch.dot(a, b) / denominator)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same samples.

    Uses whichever of the feature-space form (``p × p`` matrices) and the Gram form (``n × n``)
    is smaller, so memory stays ``O(min(n, p)²)`` beyond the inputs themselves.

    Args:
        x: ``(n, p1)`` matrix: n samples (rows) × p1 features.
        y: ``(n, p2)`` matrix over the same n samples.

    Returns:
        CKA in [0, 1] as a Python float (1 for identical inputs); ``nan`` if a side has no
        variance.

    Raises:
        ValueError: the inputs are not 2-D or have different numbers of rows.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear CKA needs (n, p) matrices with equal n, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    samples, features = x.shape[0], max(x.shape[1], y.shape[1])
    if features <= samples:
        cross = torch.linalg.matrix_norm(y.T @ x) ** 2
        norm_x = torch.linalg.matrix_norm(x.T @ x)
        norm_y = torch.linalg.matrix_norm(y.T @ y)
    else:
        gram_x = x @ x.T
        gram_y = y @ y.T
        cross = (gram_x * gram_y).sum()
        norm_x = torch.linalg.matrix_norm(gram_x)
        norm_y = torch.linalg.matrix_norm(gram_y)
    denominator = norm_x * norm_y
    if denominator == 0:
        return math.nan
    return float(cross / denominator)


def feature_matrix(feature: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Read a ``(C, H, W)`` feature map as ``(H·W, C)`` samples × channels for CKA.

    Args:
        feature: ``(C, H, W)`` feature map (a leading batch dimension of 1 is accepted).
        positions: Optional 1-D indices into the ``H·W`` flattened positions to keep.

    Returns:
        ``(n, C)`` tensor with the input's dtype and device.
    """
    if feature.dim() == 4 and feature.shape[0] == 1:
        feature = feature[0]
    if feature.dim() != 3:
        raise ValueError(f"expected a (C, H, W) feature map, got shape {tuple(feature.shape)}")
    matrix = feature.reshape(feature.shape[0], -1).T
    if positions is not None:
        matrix = matrix[positions.to(matrix.device)]
    return matrix


def feature_cka(
    clean: torch.Tensor,
    noisy: torch.Tensor,
    *,
    max_positions: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """Linear CKA between two ``(C, H, W)`` feature maps of the same image (samples = positions).

    Args:
        clean: ``(C, H, W)`` features of the clean image.
        noisy: ``(C, H, W)`` features of the noisy image.
        max_positions: Keep at most this many spatial positions, the same random ones on both
            sides (memory control for very large maps); ``None`` keeps all.
        generator: CPU generator seeding the draw of positions.
    """
    if clean.shape != noisy.shape:
        raise ValueError(
            f"feature maps differ in shape: {tuple(clean.shape)} and {tuple(noisy.shape)}"
        )
    count = clean.shape[-1] * clean.shape[-2]
    positions = None
    if max_positions is not None and count > max_positions:
        positions = torch.randperm(count, generator=generator)[:max_positions]
    return linear_cka(feature_matrix(clean, positions), feature_matrix(noisy, positions))


__all__ = ["cosine_similarity", "feature_cka", "feature_matrix", "linear_cka"]
