"""BVSR-IK's building blocks: residual blocks, RT U-Net, implicit kernel dictionary, ISC (SPCNet), ITA (INRAlign)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr.models import spynet as spynet_lib
from inrsr.models.spynet import HIGHEST, conv
from inrsr.models.torch_init import torch_bias_init, torch_kernel_init


def lrelu(x):
  """The official LeakyReLU(0.1)."""
  return nn.leaky_relu(x, 0.1)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
  """torch `pixel_shuffle` in NHWC: channel c * r^2 + i * r + j -> pixel (h * r + i, w * r + j) of channel c."""
  n, h, w, crr = x.shape
  c = crr // (r * r)
  x = x.reshape(n, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(n, h * r, w * r, c)


def grid_bilinear(x: jax.Array, scale: int) -> jax.Array:
  """Bilinear x`scale` of NHWC x with LR pixel j at HR pixel scale * j (the `[::scale]` grid), edges clamped."""

  def axis_weights(n):
    pos = np.arange(n * scale) / scale
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (pos - i0).astype(np.float32)

  y0, y1, fy = axis_weights(x.shape[1])
  x0, x1, fx = axis_weights(x.shape[2])
  rows = x[:, y0] * (1.0 - fy)[:, None, None] + x[:, y1] * fy[:, None, None]
  return rows[:, :, x0] * (1.0 - fx)[:, None] + rows[:, :, x1] * fx[:, None]


def _reflect_pad(x: jax.Array, p: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect") if p else x


_DN = ("NHWC", "HWIO", "NHWC")


def _depthwise_lax(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)), feature_group_count=x.shape[-1],
                                      dimension_numbers=_DN, precision=HIGHEST)


def _depthwise_taps(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  """`_depthwise_lax` as a sum over the s x s taps of the shifted input times the tap's weights (element-wise).

  XLA:CPU runs grouped convolutions far below its dense rate, and their gradients slower still; the taps fuse into
  one element-wise loop and differentiate as such (the same sums in another order).
  """
  _, h, w, c = x.shape
  s = kernel.shape[0]
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  m = kernel.shape[-1] // c
  if m > 1:  # output channel c * m + j filters input channel c
    xp = jnp.repeat(xp, m, axis=-1)
  hh, ww = h + 2 * pad - s + 1, w + 2 * pad - s + 1
  out = None
  for i in range(s):
    for j in range(s):
      term = xp[:, i:i + hh, j:j + ww] * kernel[i, j, 0]
      out = term if out is None else out + term
  return out


@functools.partial(jax.jit, static_argnums=2)
def depthwise_conv(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  """Depthwise conv (torch groups = C): x (B, H, W, C), kernel (s, s, 1, C * m), zero padding `pad`.

  Output channel c * m + j filters input channel c. XLA's grouped convolution on GPU and TPU; on CPU a sum over
  the taps (`_depthwise_taps`), because XLA:CPU's grouped convolution runs 3-15x slower than that sum on BVSR-IK's
  maps and its gradients 2-3x slower than the sum's (2 cores, 2026-12-07; the sums agree to float32 rounding).
  The branch is chosen for the platform the program is compiled for (`lax.platform_dependent`), so a program
  compiled ahead of time for a GPU or TPU on a CPU host gets the grouped convolution. Jitted, so that a model's
  many calls of one shape are traced and lowered once (both branches each time otherwise: a third of the tracing
  and lowering of a BVSR-IK propagation step).
  """
  return jax.lax.platform_dependent(x, kernel, cpu=lambda x, k: _depthwise_taps(x, k, pad),
                                    default=lambda x, k: _depthwise_lax(x, k, pad))


class DepthwiseConv(nn.Module):
  """torch Conv2d(C, C * m, k, padding=k // 2, groups=C, bias=False) via `depthwise_conv`."""

  features: int
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", torch_kernel_init, (k, k, 1, self.features))
    return depthwise_conv(x, kernel, k // 2)


class ConvTranspose4x4(nn.Module):
  """torch ConvTranspose2d(k=4, stride=2, padding=1, bias=False): exactly 2x. kernel[a, b, i, o] = W[i, o, a, b]."""

  features: int

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    # torch's fan_in for a ConvTranspose weight (in, out, kh, kw) is out * kh * kw.
    bound = 1.0 / np.sqrt(self.features * 16)
    kernel = self.param("kernel", lambda k, s: jax.random.uniform(k, s, jnp.float32, -bound, bound),
                        (4, 4, cin, self.features))
    return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)


class ResBlock(nn.Module):
  """ResidualBlockNoBN: x + conv(relu(conv(x))), 3x3 with bias."""

  features: int

  @nn.compact
  def __call__(self, x):
    y = conv(self.features, 3, in_features=self.features, name="conv1")(x)
    y = conv(self.features, 3, in_features=self.features, name="conv2")(nn.relu(y))
    return x + y


class ResBlocksInputConv(nn.Module):
  """ResidualBlocksWithInputConv: conv3x3 (bias) + LeakyReLU(0.1) + num_blocks ResBlocks."""

  features: int
  num_blocks: int

  @nn.compact
  def __call__(self, x):
    x = lrelu(conv(self.features, 3, in_features=x.shape[-1], name="conv_in")(x))
    for i in range(self.num_blocks):
      x = ResBlock(self.features, name=f"block_{i}")(x)
    return x


def _l2_normalize(x: jax.Array) -> jax.Array:
  """torch F.normalize(x, dim=-1): x / max(||x||, 1e-12), with torch's zero gradient through a zero norm."""
  sumsq = jnp.sum(x * x, axis=-1, keepdims=True)
  positive = sumsq > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sumsq, 1.0)), 0.0)
  return x / jnp.maximum(norm, 1e-12)


class RecurrAttention(nn.Module):
  """Restormer transposed attention over channels with the hidden state added to the q, k, v projection."""

  dim: int
  num_heads: int = 1

  @nn.compact
  def __call__(self, f, h):
    d, heads = self.dim, self.num_heads
    temperature = self.param("temperature", nn.initializers.ones, (heads,))
    qkv = DepthwiseConv(3 * d, name="to_qkv")(f) + DepthwiseConv(3 * d, name="to_qkv_h")(h)
    b, hh, ww, _ = f.shape

    def heads_first(t):  # 'b (head c) h w -> b head c (h w)'
      return t.reshape(b, hh * ww, heads, d // heads).transpose(0, 2, 3, 1)

    q, k, v = (heads_first(t) for t in jnp.split(qkv, 3, axis=-1))
    q, k = _l2_normalize(q), _l2_normalize(k)
    attn = jnp.einsum("bhcn,bhdn->bhcd", q, k, precision=HIGHEST) * temperature[None, :, None, None]
    attn = jax.nn.softmax(attn, axis=-1)
    out = jnp.einsum("bhcd,bhdn->bhcn", attn, v, precision=HIGHEST)
    out = out.transpose(0, 3, 1, 2).reshape(b, hh, ww, d)
    return conv(d, 1, in_features=d, use_bias=False, name="project_out")(out)


class FeedForward(nn.Module):
  """Restormer GDFN: 1x1 -> depthwise 3x3 -> gelu(x1) * x2 -> 1x1, no bias."""

  dim: int
  expansion: float = 0.5

  @nn.compact
  def __call__(self, x):
    hidden = int(self.dim * self.expansion)
    x = conv(2 * hidden, 1, in_features=self.dim, use_bias=False, name="project_in")(x)
    x = DepthwiseConv(2 * hidden, name="dwconv")(x)
    x1, x2 = jnp.split(x, 2, axis=-1)
    x = jax.nn.gelu(x1, approximate=False) * x2
    return conv(self.dim, 1, in_features=hidden, use_bias=False, name="project_out")(x)


class RTBlock(nn.Module):
  """Recurr_TransBlock: (F, h) -> (F1 + FFN(F1), h + A) with A = attention(F, h), F1 = F + A."""

  dim: int
  num_heads: int = 1
  ffn_expansion: float = 0.5

  @nn.compact
  def __call__(self, f, h):
    a = RecurrAttention(self.dim, self.num_heads, name="recurr_attn")(f, h)
    f1 = f + a
    return f1 + FeedForward(self.dim, self.ffn_expansion, name="ffn1")(f1), a + h


class UNet(nn.Module):
  """UNet_Spatial / UNet_Tempal (identical code): two-level RT-block U-Net over (x1, x2); returns (N, H, W, base)."""

  base: int
  num_res: int = 1
  num_heads: int = 1
  ffn_expansion: float = 0.5

  @nn.compact
  def __call__(self, x1, x2):
    b2 = 2 * self.base

    def basic(x, k, stride, name):
      y = conv(b2, k, in_features=x.shape[-1], use_bias=False, padding="VALID", stride=stride,
               name=name)(_reflect_pad(x, k // 2))
      return nn.relu(y)

    def split(x):
      return x[..., :self.base], x[..., self.base:]

    def blocks(z, h, prefix):
      for j in range(self.num_res):
        z, h = RTBlock(self.base, self.num_heads, self.ffn_expansion, name=f"{prefix}_{j}")(z, h)
      return z, h

    def up(x, name):
      return nn.relu(ConvTranspose4x4(b2, name=name)(x))

    z, h = split(basic(jnp.concatenate([x1, x2], -1), 1, 1, "feat_extract_0"))
    res1, hid1 = blocks(z, h, "Encoder_0")
    z, h = split(basic(jnp.concatenate([res1, hid1], -1), 3, 2, "feat_extract_1"))
    res2, hid2 = blocks(z, h, "Encoder_1")
    z, h = split(basic(jnp.concatenate([res2, hid2], -1), 3, 2, "feat_extract_2"))
    _, hid3 = blocks(z, h, "Encoder_2")  # the code discards this F output and goes on from its input z
    z, h = split(up(jnp.concatenate([z, hid3], -1), "up1"))
    z, h = split(basic(jnp.concatenate([z + res2, h], -1), 1, 1, "feat_extract_3"))
    z, h = blocks(z, h + hid2, "Decoder_0")
    z, h = split(up(jnp.concatenate([z, h], -1), "up2"))
    z, h = split(basic(jnp.concatenate([z + res1, h], -1), 1, 1, "feat_extract_4"))
    z, _ = blocks(z, h + hid1, "Decoder_1")
    return z


def kernel_sizes(max_kernel_size: int) -> tuple[int, ...]:
  """The dictionary's odd sizes 3, 5, ..., (the code's `2 * (i + 1) + 1` for i < max_kernel_size // 2)."""
  return tuple(2 * (i + 1) + 1 for i in range(max_kernel_size // 2))


def atom_frequencies(n: int, w_min: float, w_max: float) -> list[float]:
  """The atoms' initial frequencies, torch.linspace(w_min, w_max, n) (2, 4, ..., 16 for 8 atoms)."""
  return [w_min + (w_max - w_min) / (n - 1) * i for i in range(n)] if n > 1 else [w_min]


def _grid(s: int) -> jax.Array:
  """(s * s, 2) 'ij' coordinates over [0, 1]^2 (the code's `shape2coordinate`)."""
  t = jnp.arange(s, dtype=jnp.float32) / jnp.float32(s - 1)
  gi, gj = jnp.meshgrid(t, t, indexing="ij")
  return jnp.stack([gi.ravel(), gj.ravel()], -1)


class KernelINR(nn.Module):
  """One atom: Linear(2, hidden) -> sin(w x) -> Linear(hidden, hidden) -> sin(w x) -> Linear(hidden, 1, no bias)."""

  hidden: int
  w_init: float

  @nn.compact
  def __call__(self, coords):
    w0 = self.param("w0", lambda k, s: jnp.full(s, self.w_init, jnp.float32), ())

    def dense(f, fan_in, name, bias=True):
      return nn.Dense(f, use_bias=bias, precision=HIGHEST, kernel_init=torch_kernel_init,
                      bias_init=torch_bias_init(fan_in), name=name)

    x = jnp.sin(w0 * dense(self.hidden, 2, "dense_0")(coords))
    x = jnp.sin(w0 * dense(self.hidden, self.hidden, "dense_1")(x))
    return dense(1, self.hidden, "dense_2", bias=False)(x)[..., 0]


class KernelDictionary(nn.Module):
  """The implicit kernel dictionary: `__call__()` -> one (N, s, s) array of masked atoms per size s."""

  num_atoms: int = 8
  hidden: int = 360
  max_kernel_size: int = 13
  w_min: float = 2.0
  w_max: float = 16.0

  def setup(self):
    w = atom_frequencies(self.num_atoms, self.w_min, self.w_max)
    self.atoms = [KernelINR(self.hidden, float(w[i])) for i in range(self.num_atoms)]

  def raw(self) -> list[jax.Array]:
    """The atoms before the 9 / s^2 mask, one (N, s, s) per size."""
    sizes = kernel_sizes(self.max_kernel_size)
    coords = jnp.concatenate([_grid(s) for s in sizes], 0)
    values = jnp.stack([atom(coords) for atom in self.atoms], 0)  # (N, sum s^2)
    out, start = [], 0
    for s in sizes:
      out.append(values[:, start:start + s * s].reshape(-1, s, s))
      start += s * s
    return out

  def __call__(self) -> list[jax.Array]:
    return [a * (jnp.float32(9.0) / jnp.float32(a.shape[-1] ** 2)) for a in self.raw()]


def _padded_atoms(atoms: Sequence[jax.Array]) -> jax.Array:
  """Every size's atoms zero-padded to the largest and stacked: (R' * N, S, S), atom r * N + n."""
  big = max(a.shape[-1] for a in atoms)
  return jnp.concatenate([jnp.pad(a, ((0, 0),) + (((big - a.shape[-1]) // 2,) * 2,) * 2) for a in atoms], 0)


def filter_with_atoms(x: jax.Array, atoms: Sequence[jax.Array]) -> jax.Array:
  """Depthwise atom filtering: (B, H, W, C) -> maps (B, H, W, R - 1, C * N) of groups 1..R-1, channel c * N + n.

  The code's group 0 (size 1) is all zeros and is left out here (`with_zero_group` puts it back for the hooks).
  Every channel meets the same atoms, so the channels go to the batch axis and one ordinary convolution (1 input,
  an output per size and atom) applies every atom of every size at once, each zero-padded to the largest size
  (same sums up to float32 rounding). On CPU that takes 1.7 times less time than one grouped convolution per
  size, which XLA:CPU runs at a fraction of its dense rate (CPU time 0.13 s against 0.21-0.23 s on a 64 x 64 x 64
  map; a 5-frame clip makes 13 such calls).
  """
  b, h, w, c = x.shape
  n = atoms[0].shape[0]
  kernel = _padded_atoms(atoms)
  big = kernel.shape[-1]
  y = jax.lax.conv_general_dilated(x.transpose(0, 3, 1, 2).reshape(b * c, h, w, 1),
                                   kernel.transpose(1, 2, 0)[:, :, None, :], (1, 1), ((big // 2, big // 2),) * 2,
                                   dimension_numbers=_DN, precision=HIGHEST)  # (B * C, H, W, R' * N)
  return y.reshape(b, c, h, w, len(atoms), n).transpose(0, 2, 3, 4, 1, 5).reshape(b, h, w, len(atoms), c * n)


def with_zero_group(maps: jax.Array) -> jax.Array:
  """`filter_with_atoms`'s maps with the code's all-zero group 0 in front: (B, H, W, R, C * N), as its hook."""
  return jnp.concatenate([jnp.zeros(maps.shape[:3] + (1,) + maps.shape[4:], maps.dtype), maps], 3)


def _combine_rows(products: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """products @ the last rows of `kernel` (R * C * N, K), those the products meet (group 0's first rows skipped)."""
  return jnp.dot(products, kernel[kernel.shape[0] - products.shape[-1]:], precision=HIGHEST) + bias


class Combiner(nn.Module):
  """The code's 1x1 `sum` conv over the R * C * N products, its rows of group 0 skipped (they meet zeros).

  Parameters `kernel` (1, 1, R * C * N, features) and `bias`, as the nn.Conv they replace (same names, shapes
  and init); the products of group 0 are zero in the code, so their rows add nothing and are not multiplied.
  `__call__` combines given products; `filtered` filters and combines in one pass (`filter_and_combine`).
  """

  features: int
  in_features: int

  def setup(self):
    self.kernel = self.param("kernel", torch_kernel_init, (1, 1, self.in_features, self.features))
    self.bias = self.param("bias", torch_bias_init(self.in_features), (self.features,))

  def __call__(self, products: jax.Array) -> jax.Array:
    return _combine_rows(products, self.kernel[0, 0], self.bias)

  def filtered(self, x: jax.Array, atoms: Sequence[jax.Array], mu: jax.Array, omega: jax.Array) -> jax.Array:
    """`combine(filter_with_atoms(x, atoms), mu, omega, self)` without the maps held whole."""
    return filter_and_combine(x, atoms, mu, omega, self.kernel[0, 0], self.bias)


def combine(maps: jax.Array, mu: jax.Array, omega: jax.Array, combiner: nn.Module) -> jax.Array:
  """combiner(flatten(maps * mu * repeat_C(omega))) as the code, group 0 left out: channel r * C * N + c * N + n."""
  b, h, w, r, cn = maps.shape
  c = cn // omega.shape[-1]
  prod = maps * mu[..., 1:, None] * jnp.tile(omega, (1, 1, 1, c))[..., None, :]
  return combiner(prod.reshape(b, h, w, r * cn))


FILTER_BLOCK_BYTES = 16 * 2**20
"""Bytes of filtered maps `filter_and_combine` makes at a time on CPU: 16 rows of a 64 x 64 x 64 ITA map. Blocks
of 8, 16, 32 and 64 rows (6, 13, 25, 50 MB) took 98, 85, 101 and 151 ms against 143-157 ms for the unfused
filtering and combination (2 cores, 2026-12-08, BENCHMARKS.md)."""


def _filter_and_combine_rows(x, atoms, mu, omega, kernel, bias, rows: int) -> jax.Array:
  """`filter_and_combine` in blocks of `rows` output rows (the last block zero-padded), one block at a time."""
  b, h, w, c = x.shape
  kern = _padded_atoms(atoms)
  big, k = kern.shape[-1], kern.shape[0]
  n = omega.shape[-1]
  r = k // n
  blocks = -(-h // rows)
  extra = blocks * rows - h
  p = big // 2
  xt = jnp.pad(x, ((0, 0), (p, p + extra), (p, p), (0, 0))).transpose(0, 3, 1, 2).reshape(b * c, -1, w + 2 * p, 1)
  coef = (mu[..., 1:, None] * omega[..., None, :]).reshape(b, h, w, k)  # row r * N + n
  coef = jnp.pad(coef, ((0, 0), (0, extra), (0, 0), (0, 0)))
  weights = kernel[-r * c * n:].reshape(r, c, n, -1).transpose(1, 0, 2, 3).reshape(c, k, -1)  # [c, r * N + n]
  rhs = kern.transpose(1, 2, 0)[:, :, None, :]

  def block(i):
    xb = jax.lax.dynamic_slice_in_dim(xt, i * rows, rows + 2 * p, 1)
    maps = jax.lax.conv_general_dilated(xb, rhs, (1, 1), "VALID", dimension_numbers=_DN, precision=HIGHEST)
    maps = maps.reshape(b, c, rows, w, k) * jax.lax.dynamic_slice_in_dim(coef, i * rows, rows, 1)[:, None]
    return jnp.einsum("bchwk,cko->bhwo", maps, weights, precision=HIGHEST)

  out = jax.lax.map(block, jnp.arange(blocks)) if blocks > 1 else block(0)[None]
  return out.transpose(1, 0, 2, 3, 4).reshape(b, blocks * rows, w, -1)[:, :h] + bias


def _unfused(x, atoms, mu, omega, kernel, bias) -> jax.Array:
  """`combine(filter_with_atoms(...))` with the combiner's rows and bias given."""
  return combine(filter_with_atoms(x, atoms), mu, omega, lambda products: _combine_rows(products, kernel, bias))


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _blocks_forward(x, atoms, mu, omega, kernel, bias, rows: int) -> jax.Array:
  """`_filter_and_combine_rows` whose gradients are the unfused form's: autodiff through the blocks' loop took 4
  times as long (forward and gradients 3.2 s against 0.78 s on an ITA call, 2 cores)."""
  return _filter_and_combine_rows(x, atoms, mu, omega, kernel, bias, rows)


def _blocks_forward_fwd(x, atoms, mu, omega, kernel, bias, rows):
  del rows
  return jax.vjp(_unfused, x, atoms, mu, omega, kernel, bias)


def _blocks_forward_bwd(rows, vjp, g):
  del rows
  return vjp(g)


_blocks_forward.defvjp(_blocks_forward_fwd, _blocks_forward_bwd)


def filter_and_combine(x: jax.Array, atoms: Sequence[jax.Array], mu: jax.Array, omega: jax.Array,
                       kernel: jax.Array, bias: jax.Array, block_bytes: int | None = None) -> jax.Array:
  """The kernel branch's correction, `combine(filter_with_atoms(x, atoms), mu, omega, combiner)`, in one pass.

  Each channel is filtered by every atom (zero-padded to the largest size, one convolution with the channels as
  its batch, as `filter_with_atoms`), each map weighted by its size's mu and its atom's omega, and the products
  contracted with the combiner's rows put in the maps' order (channel, size, atom), so neither the maps nor the
  products are transposed. On CPU the rows go in blocks of about `FILTER_BLOCK_BYTES` of maps (`lax.map`), so
  the whole maps (50 MB for an ITA call on 64 x 64) never exist: in blocks the filtering, products and contraction
  take 0.55-0.6 of the time they take whole (BENCHMARKS.md); elsewhere one block. The same products summed in
  another order.
  Under differentiation on CPU the forward and the gradients are the unfused form's (`_blocks_forward`).

  Args:
    x: (B, H, W, C) maps to filter.
    atoms: one (N, s, s) array of atoms per size s (groups 1..R-1).
    mu: (B, H, W, R) size weights (softmax over the R groups, group 0 included).
    omega: (B, H, W, N) atom weights.
    kernel: (R * C * N, K) the combiner's rows (its group 0 rows first, not used), bias: (K,).
    block_bytes: the maps' bytes per block on CPU (default `FILTER_BLOCK_BYTES`).

  Returns:
    (B, H, W, K).
  """
  b, h, w, c = x.shape
  row_bytes = b * c * w * sum(a.shape[0] for a in atoms) * 4
  rows = max(1, min(h, (block_bytes or FILTER_BLOCK_BYTES) // row_bytes))
  rows = -(-h // -(-h // rows))  # as many rows in each block as the count of blocks allows
  args = (x, list(atoms), mu, omega, kernel, bias)
  return jax.lax.platform_dependent(*args, cpu=lambda *a: _blocks_forward(*a, rows),
                                    default=functools.partial(_filter_and_combine_rows, rows=h))


def _setup_kernel_branch(module: nn.Module, base: int, channels: int) -> None:
  """The submodules SPCNet and INRAlign share (called from their `setup`; names as the official code's).

  Two U-Nets (atom choice and scale choice) on `base` channels, their 3x3 heads, the implicit kernel dictionary
  and the 1x1 combiner over the R * N * `channels` filtered maps.
  """
  groups = module.max_kernel_size // 2 + 1
  unet = dict(base=base, num_res=module.unet_num_res, num_heads=module.num_heads,
              ffn_expansion=module.ffn_expansion)
  module.unet_basis_select = UNet(**unet)
  module.unet_scale_select = UNet(**unet)
  module.scale_select = conv(groups, 3, in_features=base)
  module.basis_select = conv(module.num_atoms, 3, in_features=base)
  module.inr_conv = KernelDictionary(module.num_atoms, module.inr_hidden, module.max_kernel_size, module.w_min,
                                     module.w_max)
  module.sum = Combiner(channels, groups * module.num_atoms * channels)


def _kernel_branch(module: nn.Module, current, hidden, x, atoms, maps_hook: bool = False) -> tuple[jax.Array, dict]:
  """x plus its atom-filtered correction, the coefficients predicted from (current, hidden) by the U-Nets.

  The filtering and combination go in one pass (`Combiner.filtered`); with `maps_hook` the filtered maps are made
  whole and combined as in the code, for the `inr_conv` hook.

  Returns:
    (output, {"unet_basis_select", "unet_scale_select", "scale_select", "basis_select", "sum"} and, with
    `maps_hook`, "inr_conv").
  """
  ub = module.unet_basis_select(current, hidden)
  us = module.unet_scale_select(current, hidden)
  logits = module.scale_select(us)
  omega = module.basis_select(ub)
  mu = jax.nn.softmax(logits, axis=-1)
  hooks = {"unet_basis_select": ub, "unet_scale_select": us, "scale_select": logits, "basis_select": omega}
  if maps_hook:
    maps = filter_with_atoms(x, atoms)
    combined = combine(maps, mu, omega, module.sum)
    hooks["inr_conv"] = with_zero_group(maps)
  else:
    combined = module.sum.filtered(x, atoms, mu, omega)
  return combined + x, {**hooks, "sum": combined}


class KernelBranchModule(nn.Module):
  """The fields SPCNet and INRAlign share (their kernel branch's U-Nets and dictionary), and the dictionary."""

  unet_num_res: int = 1
  num_heads: int = 1
  ffn_expansion: float = 0.5
  num_atoms: int = 8
  inr_hidden: int = 360
  max_kernel_size: int = 13
  w_min: float = 2.0
  w_max: float = 16.0

  def dictionary(self) -> list[jax.Array]:
    """The kernel dictionary's masked atoms, one (N, s, s) per size (set up by `_setup_kernel_branch`)."""
    return self.inr_conv()


def kernel_branch_fields(source) -> dict:
  """`KernelBranchModule`'s fields read off `source` (KCANet holds them under the same names), as keywords."""
  names = [f.name for f in dataclasses.fields(KernelBranchModule) if f.name not in ("parent", "name")]
  return {n: getattr(source, n) for n in names}


class SPCNet(KernelBranchModule):
  """ISC: (frames (B, H, W, 3), atoms) -> (corrected frames I^, features (B, H, W, channels))."""

  channels: int = 16
  num_blocks: int = 5
  unet_base: int = 16
  in_channels: int = 3

  def setup(self):
    self.feat_ext = ResBlocksInputConv(self.channels, self.num_blocks)
    _setup_kernel_branch(self, self.unet_base, self.in_channels)

  def __call__(self, x, atoms=None):
    if atoms is None:
      atoms = self.inr_conv()
    feat = self.feat_ext(x)
    out, hooks = _kernel_branch(self, feat, feat, x, atoms, maps_hook=self.is_mutable_collection("intermediates"))
    for k, v in {"feat_ext": feat, **hooks, "out": out}.items():
      self.sow("intermediates", f"hook_{k}", v)
    return out, feat


class INRAlign(KernelBranchModule):
  """ITA: (lr_feat, previous feature, flow, atoms) -> aligned feature (B, H, W, channels)."""

  channels: int = 64
  base: int = 32
  num_blocks: int = 3

  def setup(self):
    self.fusion1 = ResBlocksInputConv(self.base, self.num_blocks)
    self.fusion2 = ResBlocksInputConv(self.base, self.num_blocks)
    _setup_kernel_branch(self, self.base, self.channels)

  def __call__(self, lr_feat, feat_prev, flow, atoms=None, return_hooks: bool = False):
    """Aligned feature; with `return_hooks`, (feature, dict of intermediate values) (no sowing: it runs in a scan)."""
    if atoms is None:
      atoms = self.inr_conv()
    x_w = spynet_lib.flow_warp(feat_prev, flow, padding_mode="zeros")
    hid = self.fusion1(x_w)
    cur = self.fusion2(lr_feat)
    out, hooks = _kernel_branch(self, cur, hid, x_w, atoms)
    if not return_hooks:
      return out
    hooks = {k: v for k, v in hooks.items() if k != "sum"}  # not kept through the scan
    return out, {"warped": x_w, "fusion1": hid, "fusion2": cur, **hooks, "out": out}
