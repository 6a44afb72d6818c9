"""Tests for kernels.hashgrid's corner rules and reference op against brute-force NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from inrsr.models import encoding
from kernels import hashgrid

PI = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437)


def brute_force_indices(points, resolution, table_size):
  """DESIGN.md's rule with Python integers (no overflow), one point and corner at a time."""
  pts = np.clip(np.asarray(points, np.float32), -1, 1)
  u = (pts + np.float32(1)) * np.float32(0.5) * np.float32(resolution)
  v0 = np.floor(u).astype(np.int64)
  dims = pts.shape[-1]
  dense = (resolution + 2) ** dims <= table_size
  out = np.zeros((len(pts), 1 << dims), np.int64)
  for n in range(len(pts)):
    for c in range(1 << dims):
      v = [int(v0[n, d]) + ((c >> d) & 1) for d in range(dims)]
      if dense:
        out[n, c] = sum(v[d] * (resolution + 2) ** d for d in range(dims))
      else:
        h = 0
        for d in range(dims):
          h ^= (v[d] * PI[d]) % (1 << 32)
        out[n, c] = h % table_size
  return out


def _points(n, dims=6, seed=0):
  rng = np.random.default_rng(seed)
  pts = rng.uniform(-1, 1, (n, dims)).astype(np.float32)
  pts[0] = -1.0
  pts[1] = 1.0
  pts[2, ::2] = 1.0
  pts[2, 1::2] = -1.0
  return pts


@pytest.mark.parametrize("log2_t", [10, 14, 19, 24])
@pytest.mark.parametrize("resolution", [1, 7, 16, 128, 4096])
def test_corner_indices_match_brute_force(log2_t, resolution):
  pts = _points(40)
  got = np.asarray(hashgrid.corner_indices(jnp.asarray(pts), resolution, 1 << log2_t))
  want = brute_force_indices(pts, resolution, 1 << log2_t)
  assert got.dtype == np.int32
  assert got.min() >= 0 and got.max() < (1 << log2_t)
  np.testing.assert_array_equal(got, want)


def test_dense_and_hashed_levels_are_both_exercised():
  assert hashgrid.is_dense(14, 1 << 24) and not hashgrid.is_dense(15, 1 << 24)
  assert hashgrid.is_dense(1, 1 << 10) and not hashgrid.is_dense(2, 1 << 10)
  # A dense level addresses every corner of a point at the +1 boundary without wrapping.
  idx = np.asarray(hashgrid.corner_indices(jnp.ones((1, 6)), 14, 1 << 24))
  assert idx.max() == 16**6 - 1


def test_corner_indices_rejects_bad_table_size():
  with pytest.raises(ValueError, match="power of two"):
    hashgrid.corner_indices(jnp.zeros((1, 6)), 4, 1000)


def naive_gather(points, weights, tables, resolutions):
  n, num_levels, _ = points.shape
  out = np.zeros((n, num_levels, tables.shape[-1]))
  for l, res in enumerate(resolutions):
    idx = brute_force_indices(points[:, l], res, tables.shape[1])
    for i in range(n):
      out[i, l] = weights[i, l] @ tables[l, idx[i]]
  return out


def naive_grads(points, weights, tables, resolutions, cot):
  dw = np.zeros_like(weights, np.float64)
  dt = np.zeros_like(tables, np.float64)
  for l, res in enumerate(resolutions):
    idx = brute_force_indices(points[:, l], res, tables.shape[1])
    dw[:, l] = np.einsum("nf,ncf->nc", cot[:, l], tables[l][idx])
    np.add.at(dt[l], idx.reshape(-1), (weights[:, l, :, None] * cot[:, l, None, :]).reshape(-1, tables.shape[-1]))
  return dw, dt


@pytest.mark.parametrize("chunk", [7, 1 << 14])
def test_reference_forward_and_grads_match_naive_loop(chunk):
  rng = np.random.default_rng(1)
  resolutions = (2, 3, 31)  # dense (4**6 = 4096 <= T), hashed (5**6 > T), hashed, at T = 2**12
  n, num_levels, feats, t = 23, 3, 2, 1 << 12
  points = np.concatenate([_points(n - 3, seed=2), _points(3, seed=3)])[:, None, :].repeat(num_levels, 1)
  points = (points + rng.uniform(-0.1, 0.1, points.shape)).clip(-1, 1).astype(np.float32)
  weights = rng.normal(size=(n, num_levels, 64)).astype(np.float32)
  tables = rng.normal(size=(num_levels, t, feats)).astype(np.float32)
  cot = rng.normal(size=(n, num_levels, feats)).astype(np.float32)
  assert hashgrid.is_dense(2, t) and not hashgrid.is_dense(31, t)

  f = lambda w, tb: hashgrid.hashgrid_reference(jnp.asarray(points), w, tb, resolutions, chunk=chunk)
  out, vjp = jax.vjp(f, jnp.asarray(weights), jnp.asarray(tables))
  np.testing.assert_allclose(np.asarray(out), naive_gather(points, weights, tables, resolutions),
                             rtol=1e-5, atol=1e-5)
  dw, dt = vjp(jnp.asarray(cot))
  want_dw, want_dt = naive_grads(points, weights, tables, resolutions, cot)
  np.testing.assert_allclose(np.asarray(dw), want_dw, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dt), want_dt, rtol=1e-5, atol=1e-5)


def test_multilinear_weights_reproduce_6d_multilinear_interpolation():
  rng = np.random.default_rng(4)
  res, t, feats = 2, 1 << 12, 3
  assert hashgrid.is_dense(res, t)
  grid = rng.normal(size=(res + 2,) * 6 + (feats,))
  # Dense layout: idx = sum_d V[d] (N + 2)**d, i.e. dimension 0 varies fastest (Fortran order).
  table = np.zeros((t, feats))
  table[:(res + 2) ** 6] = np.moveaxis(grid, range(6), range(5, -1, -1)).reshape(-1, feats)
  pts = rng.uniform(-1, 1, (50, 6)).astype(np.float32)
  pts[0] = 1.0
  _, frac = hashgrid.lattice_position(jnp.asarray(pts), res)
  w = encoding.multilinear_weights(frac)
  np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)
  got = hashgrid.hashgrid_reference(jnp.asarray(pts)[:, None], w[:, None], jnp.asarray(table, jnp.float32)[None],
                                    (res,))[:, 0]
  axes = [np.arange(res + 2, dtype=np.float64)] * 6
  u = (pts.astype(np.float64) + 1) / 2 * res
  want = RegularGridInterpolator(axes, grid)(u)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_shape_errors_are_clear():
  with pytest.raises(ValueError, match="weights must be"):
    hashgrid.hashgrid_reference(jnp.zeros((4, 2, 6)), jnp.zeros((4, 2, 8)), jnp.zeros((2, 16, 2)), (2, 2))
  with pytest.raises(ValueError, match="impl"):
    hashgrid.hashgrid_gather(jnp.zeros((4, 1, 6)), jnp.zeros((4, 1, 64)), jnp.zeros((1, 16, 2)), (2,),
                             impl="cuda")
