"""Texture encoder and multiresolution hash encoding of SR-INR / VR-INR (DESIGN.md steps 1-6).

Choices DESIGN.md leaves open, made here:
  * Per-level MLPs are stored stacked: a `StackedMLP` holds (L, in, hidden) and (L, hidden, out) kernels, so
    level l's MLP is `params[...]["w1"][l]` etc. (a pytree slice, easy to swap or freeze).
  * MLP kernels use LeCun-normal initialisation per level and zero biases (Flax's Dense defaults).
  * The texture patch is flattened row-major as (row, column, channel) before MLP_T.
  * With `code_dim` < 3 the STT code has D = 3 + code_dim dimensions and 2**D corners; D = 6 is the papers'.
  * `TextureEncoder.prefilter="gaussian"` (not in the papers, which sample the LR as it is): before level l's
    patch is sampled at spacing 2 / N_l, the LR is blurred with a Gaussian of sigma max(0, (r - 1) / 2) LR
    pixels per axis, r = (LR pixels) / N_l (skimage's antialiasing rule), so a level sees the LR band-limited to
    its own sampling rate whatever the LR's scale. Only LR-sized arrays are formed (one per level).
  * `TextureEncoder.spacing="lr_pixels"` (not in the papers, whose spacing is 2 / N_l of the frame): level l's
    patch samples are N_max / N_l LR pixels apart (the finest level 1 pixel), so a code describes the LR
    around the query in the LR's own pixels, whatever the LR's size: the relation between an LR and its HR is
    then the same at every resolution (the self-similarity zero-shot SR relies on).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr import resize
from kernels import sharded_gather
from kernels import hashgrid

WEIGHT_NORMS = ("none", "softmax", "multilinear")
PREFILTERS = ("none", "gaussian")
SPACINGS = ("level", "lr_pixels")


def level_resolutions(num_levels: int, n_min: int, n_max: int) -> tuple[int, ...]:
  """Grid resolution of each level, `N_l = floor(N_min * b**l)`, b = exp((ln N_max - ln N_min) / (L - 1)).

  Args:
    num_levels: L >= 1.
    n_min: coarsest resolution, >= 1.
    n_max: finest resolution, >= n_min.

  Returns:
    Tuple of L ints, non-decreasing, first N_min and (up to rounding) last N_max.
  """
  if num_levels < 1 or n_min < 1 or n_max < n_min:
    raise ValueError(f"need num_levels >= 1 and 1 <= n_min <= n_max, got {num_levels=} {n_min=} {n_max=}")
  if num_levels == 1:
    return (int(n_min),)
  b = math.exp((math.log(n_max) - math.log(n_min)) / (num_levels - 1))
  # The small epsilon keeps floor(N_min * b**(L-1)) == N_max despite rounding in b.
  return tuple(int(math.floor(n_min * b**level + 1e-6)) for level in range(num_levels))


def multilinear_weights(frac: jax.Array) -> jax.Array:
  """Multilinear (instant-ngp) corner weights: prod_d (frac[d] if bit d of c else 1 - frac[d]).

  Args:
    frac: (..., D) fractional lattice positions in [0, 1).

  Returns:
    (..., 2**D) weights that sum to 1.
  """
  bits = jnp.asarray(hashgrid.corner_bits(frac.shape[-1]), frac.dtype)  # (C, D)
  f = frac[..., None, :]
  return jnp.prod(bits * f + (1.0 - bits) * (1.0 - f), axis=-1)


def uniform_pm(limit: float):
  """Initializer drawing uniformly from [-limit, limit] (the papers' table initialisation with 1e-4)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


class StackedMLP(nn.Module):
  """L independent one-hidden-layer ReLU MLPs, one per level, with stacked parameters.

  Attributes:
    num_levels: number of MLPs (L).
    in_features: input width.
    hidden: hidden width.
    out_features: output width.
  """

  num_levels: int
  in_features: int
  hidden: int
  out_features: int

  def setup(self):
    init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
    self.w1 = self.param("w1", init, (self.num_levels, self.in_features, self.hidden))
    self.b1 = self.param("b1", nn.initializers.zeros, (self.num_levels, self.hidden))
    self.w2 = self.param("w2", init, (self.num_levels, self.hidden, self.out_features))
    self.b2 = self.param("b2", nn.initializers.zeros, (self.num_levels, self.out_features))

  def __call__(self, x: jax.Array) -> jax.Array:
    """Apply MLP l to x[..., l, :].

    Args:
      x: (..., L, in_features).

    Returns:
      (..., L, out_features).
    """
    if x.shape[-2:] != (self.num_levels, self.in_features):
      raise ValueError(f"expected (..., {self.num_levels}, {self.in_features}), got shape {x.shape}")
    h = jax.nn.relu(jnp.einsum("...li,lih->...lh", x, self.w1) + self.b1)
    return jnp.einsum("...lh,lho->...lo", h, self.w2) + self.b2

  def level(self, x: jax.Array, level: int) -> jax.Array:
    """Apply MLP `level` alone: x (..., in_features) -> (..., out_features)."""
    h = jax.nn.relu(x @ self.w1[level] + self.b1[level])
    return h @ self.w2[level] + self.b2[level]


def gaussian_blur_axis(image: jax.Array, sigma: jax.Array, valid: jax.Array, axis: int, radius: int) -> jax.Array:
  """Gaussian blur of one image along one axis, edges clamped to the valid extent.

  Args:
    image: (h, w, C).
    sigma: () standard deviation in pixels (0: identity); may be traced.
    valid: () number of valid pixels along the axis (the rest is padding); may be traced.
    axis: 0 (rows) or 1 (columns).
    radius: static number of taps on each side.

  Returns:
    (h, w, C) blurred image.
  """
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  safe = jnp.maximum(sigma, 1e-6)
  weights = jnp.where(sigma > 0, jnp.exp(-0.5 * (offsets / safe) ** 2), (offsets == 0).astype(jnp.float32))
  weights = weights / jnp.sum(weights)
  n = image.shape[axis]
  idx = jnp.clip(jnp.arange(n)[:, None] + jnp.arange(-radius, radius + 1)[None, :], 0,
                 jnp.asarray(valid, jnp.int32) - 1)  # (n, 2R + 1)
  taps = jnp.take(image, idx, axis=axis)  # axis -> (n, 2R + 1)
  if axis == 0:
    return jnp.einsum("hrwc,r->hwc", taps, weights)
  return jnp.einsum("hwrc,r->hwc", taps, weights)


def level_prefilter(image: jax.Array, resolutions: Sequence[int], size=None) -> jax.Array:
  """The LR band-limited to each level's sampling rate: a Gaussian per level (see the module docstring).

  Args:
    image: (h, w, C) LR image (possibly padded at the bottom/right, see `size`).
    resolutions: N_l of each level.
    size: optional (h_valid, w_valid).

  Returns:
    (L, h, w, C): level l's blurred image (the image itself where N_l >= its size).
  """
  h_pad, w_pad = image.shape[0], image.shape[1]
  h, w = (h_pad, w_pad) if size is None else size
  h = jnp.asarray(h, jnp.float32)
  w = jnp.asarray(w, jnp.float32)
  out = []
  for n in resolutions:
    sy = jnp.maximum(0.0, (h / n - 1.0) / 2.0)
    sx = jnp.maximum(0.0, (w / n - 1.0) / 2.0)
    ry = max(1, int(math.ceil(3 * max(0.0, (h_pad / n - 1.0) / 2.0))))
    rx = max(1, int(math.ceil(3 * max(0.0, (w_pad / n - 1.0) / 2.0))))
    blurred = gaussian_blur_axis(image, sy, h, 0, min(ry, h_pad))
    out.append(gaussian_blur_axis(blurred, sx, w, 1, min(rx, w_pad)))
  return jnp.stack(out)


def _taps_lanes(pos: jax.Array, size, renormalize: bool = False) -> tuple[jax.Array, jax.Array]:
  """`resize._taps` with the tap axis before the last (point) axis: (..., N) -> (..., 4, N) indices and weights."""
  base = jnp.floor(pos)
  idx = base[..., None, :] + jnp.arange(-1, 3, dtype=pos.dtype)[:, None]
  weights = resize.cubic(pos[..., None, :] - idx)
  limit = jnp.asarray(size, jnp.int32) - 1
  if renormalize:
    weights = jnp.where((idx >= 0) & (idx <= limit.astype(idx.dtype)), weights, 0.0)
    weights = weights / jnp.sum(weights, axis=-2, keepdims=True)
  return jnp.clip(idx.astype(jnp.int32), 0, limit), weights


def sample_bicubic_lanes(image: jax.Array, xy: jax.Array, size=None, renormalize: bool = False) -> jax.Array:
  """`resize.sample_bicubic` at (N, 2) points with the point axis last (TPU lanes, see `sample_patches_lanes`).

  Args:
    image, size, renormalize: as for `resize.sample_bicubic`.
    xy: (N, 2) points (x, y) in [-1, 1].

  Returns:
    (N, C) values, as `resize.sample_bicubic` (up to float summation order).
  """
  h_pad, w_pad, channels = image.shape
  h, w = (h_pad, w_pad) if size is None else size
  h = jnp.asarray(h, jnp.float32)
  w = jnp.asarray(w, jnp.float32)
  ix, wx = _taps_lanes((xy[:, 0] + 1.0) * 0.5 * w - 0.5, w, renormalize)  # (4, N)
  iy, wy = _taps_lanes((xy[:, 1] + 1.0) * 0.5 * h - 0.5, h, renormalize)
  index = iy[:, None, :] * w_pad + ix[None, :, :]  # (4, 4, N)
  taps = wy[:, None, :] * wx[None, :, :]
  planes = jnp.moveaxis(image, -1, 0).reshape(channels, h_pad * w_pad)
  out = jnp.stack([jnp.sum(jnp.take(planes[c], index, mode="clip") * taps, axis=(0, 1)) for c in range(channels)])
  return out.T


def sample_bicubic(image: jax.Array, xy: jax.Array, size=None, renormalize: bool = False) -> jax.Array:
  """`resize.sample_bicubic` at (N, 2) points, laid out for the platform it is compiled for (`sample_patches`).

  Args:
    image, size, renormalize: as for `resize.sample_bicubic`.
    xy: (N, 2) points (x, y) in [-1, 1].

  Returns:
    (N, C) values.
  """
  return jax.lax.platform_dependent(
      image, xy, tpu=lambda im, p: sample_bicubic_lanes(im, p, size, renormalize),
      default=lambda im, p: resize.sample_bicubic(im, p, size, renormalize))


def sample_patches_lanes(image: jax.Array, xy: jax.Array, spacings, k: int, size=None) -> jax.Array:
  """`resize.sample_patches` computed with the point axis last (TPU lanes); the same values.

  A TPU tiles the two minor dimensions of every array by (8, 128). `resize.sample_patches` gathers rows of C = 3
  channels (it once gathered all (N, L, k, 4, k, 4, C) tap values, now one (N, L, k, k, C) tap at a time) and
  weights them by taps in the minor dimensions, so on a TPU its gathers and products pad 3 or 4 minor elements
  to 128: 43 to 51 times their size, about 105 GB of temporaries for a 32 x 4096-pixel SR-INR batch on 4 chips
  (BENCHMARKS.md, "Will it fit?", measured with the all-taps gather). Here every intermediate keeps the
  N points as its minor dimension: the taps are (L, k, 4, N), each channel is gathered on its own from the
  (h * w,) plane into (L, k, 4, k, 4, N), and the 4 x 4 taps are summed elementwise.

  Args:
    image, xy, spacings, k, size: as for `resize.sample_patches`.

  Returns:
    (N, L, k, k, C) patches, as `resize.sample_patches` (up to float summation order).
  """
  h_pad, w_pad, channels = image.shape
  h, w, step_x, step_y = resize.patch_steps(image.shape, size, spacings, k)
  step_x, step_y = step_x[..., None], step_y[..., None]  # (L, k, 1)
  ix, wx = _taps_lanes(((xy[:, 0] + step_x) + 1.0) * 0.5 * w - 0.5, w)  # (L, k, 4, N)
  iy, wy = _taps_lanes(((xy[:, 1] + step_y) + 1.0) * 0.5 * h - 0.5, h)
  index = iy[:, :, :, None, None, :] * w_pad + ix[:, None, None, :, :, :]  # (L, k, 4, k, 4, N)
  taps = wy[:, :, :, None, None, :] * wx[:, None, None, :, :, :]
  planes = jnp.moveaxis(image, -1, 0).reshape(channels, h_pad * w_pad)
  # One gather per channel: a gather of (C,) rows would put C = 3 back in the minor dimension.
  out = jnp.stack([jnp.sum(jnp.take(planes[c], index, mode="clip") * taps, axis=(2, 4)) for c in range(channels)])
  return jnp.transpose(out, (4, 1, 2, 3, 0))  # (C, L, k, k, N) -> (N, L, k, k, C)


def sample_patches(image: jax.Array, xy: jax.Array, spacings, k: int, size=None) -> jax.Array:
  """`resize.sample_patches`, laid out for the platform the program is compiled for.

  `jax.lax.platform_dependent` picks `sample_patches_lanes` when lowering for a TPU and `resize.sample_patches`
  elsewhere (CPU, GPU: no tiling, and the channels-last gather is the faster one on CPU), so an ahead-of-time
  compile for a TPU from a CPU host (`tools.aot`) gets the TPU layout too.

  Args:
    image, xy, spacings, k, size: as for `resize.sample_patches`.

  Returns:
    (N, L, k, k, C) patches.
  """
  return jax.lax.platform_dependent(  # The branches close over spacings and size (constants or traced).
      image, xy, tpu=lambda im, p: sample_patches_lanes(im, p, spacings, k, size),
      default=lambda im, p: resize.sample_patches(im, p, spacings, k, size))


class TextureEncoder(nn.Module):
  """Texture codes xi_l = tanh(MLP_T_l(flatten(k x k bicubic patch of the LR at spacing 2 / N_l))).

  Attributes:
    resolutions: grid resolution N_l of each level.
    patch_size: k.
    code_dim: size of each texture code (3 in the papers).
    hidden: MLP hidden width.
    prefilter: "none" (the papers': patches of the LR as it is) or "gaussian" (level l's patch from the LR
      blurred to its sampling rate, `level_prefilter`).
    spacing: "level" (the papers': 2 / N_l in [-1, 1] units) or "lr_pixels" (N_max / N_l LR pixels).
  """

  resolutions: Sequence[int]
  patch_size: int = 5
  code_dim: int = 3
  hidden: int = 64
  prefilter: str = "none"
  spacing: str = "level"

  @nn.compact
  def __call__(self, lr: jax.Array, xy: jax.Array, lr_size=None) -> jax.Array:
    """Texture codes for query points of each frame.

    Args:
      lr: (B, h, w, C) LR frames (possibly padded at bottom/right, see lr_size).
      xy: (B, Q, 2) query (x, y) in [-1, 1].
      lr_size: optional (B, 2) int valid (h, w) of each padded frame.

    Returns:
      (B, Q, L, code_dim) codes in [-1, 1].
    """
    if self.prefilter not in PREFILTERS:
      raise ValueError(f"texture_prefilter={self.prefilter!r} must be one of {PREFILTERS}")
    if self.spacing not in SPACINGS:
      raise ValueError(f"texture_spacing={self.spacing!r} must be one of {SPACINGS}")
    k = self.patch_size
    if self.spacing == "lr_pixels":
      if self.prefilter != "none":
        raise ValueError(f"texture_prefilter={self.prefilter!r} needs texture_spacing='level'")
      pixels = max(self.resolutions) / np.asarray(self.resolutions, np.float32)  # (L,) LR pixels per step
      def one_px(im, p, s):  # s: valid (h, w) of the frame
        hw = jnp.asarray(s, jnp.float32)
        spacing = jnp.stack([2.0 * pixels / hw[1], 2.0 * pixels / hw[0]], axis=-1)  # (L, 2) along (x, y)
        return sample_patches(im, p, spacing, k, size=s)
      if lr_size is None:
        patches = jax.vmap(lambda im, p: one_px(im, p, lr.shape[1:3]))(lr, xy)
      else:
        patches = jax.vmap(lambda im, p, s: one_px(im, p, (s[0], s[1])))(lr, xy, lr_size)
      return self._codes(patches)
    spacings = 2.0 / np.asarray(self.resolutions, np.float32)
    if self.prefilter == "gaussian":
      def one(im, p, s=None):
        levels = level_prefilter(im, self.resolutions, s)
        return jnp.concatenate([sample_patches(levels[l], p, spacings[l:l + 1], k, size=s)
                                for l in range(len(self.resolutions))], axis=1)
      if lr_size is None:
        patches = jax.vmap(one)(lr, xy)
      else:
        patches = jax.vmap(lambda im, p, s: one(im, p, (s[0], s[1])))(lr, xy, lr_size)
    elif lr_size is None:
      patches = jax.vmap(lambda im, p: sample_patches(im, p, spacings, k))(lr, xy)
    else:
      patches = jax.vmap(lambda im, p, s: sample_patches(im, p, spacings, k, size=(s[0], s[1])))(
          lr, xy, lr_size)
    return self._codes(patches)

  def _codes(self, patches: jax.Array) -> jax.Array:
    """(B, Q, L, k, k, C) patches -> (B, Q, L, code_dim) codes."""
    patches = jax.lax.stop_gradient(patches)
    flat = patches.reshape(*patches.shape[:3], -1)
    return jnp.tanh(StackedMLP(len(self.resolutions), flat.shape[-1], self.hidden, self.code_dim,
                               name="mlp")(flat))


class HashEncoding(nn.Module):
  """Multiresolution hash tables read through learned (or multilinear) corner weights.

  Attributes:
    resolutions: grid resolution N_l of each level.
    log2_table_size: log2 T.
    features: F, features per table row.
    weight_norm: "none" (raw MLP_H outputs), "softmax", or "multilinear" (no MLP).
    hidden: MLP_H hidden width.
    impl: `kernels.hashgrid.hashgrid_gather` implementation.
  """

  resolutions: Sequence[int]
  log2_table_size: int = 24
  features: int = 2
  weight_norm: str = "none"
  hidden: int = 64
  impl: str = "auto"

  @nn.compact
  def __call__(self, points: jax.Array) -> jax.Array:
    """Per-level features v_l.

    Args:
      points: (N, L, D) STT codes in [-1, 1].

    Returns:
      (N, L, F) float32 features.
    """
    if self.weight_norm not in WEIGHT_NORMS:
      raise ValueError(f"weight_norm={self.weight_norm!r} must be one of {WEIGHT_NORMS}")
    num_levels, dims = len(self.resolutions), points.shape[-1]
    tables = self.param("tables", uniform_pm(1e-4), (num_levels, 1 << self.log2_table_size, self.features))
    fracs = jnp.stack([hashgrid.lattice_position(points[:, l], r)[1]
                       for l, r in enumerate(self.resolutions)], axis=1)  # (N, L, D)
    if self.weight_norm == "multilinear":
      weights = multilinear_weights(fracs)
    else:
      inputs = jnp.concatenate([points, fracs, 1.0 - fracs], axis=-1)
      weights = StackedMLP(num_levels, 3 * dims, self.hidden, 1 << dims, name="weight_mlp")(inputs)
      if self.weight_norm == "softmax":
        weights = jax.nn.softmax(weights, axis=-1)
    layout = sharded_gather.current_layout()  # A mesh's table layout (kernels.sharded_gather.table_layout).
    if layout is not None:
      return sharded_gather.sharded_gather(points, weights, tables, tuple(self.resolutions), *layout, impl=self.impl)
    return hashgrid.hashgrid_gather(points, weights, tables, tuple(self.resolutions), impl=self.impl)
