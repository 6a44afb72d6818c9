"""Texture encoder and multiresolution hash encoding of SR-INR / VR-INR (DESIGN.md steps 1-6).

Choices DESIGN.md leaves open, made here:
  * Per-level MLPs are stored stacked: a `StackedMLP` holds (L, in, hidden) and (L, hidden, out) kernels, so
    level l's MLP is `params[...]["w1"][l]` etc. (a pytree slice, easy to swap or freeze).
  * MLP kernels use LeCun-normal initialisation per level and zero biases (Flax's Dense defaults).
  * The texture patch is flattened row-major as (row, column, channel) before MLP_T.
  * With `code_dim` < 3 the STT code has D = 3 + code_dim dimensions and 2**D corners; D = 6 is the papers'.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr import resize
from kernels import hashgrid

WEIGHT_NORMS = ("none", "softmax", "multilinear")


def level_resolutions(num_levels: int, n_min: int, n_max: int) -> tuple[int, ...]:
  """Grid resolution of each level, `N_l = floor(N_min * b**l)`, b = exp((ln N_max - ln N_min) / (L - 1)).

  Args:
    num_levels: L >= 1.
    n_min: coarsest resolution, >= 1.
    n_max: finest resolution, >= n_min.

  Returns:
    Tuple of L ints, non-decreasing, first N_min and (up to rounding) last N_max.
  """
  if num_levels < 1 or n_min < 1 or n_max < n_min:
    raise ValueError(f"need num_levels >= 1 and 1 <= n_min <= n_max, got {num_levels=} {n_min=} {n_max=}")
  if num_levels == 1:
    return (int(n_min),)
  b = math.exp((math.log(n_max) - math.log(n_min)) / (num_levels - 1))
  # The small epsilon keeps floor(N_min * b**(L-1)) == N_max despite rounding in b.
  return tuple(int(math.floor(n_min * b**level + 1e-6)) for level in range(num_levels))


def multilinear_weights(frac: jax.Array) -> jax.Array:
  """Multilinear (instant-ngp) corner weights: prod_d (frac[d] if bit d of c else 1 - frac[d]).

  Args:
    frac: (..., D) fractional lattice positions in [0, 1).

  Returns:
    (..., 2**D) weights that sum to 1.
  """
  bits = jnp.asarray(hashgrid.corner_bits(frac.shape[-1]), frac.dtype)  # (C, D)
  f = frac[..., None, :]
  return jnp.prod(bits * f + (1.0 - bits) * (1.0 - f), axis=-1)


def uniform_pm(limit: float):
  """Initializer drawing uniformly from [-limit, limit] (the papers' table initialisation with 1e-4)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


class StackedMLP(nn.Module):
  """L independent one-hidden-layer ReLU MLPs, one per level, with stacked parameters.

  Attributes:
    num_levels: number of MLPs (L).
    in_features: input width.
    hidden: hidden width.
    out_features: output width.
  """

  num_levels: int
  in_features: int
  hidden: int
  out_features: int

  def setup(self):
    init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
    self.w1 = self.param("w1", init, (self.num_levels, self.in_features, self.hidden))
    self.b1 = self.param("b1", nn.initializers.zeros, (self.num_levels, self.hidden))
    self.w2 = self.param("w2", init, (self.num_levels, self.hidden, self.out_features))
    self.b2 = self.param("b2", nn.initializers.zeros, (self.num_levels, self.out_features))

  def __call__(self, x: jax.Array) -> jax.Array:
    """Apply MLP l to x[..., l, :].

    Args:
      x: (..., L, in_features).

    Returns:
      (..., L, out_features).
    """
    if x.shape[-2:] != (self.num_levels, self.in_features):
      raise ValueError(f"expected (..., {self.num_levels}, {self.in_features}), got shape {x.shape}")
    h = jax.nn.relu(jnp.einsum("...li,lih->...lh", x, self.w1) + self.b1)
    return jnp.einsum("...lh,lho->...lo", h, self.w2) + self.b2

  def level(self, x: jax.Array, level: int) -> jax.Array:
    """Apply MLP `level` alone: x (..., in_features) -> (..., out_features)."""
    h = jax.nn.relu(x @ self.w1[level] + self.b1[level])
    return h @ self.w2[level] + self.b2[level]


class TextureEncoder(nn.Module):
  """Texture codes xi_l = tanh(MLP_T_l(flatten(k x k bicubic patch of the LR at spacing 2 / N_l))).

  Attributes:
    resolutions: grid resolution N_l of each level.
    patch_size: k.
    code_dim: size of each texture code (3 in the papers).
    hidden: MLP hidden width.
  """

  resolutions: Sequence[int]
  patch_size: int = 5
  code_dim: int = 3
  hidden: int = 64

  @nn.compact
  def __call__(self, lr: jax.Array, xy: jax.Array, lr_size=None) -> jax.Array:
    """Texture codes for query points of each frame.

    Args:
      lr: (B, h, w, C) LR frames (possibly padded at bottom/right, see lr_size).
      xy: (B, Q, 2) query (x, y) in [-1, 1].
      lr_size: optional (B, 2) int valid (h, w) of each padded frame.

    Returns:
      (B, Q, L, code_dim) codes in [-1, 1].
    """
    spacings = 2.0 / np.asarray(self.resolutions, np.float32)
    k = self.patch_size
    if lr_size is None:
      patches = jax.vmap(lambda im, p: resize.sample_patches(im, p, spacings, k))(lr, xy)
    else:
      patches = jax.vmap(lambda im, p, s: resize.sample_patches(im, p, spacings, k, size=(s[0], s[1])))(
          lr, xy, lr_size)
    patches = jax.lax.stop_gradient(patches)
    flat = patches.reshape(*patches.shape[:3], -1)
    return jnp.tanh(StackedMLP(len(self.resolutions), flat.shape[-1], self.hidden, self.code_dim,
                                 name="mlp")(flat))


class HashEncoding(nn.Module):
  """Multiresolution hash tables read through learned (or multilinear) corner weights.

  Attributes:
    resolutions: grid resolution N_l of each level.
    log2_table_size: log2 T.
    features: F, features per table row.
    weight_norm: "none" (raw MLP_H outputs), "softmax", or "multilinear" (no MLP).
    hidden: MLP_H hidden width.
    impl: `kernels.hashgrid.hashgrid_gather` implementation.
  """

  resolutions: Sequence[int]
  log2_table_size: int = 24
  features: int = 2
  weight_norm: str = "none"
  hidden: int = 64
  impl: str = "auto"

  @nn.compact
  def __call__(self, points: jax.Array) -> jax.Array:
    """Per-level features v_l.

    Args:
      points: (N, L, D) STT codes in [-1, 1].

    Returns:
      (N, L, F) float32 features.
    """
    if self.weight_norm not in WEIGHT_NORMS:
      raise ValueError(f"weight_norm={self.weight_norm!r} must be one of {WEIGHT_NORMS}")
    num_levels, dims = len(self.resolutions), points.shape[-1]
    tables = self.param("tables", uniform_pm(1e-4), (num_levels, 1 << self.log2_table_size, self.features))
    fracs = jnp.stack([hashgrid.lattice_position(points[:, l], r)[1]
                       for l, r in enumerate(self.resolutions)], axis=1)  # (N, L, D)
    if self.weight_norm == "multilinear":
      weights = multilinear_weights(fracs)
    else:
      inputs = jnp.concatenate([points, fracs, 1.0 - fracs], axis=-1)
      weights = StackedMLP(num_levels, 3 * dims, self.hidden, 1 << dims, name="weight_mlp")(inputs)
      if self.weight_norm == "softmax":
        weights = jax.nn.softmax(weights, axis=-1)
    return hashgrid.hashgrid_gather(points, weights, tables, tuple(self.resolutions), impl=self.impl)
