"""Tests for the Pallas hash-grid kernel against hashgrid_reference: interpret mode on CPU, compiled on a GPU."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hashgrid_reference_test import naive_gather, naive_grads
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


def _forward_backward(f):
  """jit(w, t, cot -> (f(w, t), its VJP at cot)): jitted, the interpreted kernel runs as one compiled program
  (3 times faster than dispatched op by op in these tests; the same interpreter and values)."""
  def run(w, t, cot):
    out, vjp = jax.vjp(f, w, t)
    return out, vjp(cot)
  return jax.jit(run)


def _check_against_reference(points, weights, tables, resolutions, cot, *, interpret, dtype=jnp.float32, **kw):
  ref = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="reference")
  pal = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="pallas", interpret=interpret,
                                              block_sizes=SMALL_BLOCKS, **kw)
  want, want_grads = _forward_backward(ref)(weights, tables, cot)
  got, got_grads = _forward_backward(pal)(weights, tables, cot)
  tol = TOLERANCES[dtype]
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), **tol)
  for g, w in zip(got_grads, want_grads):
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
  loss = lambda t: jnp.sum(cot * hashgrid.hashgrid_gather(points, weights, t, resolutions, impl="pallas",
                                                         interpret=True, deterministic=deterministic,
                                                         block_sizes=SMALL_BLOCKS))
  dt = jax.jit(jax.grad(loss))(tables)
  idx = np.asarray(hashgrid.corner_indices(points[:1, 1], 40, 1 << 10))[0]
  want = np.zeros((1 << 10, 2))
  np.add.at(want, idx, np.einsum("nc,nf->cf", np.asarray(weights[:, 1]), np.asarray(cot[:, 1])))
  np.testing.assert_allclose(np.asarray(dt[1]), want, rtol=1e-5, atol=1e-4)


def test_interpret_lower_dimensional_codes_and_bf16():
  _check_against_reference(*_inputs(dims=4, resolutions=(3, 64)), interpret=True)
  _check_against_reference(*_inputs(dtype=jnp.bfloat16), interpret=True, dtype=jnp.bfloat16)


def test_gradients_match_finite_differences():
  points, weights, tables, resolutions, cot = _inputs(n=40, resolutions=(3, 17), log2_t=10, seed=5)
  loss = jax.jit(lambda p, w, t: jnp.sum(cot * hashgrid.hashgrid_gather(p, w, t, resolutions, impl="pallas",
                                                                        interpret=True, block_sizes=SMALL_BLOCKS)))
  dp, dw, dt = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(points, weights, tables)
  rng = np.random.default_rng(6)
  # The loss is linear in the weights and in the tables, so a central difference of any step is exact.
  for arg, grad in ((1, dw), (2, dt)):
    v = jnp.asarray(rng.normal(size=grad.shape), jnp.float32)
    args = [points, weights, tables]
    plus, minus = list(args), list(args)
    plus[arg], minus[arg] = args[arg] + v, args[arg] - v
    fd = (float(loss(*plus)) - float(loss(*minus))) / 2
    np.testing.assert_allclose(float(jnp.vdot(grad, v)), fd, rtol=1e-4, atol=1e-3)
    assert abs(fd) > 1.0  # the check is not vacuous
  # Points only choose the corners (the weights are inputs), so the loss is constant between cell faces: a
  # move that crosses none changes nothing, and the gradient to points must be that slope, zero.
  eps = 1e-4
  u = [(np.asarray(points[:, l]) + 1) / 2 * r for l, r in enumerate(resolutions)]
  inside = np.all([np.all(np.abs(x - np.round(x)) > 10 * eps * r, -1) for x, r in zip(u, resolutions)], 0)
  inside &= np.all(np.abs(np.asarray(points)) < 1 - 2 * eps, (1, 2))
  assert inside.sum() > len(inside) // 2
  v = jnp.asarray(rng.normal(size=points.shape) * inside[:, None, None], jnp.float32)
  fd = (float(loss(points + eps * v, weights, tables)) - float(loss(points - eps * v, weights, tables))) / (2 * eps)
  assert fd == 0.0 and float(jnp.vdot(dp, v)) == 0.0
  far = points.at[inside].add(0.5)  # crossing cell faces does change the loss
  assert float(loss(far, weights, tables)) != float(loss(points, weights, tables))


def test_auto_dispatch_and_pallas_against_a_numpy_loop():
  points, weights, tables, resolutions, cot = _inputs(n=37, resolutions=(2, 7, 31), log2_t=12, seed=7)
  def uses_pallas(impl, **kw):
    f = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl=impl, **kw)
    return "pallas_call" in str(jax.make_jaxpr(f)(weights, tables))
  assert uses_pallas("pallas", interpret=True) and not uses_pallas("reference")
  assert uses_pallas("auto") == (jax.default_backend() == "gpu" and "NVIDIA" in jax.devices()[0].device_kind.upper())
  pal = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="pallas", interpret=True,
                                              block_sizes=SMALL_BLOCKS)
  def forward_backward(w, t):
    out, vjp = jax.vjp(pal, w, t)
    return out, vjp(cot)

  out, (dw, dt) = jax.jit(forward_backward)(weights, tables)
  p, w, t, c = (np.asarray(x) for x in (points, weights, tables, cot))
  np.testing.assert_allclose(np.asarray(out), naive_gather(p, w, t, resolutions), rtol=1e-5, atol=1e-5)
  want_dw, want_dt = naive_grads(p, w, t, resolutions, c)
  np.testing.assert_allclose(np.asarray(dw), want_dw, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dt), want_dt, rtol=1e-5, atol=1e-5)


def test_kernel_lowers_for_cuda_on_this_host():
  points, weights, tables, resolutions, cot = _inputs(n=256)

  def fwd_bwd(w, t):
    out, vjp = jax.vjp(lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="pallas"), w, t)
    return out, vjp(cot)

  lowered = jax.jit(fwd_bwd).trace(weights, tables).lower(lowering_platforms=("cuda",))
  text = lowered.as_text()
  assert "hashgrid_fwd" in text and "hashgrid_bwd" in text


def test_block_sizes_validation():
  with pytest.raises(ValueError, match="power of two"):
    hashgrid.BlockSizes(block_n=48)
  with pytest.raises(ValueError, match="F <= 8"):
    _check_against_reference(*_inputs(feats=16), interpret=True)


@pytest.mark.gpu
@pytest.mark.parametrize("feats", [2, 4, 8])
@pytest.mark.parametrize("deterministic", [False, True])
def test_compiled_matches_reference_on_gpu(feats, deterministic):
  _check_against_reference(*_inputs(n=1000, feats=feats, log2_t=16, resolutions=(2, 16, 128, 1024)),
                           interpret=False, deterministic=deterministic)
  _check_against_reference(*_inputs(n=100, feats=feats, duplicates=True), interpret=False,
                           deterministic=deterministic)


def test_block_sizes_come_from_the_table():
  assert hashgrid.BlockSizes.get_default(12, 2, 1 << 24) == hashgrid.BlockSizes(*hashgrid.BLOCK_TABLE[12, 2, 24])
  # Nearest row: the same padded F (3 -> 4), then the nearest log2 T.
  assert hashgrid.BlockSizes.get_default(8, 3, 1 << 20) == hashgrid.BlockSizes(*hashgrid.BLOCK_TABLE[12, 4, 24])
  assert hashgrid.BlockSizes.get_default(4, 2, 1 << 12) == hashgrid.BlockSizes(*hashgrid.BLOCK_TABLE[4, 2, 14])
  assert hashgrid.BlockSizes.get_default() == hashgrid.BlockSizes()


@pytest.mark.parametrize("feats", [2, 8])
def test_interpret_matches_reference_at_the_default_blocks(feats):
  # One point per thread (F = 2) or two (F = 8), N not a multiple of the block, dense and hashed levels.
  points, weights, tables, resolutions, cot = _inputs(n=150, feats=feats, seed=11)
  ref = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="reference")
  pal = lambda w, t: hashgrid.hashgrid_gather(points, w, t, resolutions, impl="pallas", interpret=True)
  want, want_grads = _forward_backward(ref)(weights, tables, cot)
  got, got_grads = _forward_backward(pal)(weights, tables, cot)
  np.testing.assert_allclose(got, want, **TOLERANCES[jnp.float32])
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, **TOLERANCES[jnp.float32])
