"""Tests for inrsr.losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inrsr import losses


def test_pea_hand_worked_example():
  # Three pixels with per-pixel errors e = 0.04, 0.002, 0.0 (channel means of squared differences).
  target = np.zeros((3, 3), np.float32)
  pred = np.array([[0.2, 0.2, 0.2], [np.sqrt(0.006), 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
  # masked: only 0.04 > tau -> mean = 0.04 / 3
  # boosted: e + 0.001 for e < 0.005 -> (0.04 + 0.003 + 0.001) / 3
  want = 0.04 / 3 + 5.0 * (0.04 + 0.003 + 0.001) / 3
  assert float(losses.pea_loss(jnp.asarray(pred), jnp.asarray(target))) == pytest.approx(want, rel=1e-5)


def test_pea_gradient_equals_masked_mse_plus_alpha_mse():
  rng = np.random.default_rng(0)
  pred = jnp.asarray(rng.uniform(0, 1, (64, 3)), jnp.float32)
  target = jnp.asarray(np.clip(pred + rng.normal(0, 0.1, (64, 3)), 0, 1), jnp.float32)

  def surrogate(p):
    e = jnp.mean((p - target) ** 2, -1)
    return jnp.mean(jnp.where(e > 0.01, e, 0.0)) + 5.0 * jnp.mean(e)

  g = jax.grad(lambda p: losses.pea_loss(p, target))(pred)
  np.testing.assert_allclose(np.asarray(g), np.asarray(jax.grad(surrogate)(pred)), rtol=1e-6, atol=1e-9)
  e = np.mean((np.asarray(pred) - np.asarray(target)) ** 2, -1)
  assert 0 < np.mean(e > 0.01) < 1 and np.any(e < 0.005)  # both masks are active in this example


def test_mse_l1_and_errors():
  a, b = jnp.array([[0.0, 1.0]]), jnp.array([[0.5, 0.5]])
  assert float(losses.mse_loss(a, b)) == pytest.approx(0.25)
  assert float(losses.l1_loss(a, b)) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="same shape"):
    losses.pea_loss(a, jnp.zeros((2, 2)))
  with pytest.raises(ValueError, match="loss="):
    losses.get_loss("huber")
