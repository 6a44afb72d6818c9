"""SpyNet (BasicSR's version, as BVSR-IK's `model_KCA.py` carries it) and the resampling ops it shares with BVSR-IK.

Layout NHWC; flows are (N, H, W, 2) in pixels, x (width) first. The ops reproduce PyTorch's float32 arithmetic:
  * `resize_bilinear`: `F.interpolate(mode='bilinear')` without antialias, `align_corners` False (half-pixel
    centres, source index clamped at 0) or True; index and weight arithmetic in float32 as torch's CPU kernel.
  * `flow_warp`: BasicSR's `flow_warp` = `F.grid_sample(bilinear, align_corners=True)` after the official
    normalisation `2 * (grid + flow) / max(W - 1, 1) - 1` (kept, so the float32 rounding matches); padding
    "zeros" (out-of-range corners contribute nothing) or "border" (coordinates clipped to the image).

SpyNet (`SpyNet`): six `BasicModule`s (conv 7x7 8->32->64->32->16->2, ReLU between, bias). Input frames in [0, 1]
are normalised with the ImageNet mean/std in the channel order they come in (BVSR-IK feeds BGR), resized
(bilinear, align_corners=False) to the next multiple of 32, and pooled five times (2x2 average). From the
coarsest level up: the flow is upsampled x2 (bilinear, align_corners=True) and doubled (replicate-padded by one
row/column where the level is odd), `supp` is warped with it (border padding), and the level's module adds a
residual. The flow is resized back and rescaled by w / w32, h / h32. Departure: the coarsest level starts from a
zero flow of its own size (torch upsamples a floor(size/2) zero flow, which fails for 32x32 inputs; where torch
works both are zero). The pretrained weights are BasicSR's `spynet_sintel_final-3d2a1287.pth`
(`inrsr.convert.bvsr_ik.convert_spynet`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr.models.torch_init import torch_bias_init, torch_kernel_init

HIGHEST = jax.lax.Precision.HIGHEST
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv(features: int, kernel_size: int, *, in_features: int, name: str | None = None, use_bias: bool = True,
         groups: int = 1, padding="SAME", stride: int = 1) -> nn.Conv:
  """nn.Conv with PyTorch's default init, zero padding k // 2 (odd k) and HIGHEST precision."""
  fan_in = in_features // groups * kernel_size * kernel_size
  return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride), padding=padding,
                 use_bias=use_bias, feature_group_count=groups, precision=HIGHEST, kernel_init=torch_kernel_init,
                 bias_init=torch_bias_init(fan_in), name=name)


def _linear_indices(in_size: int, out_size: int, align_corners: bool, scale: float | None = None):
  """Torch's `compute_indices_weights_linear` in float32: (i0, i1, w0, w1) as NumPy arrays of length out_size."""
  f32 = np.float32
  if align_corners:
    s = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
    src = s * np.arange(out_size, dtype=f32)
  else:
    s = f32(1.0 / scale) if scale else f32(in_size) / f32(out_size)
    src = s * (np.arange(out_size, dtype=f32) + f32(0.5)) - f32(0.5)
    src = np.maximum(src, f32(0))
  i0 = src.astype(np.int64)
  w1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
  w0 = (f32(1) - w1).astype(f32)
  i1 = np.minimum(i0 + 1, in_size - 1)
  return i0, i1, w0, w1


def resize_bilinear(x: jax.Array, size: tuple[int, int], *, align_corners: bool = False,
                    scale_factor: float | None = None) -> jax.Array:
  """`F.interpolate(x, size, mode='bilinear', align_corners=...)` for NHWC x (no antialias).

  `scale_factor` (when torch is given one, align_corners False) sets the source scale to 1 / scale_factor.
  """
  h, w = x.shape[1:3]
  y0, y1, wy0, wy1 = _linear_indices(h, size[0], align_corners, scale_factor)
  x0, x1, wx0, wx1 = _linear_indices(w, size[1], align_corners, scale_factor)

  def rows(idx):
    r = jnp.take(x, jnp.asarray(idx), axis=1)
    a = jnp.take(r, jnp.asarray(x0), axis=2)
    b = jnp.take(r, jnp.asarray(x1), axis=2)
    return a * jnp.asarray(wx0)[:, None] + b * jnp.asarray(wx1)[:, None]

  return rows(y0) * jnp.asarray(wy0)[:, None, None] + rows(y1) * jnp.asarray(wy1)[:, None, None]


def flow_warp(x: jax.Array, flow: jax.Array, padding_mode: str = "zeros") -> jax.Array:
  """BasicSR `flow_warp`: bilinear `grid_sample` of x (N, H, W, C) at pixel + flow, align_corners=True.

  Args:
    x: (N, H, W, C).
    flow: (N, H, W, 2) displacement in pixels, (x, y).
    padding_mode: "zeros" or "border".
  """
  if padding_mode not in ("zeros", "border"):
    raise ValueError(f"padding_mode={padding_mode!r} must be 'zeros' or 'border'")
  n, h, w, c = x.shape
  gy, gx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  vx = gx + flow[..., 0]
  vy = gy + flow[..., 1]
  # The official normalisation to [-1, 1] and grid_sample's unnormalisation, in float32 as torch does them.
  nx = 2.0 * vx / max(w - 1, 1) - 1.0
  ny = 2.0 * vy / max(h - 1, 1) - 1.0
  ix = (nx + 1.0) * jnp.float32((w - 1) / 2)
  iy = (ny + 1.0) * jnp.float32((h - 1) / 2)
  if padding_mode == "border":
    ix = jnp.clip(ix, 0.0, w - 1.0)
    iy = jnp.clip(iy, 0.0, h - 1.0)
  ix0 = jnp.floor(ix)
  iy0 = jnp.floor(iy)
  we = ix - ix0  # distance to the west corner
  ea = 1.0 - we
  no = iy - iy0
  so = 1.0 - no
  flat = x.reshape(n, h * w, c)

  def corner(yy, xx):
    valid = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
    xi = jnp.clip(xx, 0, w - 1).astype(jnp.int32)
    yi = jnp.clip(yy, 0, h - 1).astype(jnp.int32)
    v = jnp.take_along_axis(flat, (yi * w + xi).reshape(n, h * w, 1), axis=1).reshape(n, h, w, c)
    return jnp.where(valid[..., None], v, 0.0)

  nw = corner(iy0, ix0)
  ne = corner(iy0, ix0 + 1)
  sw = corner(iy0 + 1, ix0)
  se = corner(iy0 + 1, ix0 + 1)
  return (nw * (so * ea)[..., None] + ne * (so * we)[..., None] + sw * (no * ea)[..., None]
          + se * (no * we)[..., None])


def avg_pool2(x: jax.Array) -> jax.Array:
  """`F.avg_pool2d(kernel_size=2, stride=2)` (no padding; an odd last row/column is dropped)."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).sum(axis=(2, 4)) / 4.0


class BasicModule(nn.Module):
  """One SpyNet level: conv 7x7 8->32->64->32->16->2 with ReLU between."""

  @nn.compact
  def __call__(self, x):
    feats = (32, 64, 32, 16, 2)
    ins = (8,) + feats[:-1]
    for j, (f, i) in enumerate(zip(feats, ins)):
      x = conv(f, 7, in_features=i, name=f"conv_{j}")(x)
      if j < len(feats) - 1:
        x = nn.relu(x)
    return x


class SpyNet(nn.Module):
  """SpyNet flow from `ref` to `supp`: (N, H, W, 3) each in [0, 1] -> (N, H, W, 2) in pixels (x, y).

  Sows each level's residual flow (the module output before adding the upsampled flow) as
  `intermediates/level_{l}` (level 0 is the coarsest).
  """

  num_levels: int = 6

  @nn.compact
  def __call__(self, ref: jax.Array, supp: jax.Array) -> jax.Array:
    if ref.shape != supp.shape:
      raise ValueError(f"ref and supp must have the same shape, got {ref.shape} and {supp.shape}")
    n, h, w, _ = ref.shape
    h32, w32 = -(-h // 32) * 32, -(-w // 32) * 32
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    ref = (resize_bilinear(ref, (h32, w32)) - mean) / std
    supp = (resize_bilinear(supp, (h32, w32)) - mean) / std
    refs, supps = [ref], [supp]
    for _ in range(self.num_levels - 1):
      refs.insert(0, avg_pool2(refs[0]))
      supps.insert(0, avg_pool2(supps[0]))
    flow = None
    for level in range(self.num_levels):
      lh, lw = refs[level].shape[1:3]
      if flow is None:
        up = jnp.zeros((n, lh, lw, 2), jnp.float32)
      else:
        up = resize_bilinear(flow, (flow.shape[1] * 2, flow.shape[2] * 2), align_corners=True) * 2.0
        if up.shape[1] != lh:
          up = jnp.pad(up, ((0, 0), (0, 1), (0, 0), (0, 0)), mode="edge")
        if up.shape[2] != lw:
          up = jnp.pad(up, ((0, 0), (0, 0), (0, 1), (0, 0)), mode="edge")
      warped = flow_warp(supps[level], up, padding_mode="border")
      res = BasicModule(name=f"basic_module_{level}")(jnp.concatenate([refs[level], warped, up], axis=-1))
      self.sow("intermediates", f"level_{level}", res)
      flow = res + up
    flow = resize_bilinear(flow, (h, w))
    return flow * jnp.asarray([np.float32(w / w32), np.float32(h / h32)], jnp.float32)
