"""SR-INR (images) and VR-INR (video): texture codes, 6-D hash encoding, top-down attention, RGB MLP.

One module serves both papers: a single image is a frame with t = 0, a video is a batch of frames whose
query coordinates carry each frame's t (DESIGN.md, "SR-INR / VR-INR forward pass").

Choices DESIGN.md leaves open, made here (each a field of `SRINR`):
  * `output_activation`: "none" (the papers do not name one; outputs are clipped to [0, 1] only at
    inference) or "sigmoid".
  * The query's (x, y, t) are clipped to [-1, 1] before forming the STT code.
  * `bicubic_residual` (not in the papers, off in their literal reading): the output is the bicubic
    upsampling of the LR at the query point (`resize.sample_bicubic` with Pillow's border rule, equal to
    `resize.resize` at HR pixel centres) plus the MLP's output, whose last layer starts at zero; a query whose
    codes land on rows training never touched then degrades towards bicubic instead of towards noise.
  * `code_resolution` (not in the papers, 0 in their literal reading): the lattice on the code axes has
    min(code_resolution, N_l) cells instead of N_l, so the small shift of a code between LR inputs of other
    scales stays in the same cell and reads the same rows.
  * `position_resolution` (not in the papers, 0 in their literal reading): likewise min(position_resolution,
    N_l) cells on the (x, y, t) axes. With 1 the table no longer stores what the frame holds where (the
    papers' fitting), only what texture codes map to; zero-shot fitting needs that, since a table that learned
    the input's own detail at (x, y) adds it again when the input is upscaled.
  * `texture_spacing` (`encoding.TextureEncoder.spacing`): "level" (the papers', 2 / N_l) or "lr_pixels".
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from inrsr.models import encoding


class SRINR(nn.Module):
  """SR-INR / VR-INR.

  Attributes:
    num_levels: L.
    features: F, table features per level.
    log2_table_size: log2 T.
    n_min: coarsest grid resolution N_min.
    n_max: finest grid resolution N_max.
    patch_size: texture patch size k.
    code_dim: texture code size (3 in the papers, giving 6-D STT codes).
    hidden: hidden width of every MLP (64 in the papers).
    weight_norm: "none", "softmax" or "multilinear" (see `encoding.HashEncoding`).
    top_down_attention: the papers' top-down attention; False concatenates the raw v_l.
    output_activation: "none" or "sigmoid".
    kernel_impl: implementation of `kernels.hashgrid.hashgrid_gather`.
    bicubic_residual: predict bicubic(LR)(x, y) + MLP output (False: the MLP output alone, the papers').
    code_resolution: cells of the lattice on the code axes, min(code_resolution, N_l) (0: N_l, the papers').
    texture_prefilter: "none" (the papers') or "gaussian": each level's texture patch from the LR blurred to
      that level's sampling rate (`encoding.level_prefilter`).
    texture_spacing: "level" (the papers': patch samples 2 / N_l apart) or "lr_pixels" (N_max / N_l LR pixels).
    position_resolution: cells of the lattice on the (x, y, t) axes, min(position_resolution, N_l) (0: N_l).
  """

  num_levels: int = 12
  features: int = 2
  log2_table_size: int = 24
  n_min: int = 16
  n_max: int = 128
  patch_size: int = 5
  code_dim: int = 3
  hidden: int = 64
  weight_norm: str = "none"
  top_down_attention: bool = True
  output_activation: str = "none"
  kernel_impl: str = "auto"
  bicubic_residual: bool = False
  code_resolution: int = 0
  texture_prefilter: str = "none"
  texture_spacing: str = "level"
  position_resolution: int = 0

  batch_keys: ClassVar[tuple[str, ...]] = ("lr", "coords", "lr_size")

  @property
  def resolutions(self) -> tuple[int, ...]:
    return encoding.level_resolutions(self.num_levels, self.n_min, self.n_max)

  @nn.compact
  def __call__(self, lr: jax.Array, coords: jax.Array, lr_size=None) -> jax.Array:
    """RGB at HR query coordinates.

    Args:
      lr: (B, h, w, C) LR frames in [0, 1], or one frame (h, w, C).
      coords: (B, Q, 3) query (x, y, t) in [-1, 1] for frame b, or (Q, 3) for one frame.
      lr_size: optional (B, 2) int valid (h, w) of frames padded at the bottom/right.

    Returns:
      (B, Q, C_out) RGB, or (Q, C_out) for one frame; C_out = C of the LR.
    """
    single = lr.ndim == 3
    if single:
      lr, coords = lr[None], coords[None]
      lr_size = None if lr_size is None else jnp.asarray(lr_size)[None]
    if lr.ndim != 4 or coords.ndim != 3 or coords.shape[-1] != 3 or coords.shape[0] != lr.shape[0]:
      raise ValueError(f"expected lr (B, h, w, C) and coords (B, Q, 3), got {lr.shape} and {coords.shape}")
    if self.output_activation not in ("none", "sigmoid"):
      raise ValueError(f"output_activation={self.output_activation!r} must be 'none' or 'sigmoid'")
    if self.bicubic_residual and self.output_activation != "none":
      raise ValueError(f"bicubic_residual=True needs output_activation='none', got {self.output_activation!r}")
    batch, queries = coords.shape[:2]
    coords = jnp.clip(coords.astype(jnp.float32), -1.0, 1.0)
    resolutions = self.resolutions
    codes = encoding.TextureEncoder(resolutions, self.patch_size, self.code_dim, self.hidden,
                                    self.texture_prefilter, self.texture_spacing, name="texture")(
                                        lr.astype(jnp.float32), coords[..., :2], lr_size)
    codes = _coarsen(codes, self.code_resolution, resolutions, "code_resolution")
    xyt = jnp.broadcast_to(coords[:, :, None, :], (batch, queries, self.num_levels, 3))
    xyt = _coarsen(xyt, self.position_resolution, resolutions, "position_resolution")
    points = jnp.concatenate([xyt, codes], axis=-1).reshape(batch * queries, self.num_levels, -1)
    v = encoding.HashEncoding(resolutions, self.log2_table_size, self.features, self.weight_norm,
                              self.hidden, self.kernel_impl, name="hash")(points)  # (N, L, F)
    if self.top_down_attention and self.num_levels > 1:
      attention = encoding.StackedMLP(self.num_levels - 1, self.features, self.hidden, self.features,
                                      name="attention")
      levels = [v[:, 0]]
      for level in range(1, self.num_levels):
        gate = jax.nn.sigmoid(attention.level(levels[-1], level - 1))
        levels.append(gate * v[:, level])
      v = jnp.stack(levels, axis=1)
    features = v.reshape(batch * queries, -1)
    hidden = nn.relu(nn.Dense(self.hidden, name="color_hidden")(features))
    out_init = nn.initializers.zeros if self.bicubic_residual else nn.linear.default_kernel_init
    rgb = nn.Dense(lr.shape[-1], kernel_init=out_init, name="color_out")(hidden)
    if self.output_activation == "sigmoid":
      rgb = jax.nn.sigmoid(rgb)
    rgb = rgb.reshape(batch, queries, -1)
    if self.bicubic_residual:
      rgb = rgb + bicubic_at(lr.astype(jnp.float32), coords[..., :2], lr_size)
    return rgb[0] if single else rgb


def _coarsen(values: jax.Array, cells: int, resolutions: Sequence[int], field: str) -> jax.Array:
  """Values (..., L, D) in [-1, 1] rescaled so that level l's lattice has min(cells, N_l) cells on them (0: N_l).

  u = (v' + 1) / 2 * N_l = (v + 1) / 2 * min(cells, N_l).
  """
  if cells < 0:
    raise ValueError(f"{field}={cells} must be >= 0 (0: the level's resolution)")
  if not cells:
    return values
  ratio = jnp.asarray([min(cells, r) / r for r in resolutions], jnp.float32)[:, None]
  return (values + 1.0) * ratio - 1.0


def bicubic_at(lr: jax.Array, xy: jax.Array, lr_size=None) -> jax.Array:
  """Bicubic upsampling of each LR frame at its query points, read from the LR alone (no HR-sized array).

  Args:
    lr: (B, h, w, C) LR frames (possibly padded at the bottom/right, see lr_size).
    xy: (B, Q, 2) query (x, y) in [-1, 1].
    lr_size: optional (B, 2) int valid (h, w) of each padded frame.

  Returns:
    (B, Q, C); at the pixel centres of an H x W output equal to `resize.resize(lr, H, W)` (H >= h, W >= w).
  """
  if lr_size is None:  # encoding.sample_bicubic: resize.sample_bicubic, in the TPU's layout on a TPU.
    return jax.vmap(lambda im, p: encoding.sample_bicubic(im, p, renormalize=True))(lr, xy)
  return jax.vmap(lambda im, p, s: encoding.sample_bicubic(im, p, size=(s[0], s[1]), renormalize=True))(
      lr, xy, lr_size)


MODEL_FIELDS = ("num_levels", "features", "log2_table_size", "n_min", "n_max", "patch_size", "code_dim",
                "hidden", "weight_norm", "top_down_attention", "output_activation", "kernel_impl",
                "bicubic_residual", "code_resolution", "texture_prefilter", "texture_spacing", "position_resolution")


def from_config(config: ml_collections.ConfigDict) -> SRINR:
  """Build an SRINR from a config's `model` section (fields as in `SRINR`; unknown fields are an error)."""
  unknown = sorted(set(config.keys()) - set(MODEL_FIELDS) - {"name"})
  if unknown:
    raise ValueError(f"unknown model config fields {unknown}; expected a subset of {MODEL_FIELDS}")
  log2_t = config.get("log2_table_size", SRINR.log2_table_size)  # kernels/hashgrid gathers rows with int32 indices
  if isinstance(log2_t, bool) or not isinstance(log2_t, int) or not 0 <= log2_t <= 30:
    raise ValueError(f"model.log2_table_size={log2_t!r} must be a whole number in [0, 30] (T = 2**30 rows at most)")
  return SRINR(**{k: config[k] for k in MODEL_FIELDS if k in config})


def paper_defaults() -> SRINR:
  """The papers' configuration (L=12, F=2, log2 T=24, N_min=16, N_max=128, k=5, hidden 64)."""
  return SRINR()


def param_count(model: SRINR, lr_shape: Sequence[int] = (1, 16, 16, 3), queries: int = 4) -> int:
  """Number of parameters of `model`, computed with `jax.eval_shape` (no allocation)."""
  lr = jax.ShapeDtypeStruct(tuple(lr_shape), jnp.float32)
  coords = jax.ShapeDtypeStruct((lr_shape[0], queries, 3), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), lr, coords)
  return sum(int(x.size) for x in jax.tree.leaves(shapes))
