"""LIIF (Chen et al. 2021): a local implicit image function decoded by an MLP over an EDSR-baseline or RDN encoder.

Follows the official code (yinboc/liif, `../shared/baselines.md` §1) where it is more specific than the paper:
  * Input normalisation: the encoder sees `(lr - 0.5) / 0.5`; the output is `pred * 0.5 + 0.5`, not clipped.
  * Coordinates: inrsr's (x, y) queries and cells are flipped to the code's (y, x) at the boundary of `query`;
    MLP inputs are `[unfolded feature, rel_coord (y, x), rel_cell (y, x)]` in that order.
  * Nearest latent: PyTorch `grid_sample(mode='nearest', align_corners=False, padding_mode='zeros')`, i.e. index
    `nearbyint((c + 1) * n / 2 - 0.5)` rounding ties to even; out-of-range indices give zero features and a
    zero latent coordinate.
  * Feature unfolding: 3x3 neighbours with zero padding, channel-major (`c * 9 + ki * 3 + kj`, row offset ki).
    The map is not unfolded: the first MLP layer's products with every latent's block are formed once per
    feature pixel (a 3x3 convolution, `_projection`) and gathered per query (same numbers up to float32
    rounding; 4 to 64 queries share a pixel in training and at x4).
  * Local ensemble: the query is shifted by `v * (1 / n) + 1e-6` per axis for v in (-1, +1), in the order
    (-1,-1), (-1,+1), (+1,-1), (+1,+1), and clamped to `[-1 + 1e-6, 1 - 1e-6]` (the clamp also applies with
    the ensemble off, where the shift is 0); `rel_coord` uses the unshifted query.
  * The paper writes raw coordinate and cell offsets; the code scales `rel_coord` and the cell by the feature
    map's (h, w), so one LR pixel is 2 units. Done here.
  * Ensemble weights: `area = |rel_y * rel_x| + 1e-9`, normalised by their sum and swapped diagonally
    (0 <-> 3, 1 <-> 2), the code's form of the paper's "opposite rectangle" weights.

One addition that is not in LIIF: `skip="bilinear"` adds the border-padded bilinear upsampling of the normalised
LR to the decoded value, as HIIF's and CLIT's official code do, so the network learns a residual over bilinear
upsampling. Off by default (the official LIIF, which the fixtures check); `liif_train291` turns it on because on
a CPU budget the residual form gains over bicubic much sooner (RESULTS.md).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import flax.linen as nn
from flax.core import FrozenDict
import jax
import jax.numpy as jnp

from inrsr.coords import make_coord_f32
from inrsr.models import edsr, rdn, sampling, torch_init

PRECISION = jax.lax.Precision.HIGHEST
ENCODERS = ("edsr-baseline", "rdn")
MODEL_FIELDS = ("encoder", "encoder_args", "hidden_list", "local_ensemble", "feat_unfold", "cell_decode", "skip",
                "param_init")
SKIPS = ("none", "bilinear")


def make_encoder(name: str, args: Mapping[str, Any]) -> nn.Module:
  """The encoder module by name.

  Args:
    name: "edsr-baseline" or "rdn".
    args: its fields (see `edsr.from_fields`, `rdn.from_fields`).

  Returns:
    An unbound encoder module; unknown names or fields are a ValueError.
  """
  if name == "edsr-baseline":
    return edsr.from_fields(**args)
  if name == "rdn":
    return rdn.from_fields(**args)
  raise ValueError(f"encoder={name!r} must be one of {ENCODERS}")


class LIIF(nn.Module):
  """LIIF decoder over an encoder.

  Attributes:
    encoder: "edsr-baseline" or "rdn".
    encoder_args: the encoder's fields (EDSR: n_resblocks, n_feats, res_scale; RDN: D, C, G, G0, kernel_size
      or config "A"/"B").
    hidden_list: hidden widths of the MLP (256 x 4).
    local_ensemble: blend the 4 nearest latents by area (paper ablation "-e" when False).
    feat_unfold: feed the 3x3 neighbourhood of each latent (ablation "-u").
    cell_decode: feed the query cell (ablation "-c").
    skip: "none" (official LIIF) or "bilinear" (add the bilinear upsampling of the LR, as HIIF and CLIT do).
    param_init: "torch" (PyTorch's default Conv/Linear init, as the official code) or "flax" (flax's
      defaults); read by `inrsr.models.init_params`.
  """

  encoder: str = "edsr-baseline"
  encoder_args: Mapping[str, Any] = FrozenDict()
  hidden_list: tuple[int, ...] = (256, 256, 256, 256)
  local_ensemble: bool = True
  feat_unfold: bool = True
  cell_decode: bool = True
  skip: str = "none"
  param_init: str = "torch"

  batch_keys: ClassVar[tuple] = ("lr", "coords", "cells")

  def __post_init__(self):
    # A FrozenDict and a tuple keep the module hashable (jit static arguments, flax's module caches).
    object.__setattr__(self, "encoder_args", FrozenDict(self.encoder_args or {}))
    object.__setattr__(self, "hidden_list", tuple(int(h) for h in self.hidden_list))
    if self.skip not in SKIPS:
      raise ValueError(f"skip={self.skip!r} must be one of {SKIPS}")
    torch_init.check_scheme(self.param_init)
    super().__post_init__()

  def setup(self):
    self.encoder_net = make_encoder(self.encoder, self.encoder_args)
    self.imnet = [nn.Dense(int(h), precision=PRECISION) for h in self.hidden_list] + [
        nn.Dense(3, precision=PRECISION)]

  def encode(self, lr: jax.Array) -> dict:
    """Feature map of an LR batch.

    Args:
      lr: (B, h, w, 3) LR in [0, 1].

    Returns:
      {"feat": (B, h, w, C) float32 features of the normalised LR}, plus "inp" (the normalised LR) when
      `skip` is "bilinear".
    """
    if lr.ndim != 4 or lr.shape[-1] != 3:
      raise ValueError(f"expected lr of shape (B, h, w, 3), got {lr.shape}")
    inp = (lr.astype(jnp.float32) - 0.5) / 0.5
    feats = {"feat": self.encoder_net(inp)}
    feats["proj"] = self._projection(feats["feat"])
    if self.skip == "bilinear":
      feats["inp"] = inp
    return feats

  def _first_layer(self) -> tuple[jax.Array, jax.Array]:
    """The first Linear's (kernel (in, out), bias (out,)), created at init like any other layer."""
    if self.is_initializing():
      self.imnet[0](jnp.zeros((1, self._in_dim()), jnp.float32))
    params = self.imnet[0].variables["params"]
    return params["kernel"], params["bias"]

  def _in_dim(self) -> int:
    c = edsr.feature_dim(self.encoder, self.encoder_args)
    return c * (9 if self.feat_unfold else 1) + 2 + (2 if self.cell_decode else 0)

  def _projection(self, feat: jax.Array) -> jax.Array:
    """The first Linear's products with every latent's input block, once per feature pixel: (B, h, w, out).

    The MLP input is [unfolded latent, rel_coord, rel_cell], so its first Linear is (latent block) @ W_f plus
    small terms; the latent block of the latent at (i, j) is its 3x3 neighbourhood (zero padded, channel-major
    `c * 9 + ki * 3 + kj`), so `unfold(feat) @ W_f` is a 3x3 convolution of the feature map by W_f reshaped.
    A query then gathers this row instead of the 9C-wide block: the layer's cost is per feature pixel, not per
    query (4 queries per pixel when training on 2304 of a 48x48 LR's queries, 64 at x4 inference), and the
    same up to float32 rounding (the official fixtures match either way).
    """
    kernel, _ = self._first_layer()
    c = feat.shape[-1]
    k = 3 if self.feat_unfold else 1
    w = kernel[:c * k * k].reshape(c, k, k, -1).transpose(1, 2, 0, 3)  # HWIO
    if k == 3:
      return edsr.convolve3x3(feat, w)  # Winograd on CPU (kernels.winograd), XLA's convolution elsewhere
    return jax.lax.conv_general_dilated(feat, w, (1, 1), [((k - 1) // 2,) * 2] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=PRECISION)

  def _mlp_tail(self, y: jax.Array) -> jax.Array:
    """The MLP after its first Linear's affine map `y`."""
    for layer in self.imnet[1:]:
      y = layer(nn.relu(y))
    return y

  def query(self, feats: dict, coords: jax.Array, cells: jax.Array | None) -> jax.Array:
    """RGB at query points.

    Args:
      feats: `encode`'s output.
      coords: (B, Q, 2) query (x, y) in [-1, 1].
      cells: (B, Q, 2) query cell (x, y) = (2 / W_hr, 2 / H_hr); may be None when `cell_decode` is False.

    Returns:
      (B, Q, 3) RGB, de-normalised (`pred * 0.5 + 0.5`), not clipped.
    """
    feat = feats["feat"]
    b, h, w, _ = feat.shape
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] != b:
      raise ValueError(f"expected coords (B={b}, Q, 2), got {coords.shape}")
    coord = coords.astype(jnp.float32)[..., ::-1]  # official (y, x) order from here on
    cy, cx = coord[..., 0], coord[..., 1]
    if self.cell_decode:
      if cells is None or cells.shape != coords.shape:
        raise ValueError(f"cell_decode needs cells of shape {coords.shape}, got "
                         f"{None if cells is None else cells.shape}")
      cell = cells.astype(jnp.float32)[..., ::-1]
      rel_cell = jnp.stack([cell[..., 0] * h, cell[..., 1] * w], -1)
    if self.local_ensemble:
      shifts, eps = [(-1, -1), (-1, 1), (1, -1), (1, 1)], 1e-6
    else:
      shifts, eps = [(0, 0)], 0.0
    ry, rx = 2 / h / 2, 2 / w / 2
    ys, xs = jnp.asarray(make_coord_f32(h)), jnp.asarray(make_coord_f32(w))
    proj = feats["proj"] if "proj" in feats else self._projection(feat)  # (B, h, w, out) `_projection`
    kernel, bias = self._first_layer()
    n_feat = kernel.shape[0] - 2 - (2 if self.cell_decode else 0)
    w_rel = kernel[n_feat:n_feat + 2]
    const = bias + (jnp.matmul(rel_cell, kernel[n_feat + 2:], precision=PRECISION) if self.cell_decode else 0.0)
    preds, areas = [], []
    for vy, vx in shifts:
      sy = jnp.clip(cy + (vy * ry + eps), -1 + 1e-6, 1 - 1e-6)
      sx = jnp.clip(cx + (vx * rx + eps), -1 + 1e-6, 1 - 1e-6)
      iy, valid_y = sampling.nearest_index(sy, h)
      ix, valid_x = sampling.nearest_index(sx, w)
      iy, ix = jnp.clip(iy, 0, h - 1), jnp.clip(ix, 0, w - 1)
      valid = valid_y & valid_x
      rel_y = (cy - jnp.where(valid, ys[iy], 0.0)) * h
      rel_x = (cx - jnp.where(valid, xs[ix], 0.0)) * w
      # The first Linear on [latent block, rel_y, rel_x, rel_cell]: the block's part gathered from `proj`.
      y = sampling.gather(proj, iy, ix, valid) + (rel_y[..., None] * w_rel[0] + rel_x[..., None] * w_rel[1]) + const
      preds.append(self._mlp_tail(y))
      areas.append(jnp.abs(rel_y * rel_x) + 1e-9)
    tot_area = areas[0]
    for a in areas[1:]:
      tot_area = tot_area + a
    if self.local_ensemble:
      areas = areas[::-1]  # diagonal swap: 0 <-> 3, 1 <-> 2
    ret = 0.0
    for pred, area in zip(preds, areas):
      ret = ret + pred * (area / tot_area)[..., None]
    if self.skip == "bilinear":
      ret = ret + sampling.bilinear(feats["inp"], cy, cx, border=True)
    return ret * 0.5 + 0.5

  def __call__(self, lr: jax.Array, coords: jax.Array, cells: jax.Array | None) -> jax.Array:
    """`query(encode(lr), coords, cells)`: (B, Q, 3) RGB."""
    return self.query(self.encode(lr), coords, cells)


def from_config(config) -> LIIF:
  """Build a LIIF from a config's `model` section (a dict or ConfigDict of `MODEL_FIELDS`, plus "name").

  Args:
    config: the model fields; unknown fields are a ValueError naming them.

  Returns:
    The LIIF module.
  """
  keys = set(config.keys())
  unknown = sorted(keys - set(MODEL_FIELDS) - {"name"})
  if unknown:
    raise ValueError(f"unknown model config fields {unknown}; expected a subset of {MODEL_FIELDS}")
  kwargs = {k: config[k] for k in MODEL_FIELDS if k in keys}
  if hasattr(kwargs.get("encoder_args"), "to_dict"):  # a nested ml_collections.ConfigDict
    kwargs["encoder_args"] = kwargs["encoder_args"].to_dict()
  model = LIIF(**kwargs)
  make_encoder(model.encoder, model.encoder_args)  # unknown encoders or encoder fields fail here, not at apply
  return model
