"""Multiresolution hash-grid lookup plus 2**D-vertex weighted gather: corner rules, reference and public op.

Per point n and level l the op computes `sum_c weights[n, l, c] * tables[l, idx_c]` (DESIGN.md, "SR-INR /
VR-INR forward pass", steps 3-6):
  u = (p + 1) / 2 * N (p clipped to [-1, 1]), V0 = floor(u), frac = u - V0; corner c adds bit d of c to
  dimension d; a level is dense when (N + 2)**D <= T (idx = sum_d V[d] (N + 2)**d), hashed otherwise
  (idx = XOR_d V[d] * PI[d] mod T, in uint32 arithmetic).
`hashgrid_reference` (pure jnp, chunked over N) supports D in 1..6; the paper's model uses D = 6.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437)
DEFAULT_CHUNK = 1 << 14


def is_dense(resolution: int, table_size: int, dims: int = 6) -> bool:
  """Whether a level of `resolution` fits its table densely: (N + 2)**D <= T."""
  return (resolution + 2) ** dims <= table_size


def _check_table_size(table_size: int):
  if table_size <= 0 or table_size & (table_size - 1):
    raise ValueError(f"{table_size=} must be a power of two")
  if table_size > 1 << 31:
    raise ValueError(f"{table_size=} must be <= 2**31 so indices fit int32")


def corner_bits(dims: int = 6) -> np.ndarray:
  """(2**D, D) int32 array: bit d of corner c."""
  c = np.arange(1 << dims)
  return ((c[:, None] >> np.arange(dims)[None, :]) & 1).astype(np.int32)


def lattice_position(points: jax.Array, resolution: int) -> tuple[jax.Array, jax.Array]:
  """Base vertex and fractional position of points on a level's lattice.

  Args:
    points: (..., D) float coordinates in [-1, 1] (clipped to that range).
    resolution: N, the level's grid resolution (> 0).

  Returns:
    (v0, frac): v0 (..., D) int32 in [0, N]; frac (..., D) float32 in [0, 1).
  """
  u = (jnp.clip(points.astype(jnp.float32), -1.0, 1.0) + 1.0) * 0.5 * resolution
  v0 = jnp.floor(u)
  return v0.astype(jnp.int32), u - v0


def corner_indices(points: jax.Array, resolution: int, table_size: int) -> jax.Array:
  """Table rows of the 2**D lattice corners around each point, for one level.

  Args:
    points: (N, D) coordinates in [-1, 1], D <= 6.
    resolution: the level's grid resolution N_l (static int).
    table_size: T, a power of two <= 2**31 (static int).

  Returns:
    (N, 2**D) int32 indices in [0, T).
  """
  _check_table_size(table_size)
  dims = points.shape[-1]
  if not 1 <= dims <= len(PRIMES):
    raise ValueError(f"points must have 1..6 coordinates in the last axis, got shape {points.shape}")
  v0, _ = lattice_position(points, resolution)
  corners = v0[:, None, :].astype(jnp.uint32) + jnp.asarray(corner_bits(dims), jnp.uint32)  # (N, C, D)
  if is_dense(resolution, table_size, dims):
    strides = jnp.asarray([(resolution + 2) ** d for d in range(dims)], jnp.uint32)
    idx = jnp.sum(corners * strides, axis=-1, dtype=jnp.uint32)
  else:
    idx = corners[..., 0] * jnp.uint32(PRIMES[0])
    for d in range(1, dims):
      idx = idx ^ (corners[..., d] * jnp.uint32(PRIMES[d]))
    idx = idx & jnp.uint32(table_size - 1)
  return idx.astype(jnp.int32)


def _gather_levels(points, weights, tables, resolutions):
  """(n, L, F) weighted gather for one chunk, level by level."""
  table_size = tables.shape[1]
  outs = []
  for level, res in enumerate(resolutions):
    idx = corner_indices(points[:, level], res, table_size)  # (n, C)
    rows = jnp.take(tables[level], idx, axis=0)  # (n, C, F)
    outs.append(jnp.einsum("nc,ncf->nf", weights[:, level].astype(rows.dtype), rows,
                           preferred_element_type=jnp.float32))
  return jnp.stack(outs, axis=1)


def check_shapes(points, weights, tables, resolutions):
  """Validate the op's arguments (DESIGN.md, Kernel contract); raises ValueError."""
  if points.ndim != 3:
    raise ValueError(f"points must be (N, L, D), got shape {points.shape}")
  n, num_levels, dims = points.shape
  if weights.shape != (n, num_levels, 1 << dims):
    raise ValueError(f"weights must be (N, L, 2**D) = {(n, num_levels, 1 << dims)}, got {weights.shape}")
  if tables.ndim != 3 or tables.shape[0] != num_levels:
    raise ValueError(f"tables must be (L={num_levels}, T, F), got shape {tables.shape}")
  if len(resolutions) != num_levels:
    raise ValueError(f"resolutions must have L={num_levels} entries, got {resolutions}")
  _check_table_size(tables.shape[1])


@functools.partial(jax.jit, static_argnames=("resolutions", "chunk"))
def hashgrid_reference(points, weights, tables, resolutions, *, chunk: int = DEFAULT_CHUNK):
  """Reference multiresolution hash-grid gather, chunked over N so memory stays bounded.

  out[n, l] = sum_c weights[n, l, c] * tables[l, corner_indices(points[:, l], N_l, T)[n, c]].

  Args:
    points: (N, L, D) float coordinates in [-1, 1].
    weights: (N, L, 2**D) corner weights.
    tables: (L, T, F) feature tables, T a power of two.
    resolutions: static tuple of L ints, the grid resolution of each level.
    chunk: points per chunk; intermediates are (chunk, L, 2**D, F).

  Returns:
    (N, L, F) float32 features. Differentiable in weights and tables (points get zero gradient).
  """
  resolutions = tuple(int(r) for r in resolutions)
  check_shapes(points, weights, tables, resolutions)
  n = points.shape[0]
  points = jax.lax.stop_gradient(points)
  if n <= chunk:
    return _gather_levels(points, weights, tables, resolutions)
  pad = (-n) % chunk
  p = jnp.pad(points, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, *points.shape[1:])
  w = jnp.pad(weights, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, *weights.shape[1:])
  out = jax.lax.map(lambda pw: _gather_levels(pw[0], pw[1], tables, resolutions), (p, w))
  return out.reshape(-1, *out.shape[2:])[:n]


IMPLS = ("auto", "pallas", "reference")


def hashgrid_gather(points, weights, tables, resolutions, *, impl: str = "auto", interpret: bool = False):
  """Weighted gather of 2**D lattice-corner rows per point and level.

  Args:
    points: (N, L, D) float32 coordinates in [-1, 1].
    weights: (N, L, 2**D) corner weights.
    tables: (L, T, F) tables, T a power of two.
    resolutions: static tuple of L grid resolutions.
    impl: "auto", "pallas" or "reference".
    interpret: run the Pallas path in interpret mode (CPU).

  Returns:
    (N, L, F) float32. Gradients flow to weights and tables, not to points.
  """
  if impl not in IMPLS:
    raise ValueError(f"{impl=} must be one of {IMPLS}")
  del interpret
  return hashgrid_reference(points, weights, tables, tuple(resolutions))
