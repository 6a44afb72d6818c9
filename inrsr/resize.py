"""Antialiased bicubic resizing (the SR degradation) and bicubic sampling of LR images at arbitrary points.

Resizing follows Pillow's BICUBIC filter exactly (Keys cubic, a = -0.5; when downsampling the kernel is widened
by the scale; at the borders the kernel is truncated and renormalised), so LR images match the LR images that
the reference LIIF code and most SR papers produce with PIL. It is written as two small (out, in) weight
matrices applied along rows and columns, in float32 without intermediate rounding.

Point sampling (`sample_bicubic`, `sample_patches`) is plain bicubic interpolation (no antialiasing, edge
pixels clamped), evaluated only at the requested points, so texture patches for a x32 output never build an
HR-sized image. For points that are HR pixel centres it agrees with `resize` upsampling on interior pixels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from inrsr import coords

KEYS_A = -0.5


def cubic(x, a: float = KEYS_A):
  """Keys' cubic convolution kernel with parameter `a` (works on NumPy and JAX arrays)."""
  xp = jnp if isinstance(x, jax.Array) else np
  ax = xp.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  near = (a + 2.0) * ax3 - (a + 3.0) * ax2 + 1.0
  far = a * ax3 - 5.0 * a * ax2 + 8.0 * a * ax - 4.0 * a
  return xp.where(ax <= 1.0, near, xp.where(ax < 2.0, far, 0.0))


@functools.lru_cache(maxsize=256)
def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """The (out_size, in_size) float32 matrix of Pillow's antialiased BICUBIC resize along one axis.

  Args:
    in_size: input length, > 0.
    out_size: output length, > 0.

  Returns:
    Read-only array whose rows sum to 1.
  """
  if in_size <= 0 or out_size <= 0:
    raise ValueError(f"sizes must be > 0, got {in_size=} {out_size=}")
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 2.0 * filterscale
  mat = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    center = (i + 0.5) * scale
    lo = max(int(center - support + 0.5), 0)
    hi = min(int(center + support + 0.5), in_size)
    taps = np.arange(lo, hi)
    w = cubic((taps - center + 0.5) / filterscale)
    total = w.sum()
    mat[i, lo:hi] = w / total if total != 0 else 0.0
  mat = mat.astype(np.float32)
  mat.setflags(write=False)
  return mat


@functools.lru_cache(maxsize=256)
def grid_matrix(in_size: int, out_size: int, step: float) -> np.ndarray:
  """(out_size, in_size) bicubic weights whose output pixel i is centred on input pixel i * step.

  `resize_matrix` centres output pixel i on input position (i + 0.5) * in / out - 0.5 (pixel centres aligned);
  here pixel i lands on input pixel i * step, the grid of a `[::step]` subsampling: step = 1 / s upsamples an LR
  sampled `[::s, ::s]` back onto its HR grid, step = s downscales an HR onto the pixels `[::s]` keeps. Keys'
  cubic (a = -0.5), widened by step when step > 1 (antialiasing, as Pillow); indices clamped at the borders
  (replicate) and each row normalised to sum 1.

  Args:
    in_size: input length, > 0.
    out_size: output length, > 0.
    step: input pixels per output pixel, > 0.

  Returns:
    Read-only float64 array (applied in float64, the result cast to float32).
  """
  if in_size <= 0 or out_size <= 0 or step <= 0:
    raise ValueError(f"sizes and step must be > 0, got {in_size=} {out_size=} {step=}")
  width = max(step, 1.0)
  mat = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    pos = i * step
    taps = np.arange(int(np.floor(pos - 2.0 * width)) + 1, int(np.ceil(pos + 2.0 * width)))
    w = cubic((taps - pos) / width)
    np.add.at(mat[i], np.clip(taps, 0, in_size - 1), w / w.sum())
  mat.setflags(write=False)
  return mat


def _apply(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """(out_h, H) and (out_w, W) weights applied to the rows and columns of (..., H, W, C); float32 result."""
  out = np.einsum("hH,...HWc->...hWc", rows, image, optimize=True)
  return np.einsum("wW,...hWc->...hwc", cols, out, optimize=True).astype(np.float32)


def resize_on_grid(image: np.ndarray, height: int, width: int, step: float) -> np.ndarray:
  """Bicubic resize of (..., H, W, C) to `height` x `width` with output pixel i on input pixel i * step
  (`grid_matrix`), both axes; float32, not clipped."""
  image = np.asarray(image, np.float32)
  if image.ndim < 3:
    raise ValueError(f"expected an image (..., H, W, C), got shape {image.shape}")
  return _apply(image, grid_matrix(image.shape[-3], height, step), grid_matrix(image.shape[-2], width, step))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Antialiased bicubic resize of an image (or a stack of images) to `height` x `width`.

  Args:
    image: float array (..., H, W, C), values in [0, 1] by convention.
    height: output rows, > 0.
    width: output columns, > 0.

  Returns:
    float32 array (..., height, width, C); not clipped (bicubic overshoots slightly at edges).
  """
  image = np.asarray(image, np.float32)
  if image.ndim < 3:
    raise ValueError(f"expected an image (..., H, W, C), got shape {image.shape}")
  return _apply(image, resize_matrix(image.shape[-3], height), resize_matrix(image.shape[-2], width))


def downsample(hr: np.ndarray, scale: float, modcrop: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The SR degradation: mod-crop HR for `scale` (optional), then antialiased bicubic downsampling.

  With `modcrop` (the SR literature's protocol) the HR is cropped at the bottom/right to the size the LR
  corresponds to at `scale`, so the region the LR covers, and with it every coordinate normalised to it,
  changes with the scale. Without it the whole HR is resized to the same floor(H/s) x floor(W/s) LR: the LR
  covers the whole frame at every scale (the effective scale, H / floor(H/s), differs from `scale` by less
  than s / H), so a pixel keeps its coordinate whatever the scale (SR-INR's fitting protocols).

  Args:
    hr: float array (..., H, W, C) in [0, 1].
    scale: SR factor, finite and > 0 (non-integer allowed, see `coords.scaled_size`).
    modcrop: crop the HR to the scale's multiple (True) or keep it whole (False).

  Returns:
    (lr, hr_cropped): lr is (..., floor(H/s), floor(W/s), C) clipped to [0, 1]; hr_cropped is the
    top-left crop of `hr` that the LR corresponds to (all of `hr` without `modcrop`).
  """
  h, w = hr.shape[-3], hr.shape[-2]
  h_lr, w_lr, h_hr, w_hr = coords.scaled_size(h, w, scale)
  hr = np.asarray(hr, np.float32)
  if modcrop:
    hr = hr[..., :h_hr, :w_hr, :]
  return np.clip(resize(hr, h_lr, w_lr), 0.0, 1.0), hr


def _taps(pos, size, renormalize: bool = False):
  """Four bicubic taps around continuous pixel positions `pos`, clamped to [0, size - 1].

  With `renormalize`, taps outside [0, size - 1] get weight 0 and the rest are divided by their sum (Pillow's
  border rule, which `resize` follows) instead of repeating the edge pixel.
  """
  base = jnp.floor(pos)
  offsets = jnp.arange(-1, 3, dtype=pos.dtype)
  idx = base[..., None] + offsets
  weights = cubic(pos[..., None] - idx)
  limit = jnp.asarray(size, jnp.int32)[..., None] - 1
  if renormalize:
    inside = (idx >= 0) & (idx <= limit.astype(idx.dtype))
    weights = jnp.where(inside, weights, 0.0)
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
  idx = jnp.clip(idx.astype(jnp.int32), 0, limit)
  return idx, weights


def sample_bicubic(image: jax.Array, xy: jax.Array, size=None, renormalize: bool = False) -> jax.Array:
  """Bicubic interpolation of one image at continuous points, edges clamped.

  Args:
    image: (h, w, C) array.
    xy: (..., 2) points (x, y) in [-1, 1] image coordinates (pixel centres at -1 + (2i + 1) / w).
    size: optional (h_valid, w_valid) when `image` is padded at the bottom/right; defaults to its shape.
    renormalize: Pillow's border rule (taps outside the image dropped, weights renormalised) instead of
      clamped edges: at the pixel centres of a larger output this equals `resize` upsampling everywhere,
      borders included (`resize` antialiases when downsampling; these point samples never do).

  Returns:
    (..., C) interpolated values.
  """
  h_pad, w_pad = image.shape[0], image.shape[1]
  h, w = (h_pad, w_pad) if size is None else size
  h = jnp.asarray(h, jnp.float32)
  w = jnp.asarray(w, jnp.float32)
  px = (xy[..., 0] + 1.0) * 0.5 * w - 0.5
  py = (xy[..., 1] + 1.0) * 0.5 * h - 0.5
  ix, wx = _taps(px, w, renormalize)
  iy, wy = _taps(py, h, renormalize)
  flat = image.reshape(h_pad * w_pad, -1)
  vals = flat[iy[..., :, None] * w_pad + ix[..., None, :]]  # (..., 4, 4, C)
  return jnp.einsum("...i,...j,...ijc->...c", wy, wx, vals)


# The largest (N, L, k, 4, k, 4, C) block of tap values `sample_patches` gathers at once: a training batch's
# patches (srinr_celeba: 4096 points x 12 levels, 236 MB an image) in one gather, an upscale chunk's (65536
# points x 8 levels, 1.26 GB) tap by tap.
ALL_TAPS_MAX_BYTES = 256 << 20


def patch_steps(shape, size, spacings, k: int):
  """The valid (h, w) of a possibly padded image as float32, and each patch sample's offsets from its centre.

  Args:
    shape: the image's (h_pad, w_pad, ...) shape.
    size: optional (h_valid, w_valid) of a padded image.
    spacings: (L,) sample spacing per level in [-1, 1] units, or (L, 2) spacings along (x, y).
    k: patch size.

  Returns:
    (h, w, step_x, step_y): step_x / step_y (L, k) offsets along x / y in [-1, 1] units.
  """
  h, w = (shape[0], shape[1]) if size is None else size
  offsets = jnp.arange(k, dtype=jnp.float32) - (k - 1) / 2.0
  spacings = jnp.asarray(spacings, jnp.float32)
  if spacings.ndim == 1:
    spacings = jnp.stack([spacings, spacings], axis=-1)
  return (jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32), spacings[:, 0, None] * offsets,
          spacings[:, 1, None] * offsets)


def sample_patches(image: jax.Array, xy: jax.Array, spacings, k: int, size=None,
                   max_block_bytes: int = ALL_TAPS_MAX_BYTES) -> jax.Array:
  """k x k bicubic patches of one image centred on each point, one patch per spacing (level).

  Patch sample (a, b) of level l sits at (x + (b - (k-1)/2) * s_l, y + (a - (k-1)/2) * s_l), with s_l the
  level's spacing in [-1, 1] units (or a spacing per axis). The k x k grid is separable, so the 4 x 4 bicubic
  taps are built per row and per column and only the taps are gathered: no HR-sized image is formed. Two
  evaluations, chosen from the static shapes: while the (N, L, k, 4, k, 4, C) block of every tap value fits in
  `max_block_bytes`, one gather of that block and one contraction (the faster in a CPU train step: one
  gather instead of 16 that XLA does not fuse, 1.7-1.9x the step of `srinr_demo`, BENCHMARKS.md); above it,
  the sum over the 16 taps (i, j) of `wy_i * wx_j * image[iy_i, ix_j]`, each tap gathered at the patch's
  (N, L, k, k, C) shape and accumulated, so that the block (16 times the patches: 1.6 GiB of temporaries for
  65536 points at 4 levels) is never formed (an upscale chunk).

  Args:
    image: (h, w, C) LR image (possibly padded, see `size`).
    xy: (N, 2) centres (x, y) in [-1, 1].
    spacings: (L,) sample spacing per level in [-1, 1] units, or (L, 2) spacings along (x, y).
    k: patch size.
    size: optional (h_valid, w_valid) of a padded image.
    max_block_bytes: the largest all-taps block gathered at once (0: always tap by tap).

  Returns:
    (N, L, k, k, C) patches; axis 2 runs over rows (y), axis 3 over columns (x).
  """
  h_pad, w_pad = image.shape[0], image.shape[1]
  h, w, step_x, step_y = patch_steps(image.shape, size, spacings, k)  # steps (L, k)
  px = ((xy[:, 0, None, None] + step_x) + 1.0) * 0.5 * w - 0.5  # (N, L, k)
  py = ((xy[:, 1, None, None] + step_y) + 1.0) * 0.5 * h - 0.5
  ix, wx = _taps(px, w)  # (N, L, k, 4)
  iy, wy = _taps(py, h)
  flat = image.reshape(h_pad * w_pad, -1)
  block_bytes = ix.shape[0] * ix.shape[1] * (k * 4) ** 2 * flat.shape[1] * flat.dtype.itemsize
  if block_bytes <= max_block_bytes:
    vals = flat[iy[:, :, :, :, None, None] * w_pad + ix[:, :, None, None, :, :]]  # (N, L, k, 4, k, 4, C)
    return jnp.einsum("nlai,nlbj,nlaibjc->nlabc", wy, wx, vals)
  out = None
  for i in range(4):  # rows of taps
    row = None
    for j in range(4):  # columns of taps: (N, L, k, k, C) each
      v = flat[iy[:, :, :, None, i] * w_pad + ix[:, :, None, :, j]] * wx[:, :, None, :, j, None]
      row = v if row is None else row + v
    row = row * wy[:, :, :, None, i, None]
    out = row if out is None else out + row
  return out
