"""Tests for the Pallas hash-grid kernel against hashgrid_reference: interpret mode on CPU, compiled on a GPU."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import hashgrid

TOLERANCES = {jnp.float32: dict(rtol=1e-5, atol=2e-5), jnp.bfloat16: dict(rtol=2e-2, atol=2e-2)}
SMALL_BLOCKS = hashgrid.BlockSizes(block_n=32, block_n_bwd=16)


def _inputs(n=100, feats=2, log2_t=12, resolutions=(2, 7, 31), dims=6, dtype=jnp.float32, seed=0,
            duplicates=False):
  rng = np.random.default_rng(seed)
  num_levels = len(resolutions)
  points = rng.uniform(-1, 1, (n, num_levels, dims)).astype(np.float32)
  points[0] = 1.0
  points[1] = -1.0
  if duplicates:  # Every point of the block shares its corners: the scatter sees duplicates.
    points[:] = points[2]
  weights = rng.normal(size=(n, num_levels, 1 << dims)).astype(np.float32)
  tables = rng.normal(size=(num_levels, 1 << log2_t, feats)).astype(np.float32)
  cot = rng.normal(size=(n, num_levels, feats)).astype(np.float32)
  return (jnp.asarray(points), jnp.asarray(weights, dtype), jnp.asarray(tables, dtype), tuple(resolutions),
          jnp.asarray(cot))


def _check_against_reference(points, weights, tables, resolutions, cot, *, interpret, dtype=jnp.float32, **kw):
  ref = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="reference")
  pal = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="pallas", interpret=interpret,
                                              block_sizes=SMALL_BLOCKS, **kw)
  want, want_vjp = jax.vjp(ref, weights, tables)
  got, got_vjp = jax.vjp(pal, weights, tables)
  tol = TOLERANCES[dtype]
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), **tol)
  for g, w in zip(got_vjp(cot), want_vjp(cot)):
    assert g.dtype == w.dtype
    scale = max(1.0, float(jnp.max(jnp.abs(w.astype(jnp.float32)))))
    np.testing.assert_allclose(np.asarray(g, np.float32) / scale, np.asarray(w, np.float32) / scale, **tol)


@pytest.mark.parametrize("feats", [2, 4, 8, 3])
def test_interpret_matches_reference_dense_and_hashed(feats):
  args = _inputs(feats=feats)
  assert hashgrid.is_dense(args[3][0], 1 << 12) and not hashgrid.is_dense(args[3][2], 1 << 12)
  _check_against_reference(*args, interpret=True)


@pytest.mark.parametrize("n", [2, 31, 33, 100])
def test_interpret_handles_n_not_a_multiple_of_the_block(n):
  _check_against_reference(*_inputs(n=n, seed=n), interpret=True)


@pytest.mark.parametrize("deterministic", [False, True])
def test_interpret_scatter_keeps_duplicate_updates(deterministic):
  points, weights, tables, resolutions, cot = _inputs(n=48, resolutions=(5, 40), log2_t=10, duplicates=True)
  _check_against_reference(points, weights, tables, resolutions, cot, interpret=True, deterministic=deterministic)
  # Independent check of the hashed level: every point adds w * g to the same 64 rows.
  dt = jax.grad(lambda t: jnp.sum(cot * hashgrid.hashgrid_gather(points, weights, t, resolutions, impl="pallas",
                                                                 interpret=True, deterministic=deterministic,
                                                                 block_sizes=SMALL_BLOCKS)))(tables)
  idx = np.asarray(hashgrid.corner_indices(points[:1, 1], 40, 1 << 10))[0]
  want = np.zeros((1 << 10, 2))
  np.add.at(want, idx, np.einsum("nc,nf->cf", np.asarray(weights[:, 1]), np.asarray(cot[:, 1])))
  np.testing.assert_allclose(np.asarray(dt[1]), want, rtol=1e-5, atol=1e-4)


def test_interpret_lower_dimensional_codes_and_bf16():
  _check_against_reference(*_inputs(dims=4, resolutions=(3, 64)), interpret=True)
  _check_against_reference(*_inputs(dtype=jnp.bfloat16), interpret=True, dtype=jnp.bfloat16)


def test_no_gradient_to_points():
  points, weights, tables, resolutions, _ = _inputs(n=16)
  g = jax.grad(lambda p: jnp.sum(hashgrid.hashgrid_gather(p, weights, tables, resolutions, impl="pallas",
                                                          interpret=True)))(points)
  assert not np.any(np.asarray(g))


def test_kernel_lowers_for_cuda_on_this_host():
  points, weights, tables, resolutions, cot = _inputs(n=256)

  def fwd_bwd(w, t):
    out, vjp = jax.vjp(lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="pallas"), w, t)
    return out, vjp(cot)

  lowered = jax.jit(fwd_bwd).trace(weights, tables).lower(lowering_platforms=("cuda",))
  text = lowered.as_text()
  assert "hashgrid_fwd" in text and "hashgrid_bwd" in text


def test_block_sizes_validation_and_auto_dispatch():
  with pytest.raises(ValueError, match="power of two"):
    hashgrid.BlockSizes(block_n=48)
  with pytest.raises(ValueError, match="F <= 8"):
    _check_against_reference(*_inputs(feats=16), interpret=True)
  if jax.default_backend() == "cpu":  # auto takes the reference on CPU: same values, no Pallas.
    p, w, t, r, _ = _inputs(n=8)
    np.testing.assert_array_equal(hashgrid.hashgrid_gather(p, w, t, r), hashgrid.hashgrid_reference(p, w, t, r))


@pytest.mark.gpu
@pytest.mark.parametrize("feats", [2, 4, 8])
@pytest.mark.parametrize("deterministic", [False, True])
def test_compiled_matches_reference_on_gpu(feats, deterministic):
  _check_against_reference(*_inputs(n=1000, feats=feats, log2_t=16, resolutions=(2, 16, 128, 1024)),
                           interpret=False, deterministic=deterministic)
  _check_against_reference(*_inputs(n=100, feats=feats, duplicates=True), interpret=False,
                           deterministic=deterministic)
