"""LIT and CLIT (Chen et al. 2023, "Cascaded Local Implicit Transformer for Arbitrary-Scale Super-Resolution").

One class serves both: LIT is `CLIT(num_stages=1)`, CLIT-N is `CLIT(num_stages=N)`, as in the official code
(jaroslaw1007/CLIT @ f13a053, `models/clit.py`; facts in `../shared/baselines.md` §5). Where the code and the
paper differ, the code wins:
  * Frequency encoding: the paper's local frequency encoding block is absent from the released `clit.py`
    (only an unused `models/lit.py` has it). It is off by default here (`freq_encoding=False`); when on it
    follows `lit.py` (a 3x3 conv to `freq_dims / 2` channels, its 7x7 neighbourhood sampled nearest, an
    orthonormal 2-D FFT over the 7x7 grid, times `exp(i rel_coord . b)`, real and imaginary parts interleaved
    and concatenated after each neighbour's attended value). Choices of this port, since `lit.py` has one
    stage and no config: one such conv per stage on that stage's feature map, and `freq_dims` 64 with
    `freq_scale` 10 by default (the values of the positional bias).
  * Positional bias: the code's sinusoid uses 16 frequencies per axis, `b = 2**linspace(0, 10, 16) - 1`
    (0 to 1023), on `rel_coord`, without 2 pi, then a Linear(64 -> heads); the paper writes `2**0 .. 2**(L-1)`
    with L = 10. The code's frequencies are used (`posenc_scale`, `posenc_dims`).
  * Decoder input: the attention weights scale each neighbour's value and the 49 weighted values are
    concatenated (index `n * C + head * C/heads + d`, neighbour n = 7 i + j, row offset i), not summed; then
    the cell. There is no `rel_coord` input to the MLP (it only enters through the bias).
  * `rel_coord` and the cell are scaled by the current stage's feature size (one feature pixel = 2 units); the
    cell is the final HR cell at every stage.
  * Q is sampled bilinearly, K and V nearest (all with zero padding, so neighbours outside the map give zero
    keys and values but still a bias); the softmax runs over the 49 neighbours per head.
  * Cascade: stage 0 runs on `conv_ch(encoder(lr))` (`init_feat`); stage i >= 1 on `init_feat` resampled
    bilinearly (zero padding, align_corners False) to the stage grid `round(h * prod(scales[:i]))`, not on the
    previous stage's features. `res_i = imnet_i(...) + 0.75 * res_{i-1}` (lambda = `cascade_weight`), summed
    before the skip; every stage's output adds the border-padded bilinear upsampling of the normalised LR.
  * Scale decomposition (`stage_scales`): the code's `sample_system_scale` with `scale_base` 4 (x12 -> [4, 3],
    x18 -> [4, 4, 1.125]); scales <= 4 use one stage, even with a CLIT checkpoint.
  * Logits are `q . k / sqrt(base_dim / head)` (the code and the paper's Eq. 7; Eq. 4 writes sqrt(C)).
  * Float32 bit-exactness where it matters: `make_coord`, the neighbour grid `centre + linspace(-r, r) * (2/n)`,
    its nearest indices, `rel_coord` and the frequencies `b` are formed in the same float32 operations as the
    official code (neighbour tables and `b` in NumPy at trace time). The sine arguments reach ~1e5 for border
    queries, so one ulp of `rel_coord` or `b` moves the bias visibly (with `b` rounded once from float64
    instead of torch's float32 linspace and pow, the fixture's 3-stage border queries drift to 1e-5). XLA
    on CPU contracts `(c + 1) * n / 2 - 0.5` into an FMA (one rounding); the nearest-index computation blocks
    that so the product is rounded first, as in the plain float32 formula (no fixture query depends on it).
  * `num_stages` defaults to 1 (LIT; the official class's `imnet_num=1`); the other defaults are the values of
    the official EDSR-baseline configs. Like the official code, `encode` computes every stage's q/k/v maps at
    the stage's full grid size (e.g. 16x the LR for the third stage at x18); band decoding computes a large
    later stage's maps in blocks of rows instead (below).
  * Official quirk kept: a query whose nearest feature pixel is out of range (e.g. coordinate exactly 1 on an
    even-sized map, where the tie rounds to the even index n) gets the zero vector as its "centre" coordinate,
    as PyTorch's zero padding returns; its neighbourhood is then around the map centre.
  * Input normalisation `(lr - 0.5) / 0.5`; the output is `pred * 0.5 + 0.5`, not clipped.

Query API: `encode(lr, scales=...)` then `query(feats, coords, cells, scales=...)`. `scales` (static) is None
(one stage: LIT), a number (decomposed by `stage_scales` with `scale_base`), or the per-stage factors. The
stage maps (q, k, v of every stage) are computed once by `encode` when it gets the same `scales`; otherwise
`query` computes the missing ones itself (same numbers, redone on every call). Queries are independent, so
chunking the queries gives the same outputs (the official `chop_forward`).

Full grids: `band_layout`, then `query_band` per band of output rows (`inrsr.models.clit_bands`, what
`inrsr.infer.inference` runs), compute the same function in another order: the first MLP layer's products once per
feature pixel, and a later stage whose maps at its full grid would exceed `stage_maps_max_bytes` in blocks of rows
(`stage_block`). Outputs equal `query`'s up to float32 rounding; the official fixture's full grids match to 1e-5
either way.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr.models import clit_bands, clit_tables, edsr, rdn, sampling, torch_init
from inrsr.models.clit_tables import (  # re-exported: the scale decomposition is part of clit's API
    feature_sizes, neighbour_table, posenc_freqs, scales_for_size, stage_scales, stage_sizes)

PRECISION = jax.lax.Precision.HIGHEST
ENCODERS = ("edsr-baseline", "rdn")
ACTIVATIONS = ("gelu", "relu", "none")
MODEL_FIELDS = ("encoder", "encoder_args", "base_dim", "head", "r", "num_stages", "cell_decode", "local_attn",
                "pos_bias", "posenc_scale", "posenc_dims", "hidden_list", "act", "cascade_weight", "scale_base",
                "freq_encoding", "freq_dims", "freq_scale", "param_init")


def resample_bilinear(fmap: jax.Array, out_hw: Sequence[int], row_taps=None) -> jax.Array:
  """fmap (B, h, w, C) sampled bilinearly (zero padding, align_corners False) at the make_coord grid out_hw.

  `row_taps` (index, weight, index, weight) replace the rows' `resample_axis` taps (a block of the rows).
  """
  _, h, w, _ = fmap.shape
  a0, wa0, a1, wa1 = clit_tables.resample_axis(h, int(out_hw[0])) if row_taps is None else row_taps
  b0, wb0, b1, wb1 = clit_tables.resample_axis(w, int(out_hw[1]))
  rows = fmap[:, a0] * wa0[None, :, None, None] + fmap[:, a1] * wa1[None, :, None, None]
  return rows[:, :, b0] * wb0[None, None, :, None] + rows[:, :, b1] * wb1[None, None, :, None]


# ----------------------------------------------------------------------------------------------------------
# Modules.


def _conv3x3(features: int, name: str | None = None) -> nn.Conv:
  return nn.Conv(features, (3, 3), padding=1, precision=PRECISION, name=name)


class MLP(nn.Module):
  """The official `mlp`: Linear + activation per hidden width, then a Linear to `out_dim`."""

  hidden_list: tuple[int, ...]
  out_dim: int = 3
  act: str = "gelu"

  def setup(self):
    widths = [int(w) for w in self.hidden_list] + [int(self.out_dim)]
    self.layers = [nn.Dense(w, precision=PRECISION) for w in widths]  # named layers_0, layers_1, ...

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.tail(self.layers[0](x))

  def first_layer(self) -> tuple[jax.Array, jax.Array]:
    """The first Linear's (kernel (in, out), bias (out,))."""
    params = self.layers[0].variables["params"]
    return params["kernel"], params["bias"]

  def tail(self, y: jax.Array) -> jax.Array:
    """The layers after the first Linear's affine map `y`: its activation, then the other Linears."""
    for layer in self.layers[1:]:
      if self.act == "gelu":
        y = jax.nn.gelu(y, approximate=False)  # torch nn.GELU(): the erf form
      elif self.act == "relu":
        y = nn.relu(y)
      y = layer(y)
    return y


class CLIT(nn.Module):
  """LIT (`num_stages=1`) or CLIT (cascade) over an EDSR-baseline or RDN encoder.

  Attributes:
    encoder: "edsr-baseline" or "rdn".
    encoder_args: the encoder's fields (see `inrsr.models.edsr` / `inrsr.models.rdn`).
    base_dim: channels of `conv_ch` and of every q/k/v map (256 in the official configs).
    head: attention heads (8); `base_dim` must be a multiple.
    r: local grid radius; the grid is (2r + 1)^2 = 49 neighbours for r = 3.
    num_stages: cascade stages with their own q/k/v convs and MLP (official `imnet_num = conv_num`).
    cell_decode: append the cell to the MLP input (official `is_cell`).
    local_attn: local attention (off: r = 0, the nearest value only, as the official code).
    pos_bias: add the sinusoidal relative-position bias to the logits (official: a `pb_spec` is given).
    posenc_scale: the bias frequencies reach 2**posenc_scale - 1 (10).
    posenc_dims: sin + cos features of the bias (64 = 16 frequencies x 2 axes x 2).
    hidden_list: hidden widths of each stage's MLP ([256] * 4).
    act: the MLP activation, "gelu" (official configs), "relu" or "none".
    cascade_weight: lambda of the cascade sum (0.75).
    scale_base: the largest factor per stage when `scales` is given as one number (4).
    freq_encoding: the paper's local frequency encoding (absent from the released code; off).
    freq_dims: real features per neighbour that it adds (64).
    freq_scale: its frequencies reach 2**freq_scale - 1 (10).
    param_init: "torch" (PyTorch's default Conv/Linear init, as the official code) or "flax" (flax's
      defaults); read by `inrsr.models.init_params`.
  """

  encoder: str = "edsr-baseline"
  encoder_args: Mapping[str, Any] | None = None
  base_dim: int = 256
  head: int = 8
  r: int = 3
  num_stages: int = 1
  cell_decode: bool = True
  local_attn: bool = True
  pos_bias: bool = True
  posenc_scale: float = 10.0
  posenc_dims: int = 64
  hidden_list: tuple[int, ...] = (256, 256, 256, 256)
  act: str = "gelu"
  cascade_weight: float = 0.75
  scale_base: float = 4.0
  freq_encoding: bool = False
  freq_dims: int = 64
  freq_scale: float = 10.0
  param_init: str = "torch"

  batch_keys: ClassVar[tuple] = ("lr", "coords", "cells")
  # `query_band` factors a stage's first Linear per feature pixel where the output has at least
  # `factor_threshold()` pixels per feature pixel; below, the stage is decoded point by point (`decode_points`).
  # None: the measured rule max(9, 128 * head / base_dim) (`factor_threshold`); a number overrides it.
  factor_min_queries: ClassVar[float | None] = None
  # A later stage whose q, k, v maps (and resampled features) would take more than `stage_maps_max_bytes` at its
  # full grid is computed in blocks of rows for `query_band` (`stage_block`), each about `stage_block_bytes`
  # and at least twice a band's rows with their neighbours (`clit_bands.stage_windows`): 12.8 GiB of maps for a
  # `:small` CLIT3 at x32 otherwise.
  stage_maps_max_bytes: ClassVar[int] = 256 << 20
  stage_block_bytes: ClassVar[int] = 64 << 20

  @property
  def radius(self) -> int:
    return self.r if self.local_attn else 0

  def setup(self):
    args = dict(self.encoder_args or {})
    if self.encoder == "edsr-baseline":
      self.encoder_net = edsr.from_fields(**args)
    elif self.encoder == "rdn":
      self.encoder_net = rdn.from_fields(**args)
    else:
      raise ValueError(f"encoder={self.encoder!r} must be one of {ENCODERS}")
    torch_init.check_scheme(self.param_init)
    if self.num_stages < 1:
      raise ValueError(f"num_stages={self.num_stages} must be >= 1")
    if self.base_dim % self.head:
      raise ValueError(f"base_dim={self.base_dim} must be a multiple of head={self.head}")
    if self.act not in ACTIVATIONS:
      raise ValueError(f"act={self.act!r} must be one of {ACTIVATIONS}")
    if self.pos_bias and self.posenc_dims % 4:
      raise ValueError(f"posenc_dims={self.posenc_dims} must be a multiple of 4")
    if self.freq_encoding and self.freq_dims % 4:
      raise ValueError(f"freq_dims={self.freq_dims} must be a multiple of 4")
    n = self.num_stages
    self.conv_ch = _conv3x3(self.base_dim)
    self.conv_vs = [_conv3x3(self.base_dim) for _ in range(n)]
    if self.local_attn:
      self.conv_qs = [_conv3x3(self.base_dim) for _ in range(n)]
      self.conv_ks = [_conv3x3(self.base_dim) for _ in range(n)]
      if self.pos_bias:
        self.pb_proj = nn.Dense(self.head, precision=PRECISION)
    if self.freq_encoding:
      self.conv_freqs = [_conv3x3(self.freq_dims // 2) for _ in range(n)]
    self.imnets = [MLP(tuple(int(h) for h in self.hidden_list), 3, self.act) for _ in range(n)]

  # -- scales --------------------------------------------------------------------------------------------

  def stage_plan(self, lr_hw: Sequence[int], scales=None) -> tuple[tuple[int, int], ...]:
    """Feature-map size of every stage used for `scales` (None: one stage; a number; or per-stage factors)."""
    if scales is None:
      sizes = ((int(lr_hw[0]), int(lr_hw[1])),)
    else:
      if isinstance(scales, (int, float, np.integer, np.floating)):
        scales = stage_scales(float(scales), self.scale_base)
      scales = tuple(float(s) for s in scales)
      if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
        raise ValueError(f"scales={scales} must be a non-empty sequence of finite numbers > 0")
      sizes = feature_sizes(lr_hw, scales)
    if len(sizes) > self.num_stages:
      raise ValueError(f"scales={scales} need {len(sizes)} stages but the model has num_stages="
                       f"{self.num_stages}")
    return sizes

  # -- features ------------------------------------------------------------------------------------------

  def stage_maps(self, feat: jax.Array, stage: int, hw) -> dict:
    """q, k, v (and the frequency map) of one stage; stage >= 1 first resamples `feat` to `hw`."""
    if stage > 0 and hw is not None:  # hw None: init-time call that only creates the convs
      feat = resample_bilinear(feat, hw)
    return self._convs(feat, stage)

  def _convs(self, feat: jax.Array, stage: int) -> dict:
    """The stage's q, k, v (and frequency) convolutions of a feature map at its grid."""
    maps = {"v": self.conv_vs[stage](feat)}
    if self.local_attn:
      maps["q"] = self.conv_qs[stage](feat)
      maps["k"] = self.conv_ks[stage](feat)
    if self.freq_encoding:
      maps["f"] = self.conv_freqs[stage](feat)
    return maps

  def stage_block(self, feat: jax.Array, row0: jax.Array, *, stage: int, hw: Sequence[int], rows: int) -> dict:
    """Rows [row0, row0 + rows) of a later stage's q, k, v maps, with "row0" (what `query_band` offsets by).

    `init_feat` is resampled on those rows and one halo row each side (zero beyond the grid, the convolutions'
    zero padding), convolved, and the halo cut: `stage_maps` of the whole grid cut to the rows, up to float32
    rounding, in memory proportional to `rows`.

    Args:
      feat: (1, h, w, base_dim) `init_feat` (`encode`'s "feat").
      row0: int32 first row, in [0, hw[0] - rows].
      stage: the stage (>= 1); hw: its feature-map size; rows: rows of the block (static).

    Returns:
      {"q", "k", "v": (1, rows, hw[1], base_dim), "row0": int32 row0}.
    """
    if stage < 1 or not 0 < rows <= int(hw[0]):
      raise ValueError(f"stage_block: {stage=} must be >= 1 and {rows=} in [1, {int(hw[0])}]")
    # Bilinear row taps of rows row0 - 1 .. row0 + rows; the padded ends have zero weights.
    taps = [jax.lax.dynamic_slice(jnp.asarray(np.pad(t, 1)), (row0,), (rows + 2,))
            for t in clit_tables.resample_axis(feat.shape[1], int(hw[0]))]
    x = resample_bilinear(feat, hw, row_taps=taps)  # (1, rows + 2, w, C)
    maps = {name: m[:, 1:-1] for name, m in self._convs(x, stage).items()}  # the halo rows cut
    maps["row0"] = jnp.asarray(row0, jnp.int32)
    return maps

  def block_margin(self) -> int:
    """Feature rows a query reads beyond its nearest one: r for keys and values, 1 for the bilinear query."""
    return max(self.radius, 1)

  def query_kwargs(self, lr_hw: Sequence[int], out_hw: Sequence[int]) -> dict:
    """Static arguments of `encode` and `query` for an LR of `lr_hw` upscaled to `out_hw` (the stage scales).

    A model with fewer stages than the decomposition asks for (LIT, or CLIT2 at x18) folds the remaining
    factors into its last stage, so a one-stage model is queried in one stage at every scale.
    """
    scales = scales_for_size(lr_hw, out_hw, self.scale_base)
    if len(scales) > self.num_stages:
      scales = scales[:self.num_stages - 1] + (float(np.prod(scales[self.num_stages - 1:])),)
    return {"scales": scales}

  def encode(self, lr: jax.Array, *, scales=None, windows: Sequence[int] = ()) -> dict:
    """Features of an LR batch.

    Args:
      lr: (B, h, w, 3) LR in [0, 1].
      scales: the stages to prepare (see `stage_plan`); the same value must reach `query`.
      windows: per stage, the rows of its blocks where `band_layout` computes it in blocks (`stage_block`);
        such a stage gets no maps here (an empty dict). Missing entries are 0 (the whole map).

    Returns:
      {"inp": (B, h, w, 3) normalised LR, "feat": (B, h, w, base_dim) `init_feat`, "stages": one dict of
      maps ("q", "k", "v"; "f" with frequency encoding) per prepared stage}.
    """
    if lr.ndim != 4 or lr.shape[-1] != 3:
      raise ValueError(f"expected lr of shape (B, h, w, 3), got {lr.shape}")
    sizes = self.stage_plan(lr.shape[1:3], scales)
    inp = (lr.astype(jnp.float32) - 0.5) / 0.5
    feat = self.conv_ch(self.encoder_net(inp))
    stages = tuple({} if i < len(windows) and windows[i] else self.stage_maps(feat, i, hw)
                   for i, hw in enumerate(sizes))
    if self.is_initializing():  # create every stage's convs, whatever `scales` the init call used
      for i in range(len(sizes), self.num_stages):
        self.stage_maps(feat, i, None)
    return {"inp": inp, "feat": feat, "stages": stages}

  # -- decoding ------------------------------------------------------------------------------------------

  def _position_bias(self, rel: jax.Array) -> jax.Array:
    """The official sinusoid bias: rel (..., 2) in (y, x) -> (..., head)."""
    b = posenc_freqs(self.posenc_scale, self.posenc_dims)
    args = jnp.concatenate([rel[..., :1] * b, rel[..., 1:] * b], -1)  # = rel @ b_vals.T (one product each)
    return self.pb_proj(jnp.concatenate([jnp.sin(args), jnp.cos(args)], -1))

  def bias_parts(self, rel_y: jax.Array, rel_x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`_position_bias` split by axis: (row part (..., k, head), column part (..., k, head)).

    The bias Linear on [sin(y b), sin(x b), cos(y b), cos(x b)] is a row term plus a column term, so neighbour
    (i, j) gets row[i] + col[j]: 2k sinusoid rows per query instead of k^2 (the same sums, in another order).
    """
    pb = self.pb_proj.variables["params"]
    f = self.posenc_dims // 4
    freqs = posenc_freqs(self.posenc_scale, self.posenc_dims)
    ay, ax = rel_y[..., None] * freqs, rel_x[..., None] * freqs
    dot = lambda x, kern: jnp.matmul(x, kern, precision=PRECISION)
    by = dot(jnp.sin(ay), pb["kernel"][:f]) + dot(jnp.cos(ay), pb["kernel"][2 * f:3 * f])
    bx = dot(jnp.sin(ax), pb["kernel"][f:2 * f]) + dot(jnp.cos(ax), pb["kernel"][3 * f:]) + pb["bias"]
    return by, bx

  def _frequency(self, fmap, iy, ix, valid, rel, k: int) -> jax.Array:
    """lit.py's local frequency encoding: (B, Q, N, freq_dims)."""
    bsz, q = iy.shape[:2]
    f = sampling.gather(fmap, iy, ix, valid).reshape(bsz, q, k, k, -1)
    spec = jnp.fft.fft2(f, axes=(2, 3), norm="ortho").reshape(bsz, q, k * k, -1)
    b = posenc_freqs(self.freq_scale, self.freq_dims)
    args = jnp.concatenate([rel[..., :1] * b, rel[..., 1:] * b], -1)
    prod = jax.lax.complex(jnp.cos(args), jnp.sin(args)) * spec
    return jnp.stack([prod.real, prod.imag], -1).reshape(bsz, q, k * k, -1)

  def decode_points(self, stage: int, maps: dict, hw, cy, cx, cell) -> jax.Array:
    """One stage's residual (normalised space) at queries (cy, cx) (B, Q): (B, Q, 3)."""
    h, w = hw
    r = self.radius
    k = 2 * r + 1
    bsz, q = cy.shape
    iy, vy = sampling.nearest_index(cy, h)
    ix, vx = sampling.nearest_index(cx, w)
    ok = vy & vx  # out of range on either axis: the zero-padded centre is (0, 0)
    row_y, row_x = jnp.where(ok, iy, h), jnp.where(ok, ix, w)
    ty_c, ty_i, ty_v = neighbour_table(h, r)
    tx_c, tx_i, tx_v = neighbour_table(w, r)
    ny_c, ny_i, ny_v = (jnp.asarray(t)[row_y] for t in (ty_c, ty_i, ty_v))  # (B, Q, k)
    nx_c, nx_i, nx_v = (jnp.asarray(t)[row_x] for t in (tx_c, tx_i, tx_v))
    rel_y = (cy[..., None] - ny_c) * np.float32(h)
    rel_x = (cx[..., None] - nx_c) * np.float32(w)
    shape = (bsz, q, k, k)
    rel = jnp.stack([jnp.broadcast_to(rel_y[..., :, None], shape), jnp.broadcast_to(rel_x[..., None, :], shape)],
                    -1).reshape(bsz, q, k * k, 2)
    niy, nix, nvalid = sampling.neighbourhoods(ny_i, ny_v, nx_i, nx_v)  # (B, Q, N)
    row0 = maps.get("row0", 0)  # a block of rows (`stage_block`): its first row
    niy = niy - row0
    v = sampling.gather(maps["v"], niy, nix, nvalid)  # (B, Q, N, C)
    dim = v.shape[-1]
    if self.local_attn:
      c = dim // self.head
      qv = sampling.bilinear(maps["q"], cy, cx, border=False, row0=row0, height=h).reshape(bsz, q, self.head, c)
      kv = sampling.gather(maps["k"], niy, nix, nvalid).reshape(bsz, q, k * k, self.head, c)
      logits = jnp.einsum("bqhc,bqnhc->bqnh", qv, kv, precision=PRECISION) / np.float32(np.sqrt(c))
      if self.pos_bias and self.is_initializing():
        logits = logits + self._position_bias(rel)  # creates the bias Linear
      elif self.pos_bias:
        by, bx = self.bias_parts(rel_y, rel_x)  # (B, Q, k, head) each
        logits = logits + (by[..., :, None, :] + bx[..., None, :, :]).reshape(bsz, q, k * k, self.head)
      attn = jax.nn.softmax(logits, axis=2)
      v = (v.reshape(bsz, q, k * k, self.head, c) * attn[..., None]).reshape(bsz, q, k * k, dim)
    if self.freq_encoding:
      v = jnp.concatenate([v, self._frequency(maps["f"], niy, nix, nvalid, rel, k)], -1)
    x = v.reshape(bsz, q, -1)
    if self.cell_decode:
      rel_cell = jnp.stack([cell[..., 1] * np.float32(h), cell[..., 0] * np.float32(w)], -1)
      x = jnp.concatenate([x, rel_cell], -1)
    return self.imnets[stage](x)

  def query(self, feats: dict, coords: jax.Array, cells: jax.Array | None, *, scales=None,
            return_stages: bool = False) -> jax.Array:
    """RGB at query points.

    Args:
      feats: `encode`'s output.
      coords: (B, Q, 2) query (x, y) in [-1, 1].
      cells: (B, Q, 2) cell (x, y) = (2 / W_hr, 2 / H_hr) of the final output (every stage uses it); may be
        None when `cell_decode` is False.
      scales: None (one stage), a number, or the per-stage factors (static; see `stage_plan`).
      return_stages: also return every stage's output.

    Returns:
      (B, Q, 3) RGB, `pred * 0.5 + 0.5`, not clipped; with `return_stages`, (S, B, Q, 3) for the S stages.
    """
    inp, feat = feats["inp"], feats["feat"]
    bsz = feat.shape[0]
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != bsz:
      raise ValueError(f"expected coords (B={bsz}, Q, 2), got {coords.shape}")
    cell = None
    if self.cell_decode:
      if cells is None or cells.shape != coords.shape:
        raise ValueError(f"cell_decode needs cells of shape {coords.shape}, got "
                         f"{None if cells is None else cells.shape}")
      cell = cells.astype(jnp.float32)
    coords = coords.astype(jnp.float32)
    cy, cx = coords[..., 1], coords[..., 0]  # the official (y, x) order from here on
    sizes = self.stage_plan(feat.shape[1:3], scales)
    given = feats.get("stages", ())
    for i, (maps, hw) in enumerate(zip(given, sizes)):
      if tuple(maps["v"].shape[1:3]) != tuple(hw):
        raise ValueError(f"feats hold a stage-{i} map of size {tuple(maps['v'].shape[1:3])}, but scales={scales} "
                         f"need {tuple(hw)}: pass the same scales to encode and query")
    preds, res = [], None
    for i, hw in enumerate(sizes):
      maps = given[i] if i < len(given) else self.stage_maps(feat, i, hw)
      out = self.decode_points(i, maps, hw, cy, cx, cell)
      res = out if res is None else out + np.float32(self.cascade_weight) * res
      preds.append(res)
    if self.is_initializing():  # create every stage's MLP
      for i in range(len(sizes), self.num_stages):
        self.imnets[i](jnp.zeros((1, self.mlp_in_dim()), jnp.float32))
    skip = sampling.bilinear(inp, cy, cx, border=True)
    if return_stages:
      return jnp.stack([p + skip for p in preds]) * 0.5 + 0.5
    return (preds[-1] + skip) * 0.5 + 0.5

  # -- full-grid decoding by bands of rows ----------------------------------------------------------------

  @property
  def band_decoding(self) -> bool:
    """Whether `query_band` serves this configuration (local attention with the bias and the cell, no
    frequency encoding: the released code's)."""
    return self.local_attn and self.pos_bias and self.cell_decode and not self.freq_encoding

  def factor_threshold(self) -> float:
    """Output pixels per feature pixel from which `band_layout` factors a stage: `factor_min_queries` if set,
    else max(9, 128 * head / base_dim). The factored first layer costs a (value x weight block) product per
    feature pixel, then a head-wide contraction per query instead of the base_dim-wide one of the point path,
    so it pays from fewer queries per pixel the wider each head. CPU time per output pixel, factored against
    points (2 cores, 2026-12-06): base_dim 256 and 8 heads 1.4 times slower at 4 pixels (x2), 1.4 times faster
    at 9 (x3); base_dim 64 and 8 heads 1.6 times slower at 9, even at 16 (x4), faster from 25."""
    if self.factor_min_queries is not None:
      return float(self.factor_min_queries)
    return max(9.0, 128.0 * self.head / self.base_dim)

  def band_layout(self, lr_hw: Sequence[int], out_hw: Sequence[int], chunk: int):
    """Static arguments of `query_band` for a full `out_hw` output, in bands sized like `chunk` query points.

    See `clit_bands.band_layout`. Returns (kwargs, cols, bands): `query_band`'s static keywords {"scales",
    "factored", "windows"} ("scales" and "windows" are `encode`'s too), then `clit_tables.band_plans`' layouts.
    """
    return clit_bands.band_layout(self, lr_hw, out_hw, chunk)

  def query_band(self, feats: dict, ys: jax.Array, xs: jax.Array, cell: jax.Array, plans, cols, *,
                 scales=None, factored: Sequence[bool] = (), windows: Sequence[int] = ()) -> jax.Array:
    """RGB (R, W, 3) of whole output rows, equal to `query` at the grid `xs` x `ys` up to float32 rounding.

    See `clit_bands.query_band` for the arguments (`band_layout`'s plans and keywords).
    """
    return clit_bands.query_band(self, feats, ys, xs, cell, plans, cols, scales=scales, factored=factored,
                                 windows=windows)

  def mlp_in_dim(self) -> int:
    """Width of a stage MLP's input: the (2r + 1)^2 attended values (and frequency features), then the cell."""
    per = self.base_dim + (self.freq_dims if self.freq_encoding else 0)
    return per * (2 * self.radius + 1) ** 2 + (2 if self.cell_decode else 0)

  def __call__(self, lr: jax.Array, coords: jax.Array, cells: jax.Array | None, *, scales=None,
               return_stages: bool = False) -> jax.Array:
    """`query(encode(lr, scales=scales), coords, cells, scales=scales)`."""
    return self.query(self.encode(lr, scales=scales), coords, cells, scales=scales, return_stages=return_stages)


def from_config(config) -> CLIT:
  """Build a CLIT from a config's `model` section (a dict or ConfigDict of `MODEL_FIELDS`, plus "name").

  Unknown fields are a ValueError naming them.
  """
  keys = set(config.keys())
  unknown = sorted(keys - set(MODEL_FIELDS) - {"name"})
  if unknown:
    raise ValueError(f"unknown model config fields {unknown}; expected a subset of {MODEL_FIELDS}")
  kwargs = {k: config[k] for k in MODEL_FIELDS if k in keys}
  if "encoder_args" in kwargs:
    args = kwargs["encoder_args"]
    args = dict(args.to_dict() if hasattr(args, "to_dict") else (args or {}))
    kwargs["encoder_args"] = flax.core.FrozenDict(args)  # hashable, so the module can key jit caches
  if "hidden_list" in kwargs:
    kwargs["hidden_list"] = tuple(int(h) for h in kwargs["hidden_list"])
  if kwargs.get("encoder", "edsr-baseline") not in ENCODERS:
    raise ValueError(f"encoder={kwargs['encoder']!r} must be one of {ENCODERS}")
  if kwargs.get("act", "gelu") not in ACTIVATIONS:
    raise ValueError(f"act={kwargs['act']!r} must be one of {ACTIVATIONS}")
  return CLIT(**kwargs)
