"""PyTorch `grid_sample` nearest-neighbour indexing, bit-exact, shared by the LIIF-family decoders."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def unnormalize(c: jax.Array, n: int) -> jax.Array:
  """`(c + 1) * (n / 2) - 0.5` in float32, as PyTorch's CPU grid_sample (align_corners=False) computes it.

  XLA would contract `prod - 0.5` into an FMA (one rounding) where PyTorch rounds the product first; the
  select below is a no-op for non-NaN values that stops the contraction.
  """
  prod = (c + 1.0) * np.float32(n / 2)
  prod = jnp.where(prod == prod, prod, jnp.float32(np.nan))
  return prod - np.float32(0.5)


def nearest_index(c: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """The nearest pixel index along one axis (ties to even, like std::nearbyint) and whether it is in [0, n).

  Args:
    c: float32 normalised coordinates in [-1, 1] (any shape).
    n: size of the sampled axis.

  Returns:
    (int32 index, not clipped; bool mask of indices inside [0, n)).
  """
  idx = jnp.round(unnormalize(c, n)).astype(jnp.int32)  # jnp.round rounds half to even
  return idx, (idx >= 0) & (idx < n)
