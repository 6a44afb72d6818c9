"""Test helper: fit a model to HR pixels with Adam (the `fit` protocol on a tiny problem)."""

import jax
import jax.numpy as jnp
import optax

from inrsr import losses


def fit(model, lr, grid, target, *, steps: int, pixels: int, learning_rate: float = 1e-2, seed: int = 0):
  """Train `model` for `steps` Adam steps on `pixels` random queries per frame; returns the params.

  Args:
    model: an SRINR.
    lr: (B, h, w, 3) LR frames.
    grid: (B, Q, 3) query coordinates of every HR pixel.
    target: (B, Q, 3) HR colours.
    steps: Adam steps.
    pixels: queries per frame and step.
    learning_rate: Adam rate.
    seed: init and sampling seed.
  """
  lr, grid, target = jnp.asarray(lr), jnp.asarray(grid), jnp.asarray(target)
  params = model.init(jax.random.key(seed), lr, grid[:, :4])
  opt = optax.adam(learning_rate)
  state = opt.init(params)

  @jax.jit
  def step(params, state, key):
    idx = jax.random.randint(key, (pixels,), 0, grid.shape[1])
    loss, g = jax.value_and_grad(lambda p: losses.pea_loss(model.apply(p, lr, grid[:, idx]),
                                                           target[:, idx]))(params)
    updates, state = opt.update(g, state, params)
    return optax.apply_updates(params, updates), state, loss

  for i in range(steps):
    params, state, _ = step(params, state, jax.random.key(seed * 100003 + i))
  return params
