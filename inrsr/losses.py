"""Training losses: the PEA loss of SR-INR / VR-INR, MSE and L1.

PEA (VR-INR Sec. 3.4, hyperparameters of Sec. 4.1), with per-pixel error e = mean over channels of
(pred - gt)**2:
    L = mean(e * [e > tau]) + alpha * mean(e + delta * [e < eps]).
It is implemented exactly as written. Note what that means: the delta term is a constant wherever it applies,
so it carries no gradient, and the loss trains exactly like `mean(e * [e > tau]) + alpha * mean(e)`
(masked MSE plus alpha times MSE); it only shifts the reported value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pixel_error(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Per-pixel squared error averaged over the channel (last) axis: (..., C) -> (...)."""
  return jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), axis=-1)


def pea_loss(pred: jax.Array, target: jax.Array, *, tau: float = 0.01, eps: float = 0.005,
             delta: float = 0.001, alpha: float = 5.0) -> jax.Array:
  """Pixel-Error Amplified loss.

  Args:
    pred: (..., C) predicted colours in [0, 1].
    target: (..., C) ground truth, same shape.
    tau: error threshold of the masked term.
    eps: error threshold below which delta is added.
    delta: boosting constant.
    alpha: weight of the boosted term.

  Returns:
    Scalar float32 loss.
  """
  if pred.shape != target.shape:
    raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
  e = pixel_error(pred, target)
  masked = jnp.mean(jnp.where(e > tau, e, 0.0))
  boosted = jnp.mean(e + delta * (e < eps).astype(e.dtype))
  return masked + alpha * boosted


def mse_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error over all elements (scalar)."""
  return jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)))


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all elements (scalar)."""
  return jnp.mean(jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32)))


LOSSES = {"pea": pea_loss, "mse": mse_loss, "l1": l1_loss}


def get_loss(name: str):
  """Loss function by config name ("pea", "mse" or "l1")."""
  if name not in LOSSES:
    raise ValueError(f"loss={name!r} must be one of {sorted(LOSSES)}")
  return LOSSES[name]
