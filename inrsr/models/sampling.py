"""PyTorch `grid_sample` sampling (nearest indices bit-exact, bilinear), shared by the LIIF-family decoders."""

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


def flat_index(iy: jax.Array, ix: jax.Array, h: int, w: int) -> jax.Array:
  """Row-major index of pixel (iy, ix) in an (h, w) map, indices clipped to the map first.

  Args:
    iy, ix: int32 row / column indices (any shape; out-of-range values are clipped).
    h, w: the map's height and width.

  Returns:
    int32 indices of the same shape into the map's h * w pixels.
  """
  return jnp.clip(iy, 0, h - 1) * w + jnp.clip(ix, 0, w - 1)


def gather(fmap: jax.Array, iy: jax.Array, ix: jax.Array, valid: jax.Array) -> jax.Array:
  """fmap[b, iy, ix] with zeros where not valid (grid_sample's zero padding).

  Args:
    fmap: (B, H, W, C) map.
    iy, ix: int32 indices of shape (B, ...); out-of-range values are clipped before the read.
    valid: bool mask of the indices' shape.

  Returns:
    (B, ..., C) samples.
  """
  b, h, w, c = fmap.shape
  flat = flat_index(iy, ix, h, w).reshape(b, -1)
  got = jax.vmap(lambda f, i: f[i])(fmap.reshape(b, h * w, c), flat).reshape(*iy.shape, c)
  return jnp.where(valid[..., None], got, 0.0)


def bilinear(fmap: jax.Array, cy: jax.Array, cx: jax.Array, border: bool, row0: jax.Array | int = 0,
             height: int | None = None) -> jax.Array:
  """PyTorch `grid_sample(mode='bilinear', align_corners=False)` at normalised (cy, cx).

  Args:
    fmap: (B, h, w, C) map, or rows [row0, row0 + h) of a `height`-row map.
    cy, cx: (B, ...) float32 coordinates in [-1, 1] (pixel centres at `make_coord`) on the whole map.
    border: `padding_mode='border'` (clamp to the edge) when True, 'zeros' when False.
    row0: the first row `fmap` holds (the rows read must lie in it).
    height: the whole map's rows; None: `fmap`'s.

  Returns:
    (B, ..., C) samples.
  """
  _, h, w, _ = fmap.shape
  h = h if height is None else int(height)
  uy, ux = unnormalize(cy, h), unnormalize(cx, w)
  if border:
    uy, ux = jnp.clip(uy, 0.0, h - 1.0), jnp.clip(ux, 0.0, w - 1.0)
  y0, x0 = jnp.floor(uy), jnp.floor(ux)
  wn, ww = uy - y0, ux - x0  # distance to the north row / west column
  ws, we = 1.0 - wn, 1.0 - ww
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  out = 0.0
  for dy, dx, wt in ((0, 0, ws * we), (0, 1, ws * ww), (1, 0, wn * we), (1, 1, wn * ww)):
    iy, ix = y0 + dy, x0 + dx
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    out = out + gather(fmap, iy - row0, ix, valid) * wt[..., None]
  return out


def neighbourhoods(ny_i, ny_v, nx_i, nx_v) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Row-major k x k neighbourhoods from row and column neighbours (..., k) whose leading axes broadcast.

  Returns:
    (row index, column index, in range), each (..., k * k) over the broadcast leading axes.
  """
  k = ny_i.shape[-1]
  lead = jnp.broadcast_shapes(ny_i.shape[:-1], nx_i.shape[:-1])
  shape = (*lead, k, k)
  niy = jnp.broadcast_to(ny_i[..., :, None], shape).reshape(*lead, k * k)
  nix = jnp.broadcast_to(nx_i[..., None, :], shape).reshape(*lead, k * k)
  return niy, nix, (ny_v[..., :, None] & nx_v[..., None, :]).reshape(*lead, k * k)
