"""kernels.winograd's 3x3 convolution and EDSR's use of it against float64 NumPy sums."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inrsr.models import edsr
from kernels import winograd


def conv_f64(x, k):
  """'same' 3x3 cross-correlation, zero padding 1, as the direct sum over taps in float64."""
  x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
  _, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(xp[:, i:i + h, j:j + w] @ k[i, j] for i in range(3) for j in range(3))


def grads_f64(x, k, dy):
  """d<conv(x, k), dy>/dx and /dk in float64: each tap's input window against dy."""
  x, k, dy = (np.asarray(a, np.float64) for a in (x, k, dy))
  _, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dxp = np.zeros_like(xp)
  dk = np.zeros_like(k)
  for i in range(3):
    for j in range(3):
      dxp[:, i:i + h, j:j + w] += dy @ k[i, j].T
      dk[i, j] = np.einsum("bhwc,bhwk->ck", xp[:, i:i + h, j:j + w], dy)
  return dxp[:, 1:-1, 1:-1], dk


def _data(shape, k_out, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(shape).astype(np.float32)
  k = (rng.standard_normal((3, 3, shape[-1], k_out)) / np.sqrt(9 * shape[-1])).astype(np.float32)
  dy = rng.standard_normal(shape[:3] + (k_out,)).astype(np.float32)
  return x, k, dy


@pytest.mark.parametrize("shape,k_out",
                         [((2, 8, 8, 5), 7), ((1, 7, 9, 3), 4), ((1, 1, 1, 2), 3), ((3, 12, 10, 16), 16)])
def test_forward_matches_float64_sums(shape, k_out):
  x, k, _ = _data(shape, k_out)
  got = np.asarray(jax.jit(winograd.conv3x3)(x, k))
  want = conv_f64(x, k)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=3e-6, rtol=0)
  # no less accurate than XLA's direct convolution on the same data (both float32)
  ref_err = np.abs(np.asarray(winograd.conv3x3_reference(x, k)) - want).max()
  assert np.abs(got - want).max() <= 2 * ref_err + 1e-7


@pytest.mark.parametrize("shape,k_out", [((2, 8, 8, 5), 7), ((1, 7, 9, 3), 4), ((2, 6, 4, 8), 8)])
def test_gradients_match_float64_sums(shape, k_out):
  x, k, dy = _data(shape, k_out, seed=1)
  dx, dk = jax.jit(jax.grad(lambda x, k: jnp.sum(winograd.conv3x3(x, k) * dy), argnums=(0, 1)))(x, k)
  want_dx, want_dk = grads_f64(x, k, dy)
  np.testing.assert_allclose(np.asarray(dx), want_dx, atol=3e-6, rtol=0)
  np.testing.assert_allclose(np.asarray(dk), want_dk, atol=1e-5 * np.abs(want_dk).max(), rtol=0)
  # and the reference's autodiff gradients agree with the same sums (the test's own sums are right)
  rdx, rdk = jax.grad(lambda x, k: jnp.sum(winograd.conv3x3_reference(x, k) * dy), argnums=(0, 1))(x, k)
  np.testing.assert_allclose(np.asarray(rdx), want_dx, atol=3e-6, rtol=0)
  np.testing.assert_allclose(np.asarray(rdk), want_dk, atol=1e-5 * np.abs(want_dk).max(), rtol=0)


def test_second_use_in_a_scan_and_bad_kernel():
  x, k, _ = _data((1, 6, 6, 4), 4)
  ks = np.stack([k, 0.5 * k])
  out, _ = jax.lax.scan(lambda h, kk: (winograd.conv3x3(h, kk), None), jnp.asarray(x), ks)
  np.testing.assert_allclose(np.asarray(out), conv_f64(conv_f64(x, k), 0.5 * k), atol=5e-6, rtol=0)
  with pytest.raises(ValueError, match="kernel"):
    winograd.conv3x3(x, np.zeros((5, 5, 4, 4), np.float32))


def test_conv3x3_module_has_nn_conv_parameters():
  x, _, _ = _data((2, 9, 11, 5), 1)
  ours = edsr.Conv3x3(7).init(jax.random.PRNGKey(3), x)
  theirs = nn.Conv(7, (3, 3), padding=1).init(jax.random.PRNGKey(3), x)
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("max_elements", [edsr.WINOGRAD_MAX_ELEMENTS, 0])
def test_edsr_blocks_match_float64_forward(monkeypatch, max_elements):
  """EDSR against the layer-by-layer float64 sums (head, blocks, body_out, global skip): maps within the size
  limits take the scanned Winograd blocks (the lower limit 0 here), others XLA's convolution, unrolled."""
  monkeypatch.setattr(edsr, "WINOGRAD_MIN_ELEMENTS", 0)
  monkeypatch.setattr(edsr, "WINOGRAD_MAX_ELEMENTS", max_elements)
  x, _, _ = _data((2, 10, 6, 3), 1, seed=2)
  model = edsr.EDSR(n_resblocks=3, n_feats=8)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  params = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(1), a.shape),
                        params)  # nonzero biases too
  got = np.asarray(model.apply({"params": params}, x))

  def layer(name, h):
    return conv_f64(h, params[name]["kernel"]) + np.asarray(params[name]["bias"], np.float64)

  head = layer("head", x)
  res = head
  for i in range(3):
    res = res + layer(f"body_{i}_conv2", np.maximum(layer(f"body_{i}_conv1", res), 0))
  want = layer("body_out", res) + head
  np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max(), rtol=0)


@pytest.mark.parametrize("shape,direct", [((1, 96, 96, 64), False), ((1, 8, 8, 64), True),
                                          ((1, 512, 512, 64), True)])
def test_cpu_program_takes_winograd_within_the_size_limits(shape, direct):
  x = np.zeros(shape, np.float32)
  k = np.zeros((3, 3, shape[-1], 64), np.float32)
  hlo = jax.jit(lambda x, k: edsr.convolve3x3(x, k)).lower(x, k).compile().as_text()  # a new trace per case
  assert ("convolution(" in hlo) == direct


@pytest.mark.parametrize("name", ["input", "filter", "output", "output_t"])
def test_each_transform_compiles_to_fused_loops_without_a_concatenation(name):
  # Written as 16 separate sums stacked, each transform compiled to 16 loops and a concatenation copying their
  # results (the LIIF train step's first call 12.7 s against 8.3 s now); as one broadcast sum per tile axis it is
  # at most two fused loops.
  x = jnp.zeros((2, 10, 12, 8), jnp.float32)
  fn, args = {"input": (winograd.input_transform, (x,)),
              "filter": (winograd.filter_transform, (jnp.zeros((3, 3, 8, 5), jnp.float32),)),
              "output": (lambda m: winograd.output_transform(m, (2, 10, 12, 5)), (jnp.zeros((16, 60, 5)),)),
              "output_t": (winograd._output_transform_t, (x,))}[name]  # pylint: disable=protected-access
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  assert "concatenate(" not in hlo
  assert hlo.count(" fusion(") <= 2
