"""HIIF: hierarchical encoding based implicit image function (Jiang et al., CVPR 2025), EDSR-baseline encoder.

Follows the code of `hello-jinwoo/HIIF` (`models/hiif.py` @ e29d95d, `test.py` @ 24e2351), the only HIIF code
found; facts in `../shared/baselines.md` §4. Where the code and the paper (`../shared/papers/001_*.txt`)
differ, this module follows the code:

  * Linear attention: the code applies LayerNorm (over each head's channels) to K and V; the paper says K and
    Q. The code computes `q @ (k^T v) / N` (no softmax, no sqrt); the paper writes `V (K^T Q) / sqrt(HW)`.
  * The attention output is `x + proj2(gelu(proj1(attn + x)))`: the outer residual is the block input x.
  * The paper's conv "C_enc -> C" after the encoder is the code's `freq` (a plain 3x3 conv, despite its name).
  * Implicit aggregation: each of the 4 nearest features is multiplied by its normalised (diagonally swapped,
    as in LIIF) area weight and the 4 are concatenated, with the rel_cell, as the first MLP's input; the
    relative coordinate itself is not an MLP input. Relative coordinates use (coord - centre) * (h/2, w/2),
    i.e. 1 unit = 1 LR pixel (LIIF uses 2 units per pixel).
  * Hierarchical code of level n (S = 2): `floor(clip(local - 1e-9, 0, 1) * 2^(n+1)) mod 2` for (y, x),
    where `local` is the (-1, -1)-shifted sample's relative coordinate where it is > 0, else `r - rel` with
    r = (1/h, 1/w) in normalised units (a mixed-unit branch of the code, reached at clamped borders only).
  * Decoder: 6 `MLP_with_shortcut` layers (LayerNorm, Linear -> 256, exact GELU, Linear), each fed the
    previous output concatenated with its level's 2 hierarchical bits; the two attention blocks follow the first
    layer. The hidden width of those MLPs is 256 whatever `hidden_dim` is (`mlp_hidden`). Their shortcut is
    added only when input and output widths agree, which never happens in the official sizes.
  * The output adds a bilinear sample (border padding, align_corners=False) of the normalised LR.

Behaviour a user must know:
  * **The attention mixes all Q queries of one `query` call** (its k^T v is averaged over them), exactly as
    the official code mixes every query of the chunk it is given. Outputs therefore depend on how queries are
    chunked. The official test (`batched_predict_fast`) passes the HR grid in chunks of whole rows with
    `eval_bsize` rows (the fast configs use a size above any H: one chunk per image), and training passes the
    2304 sampled queries of a patch together. `query(..., query_mask=m)` excludes masked-out (padding)
    queries from the average, so a chunk may be padded to a fixed size without changing the valid outputs.
    `query_global` computes the one-chunk result of a whole image in bounded memory: the attention statistics
    are sums over queries, accumulated chunk by chunk in one pass per attention block before a decoding pass.
  * Cells: the official code takes one cell per image, (B, 2). Here `cells` may be (B, 2) or (B, Q, 2); a
    per-query cell is used per query, which equals the official result whenever all queries of an image share
    the cell (as in every official call).
  * Cell clipping at test time: the official `test.py` `eval_psnr` passes `cell * max(scale / scale_max, 1)`
    with scale_max 4, one factor for both cell components, `scale` the integer of its `eval_type` (the
    benchmarks' HR is s times the LR on both sides). `query` takes the cell as given; the rule is stated by
    `HIIF.cell_scale(lr_hw, out_hw)` and applied by every decoding path (`inrsr.infer.inference`, through
    `inrsr.models.cell_scale`: evaluate, upscale of files and clips, zero-shot, the notebook API), unless the
    caller passes an explicit factor (`cell_scale=1.0`, the CLIs' `--notest_cell_clip`, turns it off). The
    scale is computed from the sizes, `s = sqrt(H * W / (h * w))` (`size_scale`): the scale `test.py` itself
    recovers from the HR and LR sizes when it reshapes a prediction (`s = math.sqrt(coord.shape[1] *
    coord.shape[2] / (ih * iw))`), equal to the official scale whenever H = s * h and W = s * w, and for an
    output of another aspect (`upscale --size=WxH`) the geometric mean of the two axes' ratios, still one
    factor for both components as the official code applies it. At a non-integer scale the sizes are rounded
    and s is their ratio, not the number asked for; `evaluate` and `upscale` use the same sizes, so the same s.
  * Discontinuities: the nearest-feature choice, the `rel > 0` mask and the hierarchical bits are
    discontinuous in the coordinates, and HR pixel centres hit them exactly (dyadic offsets, odd integer
    scales). To reproduce official outputs at such queries, pass coordinates built like the official
    `make_coord` in float32 (`make_coord` here); all coordinate arithmetic below is in float32 in the official
    operation order.

Coordinates in the interface are inrsr's (x, y); internally the official (y, x) order is used. Dense, conv
and attention contractions run at `Precision.HIGHEST`. LayerNorm eps is PyTorch's 1e-5; GELU is exact (erf).
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr.coords import make_coord_f32
from inrsr.models import edsr, sampling, torch_init

PRECISION = jax.lax.Precision.HIGHEST
LN_EPS = 1e-5  # PyTorch nn.LayerNorm default.
SCALE_MAX = 4.0  # official test.py --scale_max default, the largest training scale.

# The largest first-decoder-layer table `HIIF.encode` stores (`_projection`: 4 * mlp_hidden float32 per LR pixel,
# 4 times the features at the official sizes; 256 MiB is a 256 x 256 LR there, 1 GiB a 512 x 512 one). Above it
# `encode` keeps the features and each query projects the 4 it gathers (the official first layer's cost).
PROJECTION_TABLE_MAX_BYTES = 2**28
# The most memory `decode_global` keeps activations in (hidden_dim float32 per query: 256 MiB is a 512 x 512 output
# at the official sizes); above it each pass recomputes the layers before its block, holding one chunk.
KEPT_MAX_BYTES = 2**29

MODEL_FIELDS = ("encoder", "encoder_args", "hidden_dim", "heads", "n_attn_blocks", "n_hi_layers", "mlp_hidden",
                "param_init")
ENCODERS = ("edsr-baseline", "edsr")


def make_coord_grid(height: int, width: int) -> np.ndarray:
  """(H*W, 2) inrsr (x, y) pixel-centre coordinates of an H x W grid, row-major, official float32 values."""
  ys, xs = make_coord_f32(height), make_coord_f32(width)
  grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1)  # (H, W, 2): [..., 0] = x, [..., 1] = y
  return grid.reshape(-1, 2)


def size_scale(lr_hw, out_hw) -> float:
  """The scale of an (h, w) -> (H, W) upscale as the official test recovers it from the sizes: sqrt(H W / (h w)).

  Args:
    lr_hw: (h, w) of the LR.
    out_hw: (H, W) of the output.

  Returns:
    s, exactly the common factor when H = s * h and W = s * w (for integer s; float64 sqrt of an exact square).
  """
  (h, w), (big_h, big_w) = lr_hw, out_hw
  if min(h, w, big_h, big_w) <= 0:
    raise ValueError(f"sizes {lr_hw} -> {out_hw} must be positive")
  return math.sqrt(big_h * big_w / (h * w))


def clip_factor(lr_hw, out_hw, scale_max: float = SCALE_MAX) -> float:
  """The official test-time cell factor `max(s / scale_max, 1)` for an (h, w) -> (H, W) upscale, s = `size_scale`."""
  return max(size_scale(lr_hw, out_hw) / float(scale_max), 1.0)


def clip_cell(cells, scale: float, scale_max: float = SCALE_MAX):
  """The official test-time cell clipping: `cells * max(scale / scale_max, 1)` (float32, as PyTorch does).

  Args:
    cells: (..., 2) cells, NumPy or JAX, float32.
    scale: the (Python) upscaling factor of the evaluation.
    scale_max: the largest training scale (4 in the official code).
  """
  return cells * np.float32(max(float(scale) / float(scale_max), 1.0))


def compute_hi_coord(local: jax.Array, n: int) -> jax.Array:
  """Level-n hierarchical bits `floor(clip(local - 1e-9, 0, 1) * 2^(n+1)) mod 2`, in float32 like the official run."""
  c = jnp.clip(local.astype(jnp.float32) - jnp.float32(1e-9), 0.0, 1.0)
  return jnp.mod(jnp.floor(c * jnp.float32(2.0 ** (n + 1))), 2.0)


def _layer_norm(name: str | None = None) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=LN_EPS, use_fast_variance=False, name=name)


class MLPWithShortcut(nn.Module):
  """Official `MLP_with_shortcut`: LayerNorm -> Dense(hidden) -> GELU (exact) -> Dense(out) [+ x if widths agree]."""

  out_dim: int
  hidden: int = 256

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = _layer_norm("norm")(x)
    y = nn.Dense(self.hidden, precision=PRECISION, name="fc1")(y)
    y = nn.gelu(y, approximate=False)
    y = nn.Dense(self.out_dim, precision=PRECISION, name="fc2")(y)
    return y + x if y.shape[-1] == x.shape[-1] else y


class LinearAttention(nn.Module):
  """Official `qkv_attn`: multi-head linear attention over all queries of the call, then a 2-layer MLP.

  `o = q @ (LN(k)^T LN(v) / N)` per head (N = number of (valid) queries), `ret = o + x`,
  output `x + proj2(gelu(proj1(ret)))`. `kv` (B, heads, d, d), when given, replaces the call's own
  `LN(k)^T LN(v) / N` (see `query_global`).

  Once the statistics are known, `proj1(q @ kv + x)` is linear in x: q = x Wq + bq, so it is `x M + m` with
  M = (Wq blockdiag(kv) + I) W1 and m = bq blockdiag(kv) W1 + b1, formed once per image (B x d^3 work) instead
  of projecting q for every query (the same numbers up to float32 rounding; the fixtures match either way).
  """

  dim: int
  heads: int

  def setup(self):
    if self.dim % self.heads:
      raise ValueError(f"LinearAttention: dim {self.dim} is not divisible by heads {self.heads}")
    self.qkv_proj = nn.Dense(3 * self.dim, precision=PRECISION)
    self.kln = _layer_norm()
    self.vln = _layer_norm()
    self.proj1 = nn.Dense(self.dim, precision=PRECISION)
    self.proj2 = nn.Dense(self.dim, precision=PRECISION)

  def _qkv_weights(self):
    """qkv_proj's (kernel (dim, heads, 3, hc), bias (heads, 3, hc)): per head [q | k | v] as the official."""
    if self.is_initializing():
      self.qkv_proj(jnp.zeros((1, self.dim), jnp.float32))
    p = self.qkv_proj.variables["params"]
    hc = self.dim // self.heads
    return p["kernel"].reshape(self.dim, self.heads, 3, hc), p["bias"].reshape(self.heads, 3, hc)

  def _kv(self, x):
    """LN(k), LN(v) of every query: (B, Q, heads, hc) each (q is never formed: see the class docstring)."""
    kernel, bias = self._qkv_weights()
    b, q, _ = x.shape
    hc = self.dim // self.heads
    kv = jnp.matmul(x, kernel[:, :, 1:].reshape(self.dim, 2 * self.dim), precision=PRECISION)
    kv = kv.reshape(b, q, self.heads, 2, hc) + bias[:, 1:]
    return self.kln(kv[..., 0, :]), self.vln(kv[..., 1, :])

  def kv_sum(self, x: jax.Array, mask: jax.Array | None = None):
    """(sum over the (valid) queries of LN(k)^T LN(v): (B, heads, d, d), number of (valid) queries: (B,))."""
    kh, vh = self._kv(x)
    if mask is None:
      count = jnp.full((x.shape[0],), x.shape[1], jnp.float32)
    else:
      m = mask.astype(jnp.float32)
      kh = kh * m[:, :, None, None]
      count = jnp.sum(m, axis=1)
    return jnp.einsum("bnhd,bnhe->bhde", kh, vh, precision=PRECISION), count

  def __call__(self, x: jax.Array, mask: jax.Array | None = None, kv: jax.Array | None = None) -> jax.Array:
    b, q, c = x.shape
    if c != self.dim:
      raise ValueError(f"LinearAttention: input width {c} is not dim {self.dim}")
    if kv is None:
      total, count = self.kv_sum(x, mask)
      kv = total / jnp.maximum(count, 1.0)[:, None, None, None]
    kernel, bias = self._qkv_weights()
    if self.is_initializing():
      self.proj1(x)
    p1 = self.proj1.variables["params"]
    # proj1(q @ kv + x) = x M + m (class docstring).
    wq = jnp.einsum("chd,bhde->bche", kernel[:, :, 0], kv, precision=PRECISION).reshape(b, c, c)
    m_mat = jnp.matmul(wq + jnp.eye(c, dtype=wq.dtype), p1["kernel"], precision=PRECISION)
    m_vec = jnp.matmul(jnp.einsum("hd,bhde->bhe", bias[:, 0], kv, precision=PRECISION).reshape(b, c), p1["kernel"],
                       precision=PRECISION) + p1["bias"]
    y = jnp.einsum("bqc,bcd->bqd", x, m_mat, precision=PRECISION) + m_vec[:, None]
    return self.proj2(nn.gelu(y, approximate=False)) + x


class HIIF(nn.Module):
  """HIIF over an EDSR encoder (official sizes by default: EDSR-baseline, hidden 256, 16 heads, 6 levels).

  Attributes:
    encoder: "edsr-baseline" (official default) or "edsr", both `inrsr.models.edsr.EDSR`; for "edsr" give its
      sizes (32 blocks, 256 feats, res_scale 0.1) in encoder_args, as the converter does.
    encoder_args: the encoder's fields (n_resblocks, n_feats, res_scale) as a mapping or a tuple of
      (name, value) pairs (a tuple keeps the module hashable).
    hidden_dim: width C of `freq`, of the decoder features and of the attention (official `hidden_dim`, 256).
    heads: attention heads (official `blocks`, 16), head width hidden_dim / heads.
    n_attn_blocks: attention blocks after the first decoder layer (official: conv0, conv1 = 2).
    n_hi_layers: hierarchical levels = decoder layers (official 6).
    mlp_hidden: hidden width inside every decoder layer (official: 256, fixed).
    param_init: "torch" (PyTorch's default Conv/Linear init, as the official code) or "flax" (flax's
      defaults); read by `inrsr.models.init_params`.
  """

  encoder: str = "edsr-baseline"
  encoder_args: Any = ()
  hidden_dim: int = 256
  heads: int = 16
  n_attn_blocks: int = 2
  n_hi_layers: int = 6
  mlp_hidden: int = 256
  param_init: str = "torch"

  batch_keys: ClassVar[tuple] = ("lr", "coords", "cells")
  queries_independent: ClassVar[bool] = False  # the attention mixes every query of a `query` call
  test_cell_scale_max: ClassVar[float] = SCALE_MAX  # the test-time cell is cell * max(scale / this, 1)

  def setup(self):
    if self.encoder not in ENCODERS:
      raise ValueError(f"encoder={self.encoder!r} must be one of {ENCODERS}")
    if self.hidden_dim % self.heads:
      raise ValueError(f"hidden_dim={self.hidden_dim} must be divisible by heads={self.heads}")
    torch_init.check_scheme(self.param_init)
    if self.n_hi_layers < 1:
      raise ValueError(f"n_hi_layers={self.n_hi_layers} must be >= 1")
    self.enc = edsr.from_fields(**dict(self.encoder_args))
    self.freq = nn.Conv(self.hidden_dim, (3, 3), padding=1, precision=PRECISION, name="freq")
    self.fc_layers = [MLPWithShortcut(3 if d == self.n_hi_layers - 1 else self.hidden_dim, self.mlp_hidden,
                                      name=f"fc_layers_{d}") for d in range(self.n_hi_layers)]
    self.attn = [LinearAttention(self.hidden_dim, self.heads, name=f"attn_{i}") for i in range(self.n_attn_blocks)]

  def cell_scale(self, lr_hw, out_hw) -> float:
    """The test-time cell factor for an (h, w) -> (H, W) upscale: the official clipping, `clip_factor`.

    Read through `inrsr.models.cell_scale`, which every decoding path applies by default.
    """
    return clip_factor(lr_hw, out_hw, self.test_cell_scale_max)

  def encode(self, lr: jax.Array) -> dict:
    """Features of an LR batch.

    Args:
      lr: (B, h, w, 3) in [0, 1].

    Returns:
      {"proj": (B, h, w, 4, mlp_hidden) the first decoder layer's products with the features (`_projection`),
      "stats": (B, h, w, 2) their sums and sums of squares, "inp": (B, h, w, 3) the LR normalised to [-1, 1]
      (for the skip)}; where "proj" would exceed `PROJECTION_TABLE_MAX_BYTES`, "feat": (B, h, w, hidden_dim)
      the features instead (each query then projects the features it gathers: the same numbers up to float32
      rounding, in a quarter of the memory).
    """
    if lr.ndim != 4 or lr.shape[-1] != 3:
      raise ValueError(f"expected lr of shape (B, h, w, 3), got {lr.shape}")
    inp = (lr.astype(jnp.float32) - 0.5) / 0.5
    feat = self.freq(self.enc(inp))
    stats = jnp.stack([jnp.sum(feat, -1), jnp.sum(feat * feat, -1)], -1)
    if math.prod(feat.shape[:3]) * 4 * self.mlp_hidden * 4 > PROJECTION_TABLE_MAX_BYTES:
      if self.is_initializing():
        self._first_layer()
      return {"feat": feat, "stats": stats, "inp": inp}
    return {"proj": self._projection(feat), "stats": stats, "inp": inp}

  def _first_layer(self):
    """fc_layers[0]'s LayerNorm (scale, bias) and first Linear (kernel (4C + 4, M), bias (M,))."""
    first = self.fc_layers[0]
    if self.is_initializing():
      first(jnp.zeros((1, 4 * self.hidden_dim + 4), jnp.float32))
    p = first.variables["params"]
    return p["norm"]["scale"], p["norm"]["bias"], p["fc1"]["kernel"], p["fc1"]["bias"]

  def _slot_weights(self) -> jax.Array:
    """fc_layers[0]'s first Linear rows for the 4 feature slots, times the LayerNorm scale: (4, C, M)."""
    scale, _, kernel, _ = self._first_layer()
    c = (kernel.shape[0] - 4) // 4
    return (kernel[:4 * c] * scale[:4 * c, None]).reshape(4, c, -1)  # slot i: rows i * C .. (i + 1) * C

  def _projection(self, feat: jax.Array) -> jax.Array:
    """fc_layers[0]'s products with every feature pixel, once per pixel: (B, h, w, 4, M).

    The first decoder layer is LayerNorm then Linear on x = [a_0 f_0, .., a_3 f_3, rel_cell, hi bits] (f_i the
    i-th nearest feature, a_i its area weight). Its Linear of the normalised x is
    `((x * scale) @ W - mean(x) * (scale @ W)) / std(x) + bias @ W + b`, and `(a_i f_i * scale_i) @ W_i` is a_i
    times a product that depends on the pixel alone; mean and variance need only sum(f_i) and sum(f_i^2). So
    for every pixel and every slot i this stores `(f * scale_i) @ W_i` (M values) (`encode` stores sum(f) and
    sum(f^2) beside it), and a query gathers 4 rows instead of multiplying its (4C + 4)-wide input: the same
    numbers up to float32 rounding (the variance as E[x^2] - mean^2; the fixtures match within their 1e-5 bar).
    """
    return jnp.einsum("bhwc,icm->bhwim", feat, self._slot_weights(), precision=PRECISION)

  def local_coord(self, feats: dict, coords: jax.Array) -> jax.Array:
    """The official `local_coord` (the input of `compute_hi_coord`), (B, Q, 2) in the official (y, x) order."""
    return self._sample(feats, coords)[2]

  def _sample(self, feats: dict, coords: jax.Array):
    """The four shifted nearest samples: ([(flat pixel index, valid, area weight)] per slot, (h, w),
    local_coord (y, x))."""
    _, h, w = feats["inp"].shape[:3]
    cy = coords[..., 1].astype(jnp.float32)
    cx = coords[..., 0].astype(jnp.float32)
    pos_y, pos_x = jnp.asarray(make_coord_f32(h)), jnp.asarray(make_coord_f32(w))
    rx, ry = 2 / h / 2, 2 / w / 2  # official names: rx along rows (y), ry along columns (x)
    eps_shift = 1e-6
    lo, hi = np.float32(-1 + 1e-6), np.float32(1 - 1e-6)
    samples, areas, local = [], [], None
    for vx in (-1, 1):
      for vy in (-1, 1):
        sy = jnp.clip(cy + np.float32(vx * rx + eps_shift), lo, hi)
        sx = jnp.clip(cx + np.float32(vy * ry + eps_shift), lo, hi)
        (iy, in_y), (ix, in_x) = sampling.nearest_index(sy, h), sampling.nearest_index(sx, w)
        samples.append((sampling.flat_index(iy, ix, h, w), in_y & in_x))
        # nearest sample of the LR centres (zero outside, as grid_sample of the official pos_lr)
        vy_ok = (iy >= 0) & (iy < h)
        vx_ok = (ix >= 0) & (ix < w)
        qy = jnp.where(vy_ok & vx_ok, pos_y[jnp.clip(iy, 0, h - 1)], 0.0)
        qx = jnp.where(vy_ok & vx_ok, pos_x[jnp.clip(ix, 0, w - 1)], 0.0)
        rel_y = (cy - qy) * np.float32(h / 2)
        rel_x = (cx - qx) * np.float32(w / 2)
        areas.append(jnp.abs(rel_y * rel_x) + np.float32(1e-9))
        if vx == -1 and vy == -1:
          rel = jnp.stack([rel_y, rel_x], axis=-1)
          rxry = jnp.asarray(np.array([rx, ry], np.float32))
          local = jnp.where(rel > 0, rel, rxry - rel)
    tot = ((areas[0] + areas[1]) + areas[2]) + areas[3]
    swapped = [areas[3], areas[2], areas[1], areas[0]]  # LIIF's diagonal swap
    return [(i, ok, a / tot) for (i, ok), a in zip(samples, swapped)], (h, w), local

  def _head(self, feats: dict, coords: jax.Array, cells: jax.Array):
    """The first decoder layer's output (B, Q, hidden_dim) and local_coord (B, Q, 2) (y, x).

    The layer's LayerNorm and first Linear come from `feats["proj"]` (`_projection`), gathered per query, or
    where `encode` kept the features instead, from the 4 gathered features times `_slot_weights`.
    """
    if coords.ndim != 3 or coords.shape[-1] != 2:
      raise ValueError(f"expected coords of shape (B, Q, 2), got {coords.shape}")
    b, q, _ = coords.shape
    cells = jnp.asarray(cells, jnp.float32)
    if cells.ndim == 2:
      cells = jnp.broadcast_to(cells[:, None, :], (b, q, 2))
    if cells.shape != (b, q, 2):
      raise ValueError(f"expected cells of shape (B, Q, 2) or (B, 2) for coords {coords.shape}, got {cells.shape}")
    slots, (h, w), local = self._sample(feats, coords)
    scale, ln_bias, kernel, fc1_bias = self._first_layer()
    gather = jax.vmap(lambda t, j: t[j])
    if "proj" in feats:
      table = feats["proj"].reshape(b, h * w * 4, -1)
      slot_row = lambda flat, i: gather(table, flat * 4 + i)  # (B, Q, M)
    else:
      feat, slot_w = feats["feat"].reshape(b, h * w, -1), self._slot_weights()
      slot_row = lambda flat, i: jnp.matmul(gather(feat, flat), slot_w[i], precision=PRECISION)
    stats = feats["stats"].reshape(b, h * w, 2)
    c = (kernel.shape[0] - 4) // 4
    # The small tail of x: rel_cell (y, x) and level 0's bits, as in the official concatenation.
    tail = jnp.concatenate([jnp.stack([cells[..., 1] * np.float32(h), cells[..., 0] * np.float32(w)], axis=-1),
                            compute_hi_coord(local, 0)], axis=-1)  # (B, Q, 4)
    lin = jnp.matmul(tail, kernel[4 * c:] * scale[4 * c:, None], precision=PRECISION)  # (B, Q, M)
    s1 = jnp.sum(tail, -1)
    s2 = jnp.sum(tail * tail, -1)
    for i, (flat, valid, a) in enumerate(slots):
      a = jnp.where(valid, a, 0.0)  # grid_sample's zero padding: the slot's feature is 0
      st = gather(stats, flat)  # (B, Q, 2)
      lin = lin + a[..., None] * slot_row(flat, i)
      s1 = s1 + a * st[..., 0]
      s2 = s2 + (a * a) * st[..., 1]
    n = np.float32(kernel.shape[0])
    mean = s1 / n
    inv_std = jax.lax.rsqrt(jnp.maximum(s2 / n - mean * mean, 0.0) + np.float32(LN_EPS))
    col = jnp.matmul(scale, kernel, precision=PRECISION)  # (M,): scale @ W
    y = (lin - mean[..., None] * col) * inv_std[..., None] + (jnp.matmul(ln_bias, kernel, precision=PRECISION)
                                                            + fc1_bias)
    fc2 = self.fc_layers[0].variables["params"]["fc2"]
    x = jnp.matmul(nn.gelu(y, approximate=False), fc2["kernel"], precision=PRECISION) + fc2["bias"]
    return x, local

  def query(self, feats: dict, coords: jax.Array, cells: jax.Array, query_mask: jax.Array | None = None,
            kv_means=None) -> jax.Array:
    """RGB at HR query points.

    All Q queries of one call are mixed by the linear attention (see the module docstring).

    Args:
      feats: the output of `encode`.
      coords: (B, Q, 2) inrsr (x, y) coordinates in [-1, 1].
      cells: (B, Q, 2) or (B, 2) cells (x, y) = (2 / W_hr, 2 / H_hr), used as given: times `cell_scale`'s
        factor where the official test clips them (`inrsr.infer.inference` does that).
      query_mask: optional (B, Q) bool; False marks padding queries, which are left out of the attention's
        average (their outputs are meaningless). None: every query counts, as in the official code.
      kv_means: optional sequence of n_attn_blocks (B, heads, d, d) attention statistics computed over a
        larger query set (see `query_global`); None: this call's own queries, as in the official code.

    Returns:
      (B, Q, 3) RGB in [0, 1] scale (`pred * 0.5 + 0.5`), not clipped.
    """
    x, local = self._head(feats, coords, cells)
    for i, block in enumerate(self.attn):
      x = block(x, query_mask, None if kv_means is None else kv_means[i])
    return self._tail(feats, coords, x, local)

  def _tail(self, feats: dict, coords: jax.Array, x: jax.Array, local: jax.Array) -> jax.Array:
    """The hierarchical layers after the attention blocks, plus the bilinear skip: RGB (B, Q, 3)."""
    for n in range(1, self.n_hi_layers):
      x = self.fc_layers[n](jnp.concatenate([x, compute_hi_coord(local, n)], axis=-1))
    skip = sampling.bilinear(feats["inp"], coords[..., 1].astype(jnp.float32), coords[..., 0].astype(jnp.float32),
                             border=True)
    return (x + skip) * 0.5 + 0.5

  def head_pass(self, feats: dict, coords: jax.Array, cells: jax.Array, query_mask: jax.Array | None = None):
    """`decode_global`'s first pass over a chunk: the first decoder layer's output x (B, Q, hidden_dim), kept, and
    attention block 0's `kv_sum` of it."""
    x, _ = self._head(feats, coords, cells)
    return (x,) + self.attn[0].kv_sum(x, query_mask)

  def block_pass(self, x: jax.Array, kv_mean: jax.Array, query_mask: jax.Array | None = None, *, block: int):
    """`decode_global`'s pass `block` (>= 1) over a chunk: the kept x through attention block `block - 1` with its
    global statistic `kv_mean`, kept, and block `block`'s `kv_sum` of it."""
    x = self.attn[block - 1](x, query_mask, kv_mean)
    return (x,) + self.attn[block].kv_sum(x, query_mask)

  def decode_kept(self, feats: dict, coords: jax.Array, x: jax.Array, kv_mean: jax.Array,
                  query_mask: jax.Array | None = None) -> jax.Array:
    """`decode_global`'s last pass over a chunk: the kept x through the last attention block and the rest of
    `query` (local_coord recomputed from the coordinates, the same float32 bits as `_head`'s)."""
    x = self.attn[-1](x, query_mask, kv_mean)
    return self._tail(feats, coords, x, self._sample(feats, coords)[2])

  def attention_sums(self, feats: dict, coords: jax.Array, cells: jax.Array, kv_means=(),
                     query_mask: jax.Array | None = None):
    """Sum over these queries of attention block `len(kv_means)`'s LN(k)^T LN(v), and their count.

    The blocks before it use the given `kv_means` (global statistics). Used by `query_global`.
    """
    if len(kv_means) >= self.n_attn_blocks:
      raise ValueError(f"{len(kv_means)} kv_means given; the model has {self.n_attn_blocks} attention blocks")
    x, _ = self._head(feats, coords, cells)
    for i, kv in enumerate(kv_means):
      x = self.attn[i](x, query_mask, kv)
    return self.attn[len(kv_means)].kv_sum(x, query_mask)

  def __call__(self, lr: jax.Array, coords: jax.Array, cells: jax.Array, query_mask: jax.Array | None = None):
    return self.query(self.encode(lr), coords, cells, query_mask)


def global_statistics(model: HIIF, variables, feats: dict, chunks) -> tuple:
  """The attention statistics of one `query` call over every query of `chunks`, accumulated chunk by chunk.

  Attention block i's statistic is the mean over all (valid) queries of LN(k)^T LN(v), where k and v depend on
  the blocks before it: so one pass over the queries per block, each summing `attention_sums` chunk by chunk
  with the statistics already known. Only one chunk's queries are held at a time (the caller may build them
  on the fly: `inrsr.infer.inference` makes each chunk's coordinates from its pixel indices).

  Args:
    model: the HIIF module.
    variables: {"params": ...}.
    feats: `encode`'s output.
    chunks: a callable returning a new iterable of (coords (B, n, 2), cells (B, n, 2), mask (B, n) bool) per
      pass, the same chunks in the same order each time (every chunk of one shape: one compilation; padding
      queries masked out).

  Returns:
    n_attn_blocks arrays (B, heads, d, d): the `kv_means` for `query`.
  """
  sums = _jitted(model, "attention_sums")
  kv_means = ()
  for _ in range(model.n_attn_blocks):
    kv_means = kv_means + (_mean_of_sums(sums(variables, feats, coords, cells, kv_means, mask)
                                         for coords, cells, mask in chunks()),)
  return kv_means


def _mean_of_sums(pairs) -> jax.Array:
  """An attention statistic from each chunk's (sum of LN(k)^T LN(v), valid queries): (B, heads, d, d).

  `pairs` is consumed lazily; at most two chunks are in flight (dispatch is asynchronous, and each holds its inputs).
  """
  total, count = None, None
  for s, c in pairs:
    if total is not None:
      jax.block_until_ready(total)
    total, count = (s, c) if total is None else (total + s, count + c)
  if total is None:
    raise ValueError("HIIF's streamed decoding: `chunks` gave no queries")
  return total / count[:, None, None, None]


def query_global(model: HIIF, variables, feats: dict, coords, cells, chunk: int, keep: bool | None = None):
  """`model.query` over all Q queries at once (the attention averaged over all of them), in bounded memory.

  The attention statistics are sums over queries, so they are accumulated chunk by chunk (`global_statistics`:
  one pass per attention block), then a pass decodes every chunk with the global statistics. The result equals
  a single `query` call on all Q queries (up to float32 summation order), i.e. the official one-chunk evaluation
  of a whole image, while computing only `chunk` queries at a time (`decode_global`: each chunk's activation kept
  between the passes where they fit KEPT_MAX_BYTES, else recomputed). `inrsr.infer.inference` streams an output
  the same way without holding its coordinates or its output.

  Args:
    model: the HIIF module.
    variables: {"params": ...}.
    feats: `encode`'s output.
    coords: (B, Q, 2) (x, y); cells: (B, Q, 2) or (B, 2).
    chunk: queries per pass (the last chunk is padded and masked, so every pass has one shape).
    keep: `decode_global`'s choice (None: by KEPT_MAX_BYTES).

  Returns:
    (B, Q, 3) NumPy array, as `query` returns.
  """
  coords = jnp.asarray(coords, jnp.float32)
  b, q, _ = coords.shape
  cells = jnp.asarray(cells, jnp.float32)
  if cells.ndim == 2:
    cells = jnp.broadcast_to(cells[:, None, :], (b, q, 2))
  n_chunks = -(-q // chunk)
  pad = n_chunks * chunk - q
  coords_p = jnp.pad(coords, ((0, 0), (0, pad), (0, 0)))
  cells_p = jnp.pad(cells, ((0, 0), (0, pad), (0, 0)))
  mask_p = jnp.broadcast_to(jnp.arange(n_chunks * chunk) < q, (b, n_chunks * chunk))
  parts = [slice(i * chunk, (i + 1) * chunk) for i in range(n_chunks)]
  chunks = lambda: ((coords_p[:, sl], cells_p[:, sl], mask_p[:, sl]) for sl in parts)
  out = [np.asarray(o) for o in decode_global(model, variables, feats, chunks, n_chunks * chunk, keep)]
  return np.concatenate(out, axis=1)[:, :q]


def kept_bytes(model: HIIF, queries: int) -> int:
  """The bytes `decode_global` keeps for `queries` queries (padding included) by default: 0 where it recomputes."""
  nbytes = int(queries) * model.hidden_dim * 4
  return nbytes if model.n_attn_blocks and nbytes <= KEPT_MAX_BYTES else 0


def decode_global(model: HIIF, variables, feats: dict, chunks, queries: int, keep: bool | None = None):
  """`query`'s output over every query of `chunks`, the attention averaged over all of them, chunk by chunk.

  Two ways to the same numbers (up to float32 summation order). Keeping: one pass per attention block, each
  carrying every chunk's activation (B, chunk, hidden_dim) from one pass to the next (`head_pass`, `block_pass`,
  `decode_kept`), so each layer runs once per query, as in one `query` call; it holds the activations of all
  `queries`. Recomputing: `global_statistics`, then `query` per chunk with them, so only one chunk is held, but the
  first decoder layer runs n_attn_blocks + 1 times and each attention block but the last twice or more (1.15-1.3
  times slower at x4 on 512 x 512 outputs; BENCHMARKS.md).

  Args:
    model: the HIIF module.
    variables: {"params": ...}.
    feats: `encode`'s output.
    chunks: as for `global_statistics`: a callable returning a new iterable of (coords, cells, mask) per pass.
    queries: the number of queries `chunks` gives, padding included (for the memory of keeping).
    keep: True or False picks the way; None keeps when the kept activations take at most KEPT_MAX_BYTES.

  Yields:
    Each chunk's (B, chunk, 3) output (a device array), in order.
  """
  if keep is None:
    keep = kept_bytes(model, queries) > 0
  if not keep or not model.n_attn_blocks:  # (without attention blocks there is nothing to keep between passes)
    kv_means = global_statistics(model, variables, feats, chunks)
    decode = _jitted(model, "query")
    for coords, cells, mask in chunks():
      yield decode(variables, feats, coords, cells, mask, kv_means)
    return
  kept, kv_means = [], ()

  def first_pass():
    head = _jitted(model, "head_pass")
    for coords, cells, mask in chunks():
      x, s, c = head(variables, feats, coords, cells, mask)
      kept.append(x)
      yield s, c

  def later_pass(block):
    step = _block_pass(model, block)
    for i, (_, _, mask) in enumerate(chunks()):
      kept[i], s, c = step(variables, kept[i], kv_means[-1], mask)
      yield s, c

  for block in range(model.n_attn_blocks):
    kv_means = kv_means + (_mean_of_sums(later_pass(block) if block else first_pass()),)
  last = _jitted(model, "decode_kept")
  for i, (coords, _, mask) in enumerate(chunks()):
    x, kept[i] = kept[i], None  # each chunk's activation freed once decoded
    yield last(variables, feats, coords, x, kv_means[-1], mask)


@functools.lru_cache(maxsize=32)
def _jitted(model: HIIF, method: str):
  return jax.jit(lambda v, *args: model.apply(v, *args, method=getattr(HIIF, method)))


@functools.lru_cache(maxsize=32)
def _block_pass(model: HIIF, block: int):
  return jax.jit(lambda v, *args: model.apply(v, *args, method=HIIF.block_pass, block=block))


def from_config(config: Mapping) -> HIIF:
  """Build a HIIF from a config's `model` section (fields of `HIIF`, plus "name"; unknown fields are an error)."""
  keys = set(config.keys())
  unknown = sorted(keys - set(MODEL_FIELDS) - {"name"})
  if unknown:
    raise ValueError(f"unknown HIIF model config fields {unknown}; expected a subset of {MODEL_FIELDS}")
  if "name" in keys and config["name"] != "hiif":
    raise ValueError(f"model name {config['name']!r} is not 'hiif'")
  fields = {k: config[k] for k in MODEL_FIELDS if k in keys}
  if "encoder_args" in fields:
    kw = fields["encoder_args"]
    kw = kw.to_dict() if hasattr(kw, "to_dict") else dict(kw)
    fields["encoder_args"] = tuple(sorted(kw.items()))
  return HIIF(**fields)


def param_count(model: HIIF, lr_shape=(1, 8, 8, 3), queries: int = 4) -> int:
  """Number of parameters of `model`, computed with `jax.eval_shape` (no allocation)."""
  lr = jax.ShapeDtypeStruct(tuple(lr_shape), jnp.float32)
  coords = jax.ShapeDtypeStruct((lr_shape[0], queries, 2), jnp.float32)
  cells = jax.ShapeDtypeStruct((lr_shape[0], queries, 2), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), lr, coords, cells)
  return sum(int(x.size) for x in jax.tree.leaves(shapes))
