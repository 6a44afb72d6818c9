"""CLIT's static NumPy tables: the scale decomposition, stage grids, neighbour tables and full-grid row plans.

Everything here runs at trace time (shapes and indices are static); `inrsr.models.clit` builds the traced
computation on it. The float32 formulas copy the official code's operations (see `clit`'s docstring).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from inrsr.coords import make_coord_f32


def stage_scales(scale: float, scale_base: float = 4.0) -> tuple[float, ...]:
  """Per-stage upsampling factors of the official test-time decomposition (`sample_system_scale`).

  The first factor is `min(scale, scale_base)`; the rest of the scale is split into factors of `scale_base`
  while it is at least `scale_base`, and a last factor for the remainder (> 1).

  Args:
    scale: the overall upsampling factor, > 0.
    scale_base: the largest factor per stage (4 in the official test configs).

  Returns:
    Tuple of floats, e.g. 3 -> (3,), 12 -> (4, 3), 18 -> (4, 4, 1.125), 7.3 -> (4, 1.825).
  """
  scale, scale_base = float(scale), float(scale_base)
  if not math.isfinite(scale) or scale <= 0:
    raise ValueError(f"{scale=} must be a finite number > 0")
  if not math.isfinite(scale_base) or scale_base <= 1:
    raise ValueError(f"{scale_base=} must be a finite number > 1")
  if scale <= scale_base:
    return (scale,)
  out = [scale_base]
  s = scale / scale_base
  while s > 1:
    out.append(scale_base if s >= scale_base else s)
    s = s / scale_base
  return tuple(out)


def stage_sizes(lr_hw: Sequence[int], scales: Sequence[float]) -> tuple[tuple[int, int], ...]:
  """The official `coords` grid sizes: `(round(h * prod(scales[:i+1])), round(w * ...))` for every stage.

  Stage i >= 1 runs on the grid of entry i - 1; the last entry is the final HR grid. Python's `round`
  (ties to even) on the float64 product, as in the official collate functions.
  """
  h, w = (int(v) for v in lr_hw)
  out, prod = [], 1.0
  for s in scales:
    prod = prod * float(s)
    out.append((int(round(h * prod)), int(round(w * prod))))
  return tuple(out)


def feature_sizes(lr_hw: Sequence[int], scales: Sequence[float]) -> tuple[tuple[int, int], ...]:
  """Feature-map size of every stage: the LR size, then `stage_sizes(lr_hw, scales)[:-1]`."""
  h, w = (int(v) for v in lr_hw)
  return ((h, w),) + stage_sizes((h, w), scales)[:-1]


def scales_for_size(lr_hw: Sequence[int], out_hw: Sequence[int], scale_base: float = 4.0) -> tuple[float, ...]:
  """Stage factors for an LR of `lr_hw` upsampled to `out_hw`: `stage_scales(max(H / h, W / w))`.

  The official test.py decomposes the nominal scale of the test config; the network only uses the number of
  stages and the intermediate grids (factors of `scale_base`), so the ratio of sizes gives the same model
  except for a scale within rounding of a power of `scale_base`, where the nominal scale should be passed to
  `stage_scales` instead.
  """
  (h, w), (big_h, big_w) = lr_hw, out_hw
  if min(h, w, big_h, big_w) <= 0:
    raise ValueError(f"sizes must be positive, got lr {tuple(lr_hw)} and output {tuple(out_hw)}")
  return stage_scales(max(big_h / h, big_w / w), scale_base)


def posenc_freqs(posenc_scale: float, enc_dims: int) -> np.ndarray:
  """The official sinusoid frequencies `2**linspace(0, posenc_scale, enc_dims // 4) - 1`, float32 as torch.

  torch.linspace (CPU, float32): `step = (end - start) / (steps - 1)`; the first half is `start + step * i`,
  the second `end - step * (steps - 1 - i)`. `2.**x` is correctly rounded to float32 here; `- 1` is exact.
  """
  steps = enc_dims // 4
  if steps < 1:
    raise ValueError(f"enc_dims={enc_dims} must be >= 4")
  start, end = np.float32(0.0), np.float32(posenc_scale)
  if steps == 1:
    lin = np.array([start], np.float32)
  else:
    step = np.float32((end - start) / np.float32(steps - 1))
    idx = np.arange(steps)
    first = start + step * idx.astype(np.float32)
    second = end - step * (steps - 1 - idx).astype(np.float32)
    lin = np.where(idx < steps // 2, first, second).astype(np.float32)
  return (np.exp2(lin.astype(np.float64)).astype(np.float32) - np.float32(1.0)).astype(np.float32)


def np_unnormalize(c: np.ndarray, n: int) -> np.ndarray:
  return ((c.astype(np.float32) + np.float32(1)) * np.float32(n / 2)).astype(np.float32) - np.float32(0.5)


def neighbour_table(n: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Neighbour coordinates and nearest indices along one axis of an n-pixel map, per centre.

  Row i < n is the centre `make_coord(n)[i]`; row n is the zero centre the official code gets for a query whose
  nearest pixel is out of range. Column j is the offset `j - r`: the coordinate `float32(centre +
  float32(float32(j - r) * float32(2 / n)))` and its nearest index, all as the official float32 code.

  Returns:
    (coords (n + 1, 2r + 1) float32, index (n + 1, 2r + 1) int32, in_range (n + 1, 2r + 1) bool).
  """
  centres = np.concatenate([make_coord_f32(n), np.zeros(1, np.float32)])
  delta = np.arange(-r, r + 1, dtype=np.float32) * np.float32(2 / n)
  coords = (centres[:, None] + delta[None, :]).astype(np.float32)
  idx = centre_index(coords, n)
  return coords, idx, (idx >= 0) & (idx < n)


def resample_axis(n_in: int, n_out: int) -> tuple[np.ndarray, ...]:
  """Static bilinear taps (zero padding) from an n_in axis to the n_out `make_coord` grid."""
  u = np_unnormalize(make_coord_f32(n_out), n_in)
  i0 = np.floor(u).astype(np.int32)
  w1 = (u - i0.astype(np.float32)).astype(np.float32)
  w0 = (np.float32(1) - w1).astype(np.float32)
  i1 = i0 + 1
  w0 = np.where((i0 >= 0) & (i0 < n_in), w0, 0).astype(np.float32)
  w1 = np.where((i1 >= 0) & (i1 < n_in), w1, 0).astype(np.float32)
  return np.clip(i0, 0, n_in - 1), w0, np.clip(i1, 0, n_in - 1), w1


# ----------------------------------------------------------------------------------------------------------
# Full-grid row plans (`CLIT.query_band`): output positions grouped by their nearest feature pixel.


def centre_index(coords: np.ndarray, n: int) -> np.ndarray:
  """Nearest pixel (ties to even) of float32 coordinates on an n-pixel axis: `sampling.nearest_index`'s formula."""
  return np.round(np_unnormalize(np.asarray(coords, np.float32), n)).astype(np.int32)


def axis_plan(coords: np.ndarray, n: int, groups: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
  """Lay out positions along one axis as `slots` per feature pixel of `groups`.

  Args:
    coords: (L,) float32 output coordinates along the axis (each one's nearest pixel must be in `groups`).
    n: the feature map's size along the axis.
    groups: (m,) distinct feature pixels, one row of the layout each.
    slots: positions per group, at least the largest group.

  Returns:
    (slot (m, slots) int32: the position in `coords` of each slot, in increasing order, unused slots repeating
    the group's first position (0 for an empty group); pick (L,) int32: the flat slot `g * slots + a` of each
    position).
  """
  idx = centre_index(coords, n)
  groups = np.asarray(groups, np.int32)
  if len(np.unique(groups)) != len(groups):
    raise ValueError(f"groups {groups.tolist()[:8]} repeat a feature pixel")
  order_g = np.argsort(groups)
  sorted_g = groups[order_g]
  at = np.minimum(np.searchsorted(sorted_g, idx), max(len(groups) - 1, 0))
  outside = sorted_g[at] != idx if len(groups) else np.ones(len(idx), bool)
  if outside.any():
    raise ValueError(f"positions {np.flatnonzero(outside)[:5].tolist()} have their nearest pixel outside groups")
  gid = order_g[at]  # each position's row of the layout
  counts = np.bincount(gid, minlength=len(groups))
  if counts.max(initial=0) > slots:
    g = int(np.argmax(counts))
    raise ValueError(f"feature pixel {groups[g]} has {counts[g]} positions but the layout has {slots=}")
  members = np.argsort(gid, kind="stable")  # positions grouped by row, in increasing order within a row
  starts = np.cumsum(counts) - counts
  rank = np.empty(len(idx), np.int64)
  rank[members] = np.arange(len(idx)) - starts[gid[members]]
  first = np.where(counts > 0, np.append(members, 0)[starts], 0)  # a group's first position, 0 if it has none
  slot = np.repeat(first[:, None], slots, 1).astype(np.int32)
  slot[gid, rank] = np.arange(len(idx))
  return slot, (gid * slots + rank).astype(np.int32)


def largest_group(coords: np.ndarray, n: int) -> int:
  """The most output positions that share one nearest feature pixel (an error if any falls outside [0, n))."""
  idx = centre_index(coords, n)
  if idx.min() < 0 or idx.max() >= n:
    raise ValueError(f"output coordinates whose nearest pixel lies outside a {n}-pixel axis")
  return int(np.bincount(idx, minlength=n).max())


def row_bands(height: int, rows: int) -> list[np.ndarray]:
  """Output rows of each band of `rows` rows; the last band repeats row H - 1 to keep `rows` entries."""
  return [np.minimum(np.arange(r, r + rows), height - 1) for r in range(0, height, rows)]


def band_heights(height: int, feature_rows: Sequence[int]) -> list[int]:
  """Band heights for `band_plans` that leave no slot of a factored stage's layout empty at integer scales.

  `unit` is the most of the `height` output rows that share one row of a feature map of `feature_rows` (1 for
  none). A band of a divisor of `unit` rows, or of a multiple of it, then covers whole groups of rows; any other
  height leaves some of the layout's m x A slots empty, and they are computed all the same.

  Returns:
    The divisors of `unit` and its power-of-2 multiples that are below `height`, in increasing order, then
    `height`.
  """
  ys = make_coord_f32(height)
  unit = max([largest_group(ys, int(h)) for h in feature_rows], default=1)
  ladder = {d for d in range(1, unit + 1) if unit % d == 0} | {unit << k for k in range(1, height.bit_length() + 1)}
  return sorted(r for r in ladder if r < height) + [height]


def band_plans(height: int, width: int, feature_hws, rows: int) -> tuple[tuple, list[tuple]]:
  """Static layouts of a full H x W output decoded `rows` rows at a time on each stage's feature map.

  Args:
    height, width: the output size.
    feature_hws: (h, w) of every stage's feature map.
    rows: output rows per band.

  Returns:
    (cols, bands): cols holds per stage (slot (w, B), pick (W,)) over all W columns; bands holds per band
    (row numbers (rows,), per stage (feature rows (m,), slot (m, A), pick (rows,))), with m and A the same in
    every band (unused feature rows repeat the band's last one), so one compiled call serves every band.
  """
  ys, xs = make_coord_f32(height), make_coord_f32(width)
  cols, bands = [], [(r, []) for r in row_bands(height, rows)]
  for h, w in feature_hws:
    cols.append(axis_plan(xs, w, np.arange(w), largest_group(xs, w)))
    largest_group(ys, h)  # every row's nearest feature row in range
    iy = centre_index(ys, h)
    spans = [iy[r] for r, _ in bands]
    m = max(int(s.max() - s.min()) + 1 for s in spans)
    # Slots per feature row: the most rows of one band that share a feature row (not of the whole output, which
    # would leave slots empty in bands shorter than a feature row's rows).
    a = max(int(np.bincount(iy[np.unique(r)] - s.min()).max()) for (r, _), s in zip(bands, spans))
    for (r, stages), s in zip(bands, spans):
      groups = np.minimum(s.min() + np.arange(m), s.max()).astype(np.int32)
      k = len(np.unique(r))  # the last band's repeated rows share the slot of row H - 1
      slot, pick = axis_plan(ys[r[:k]], h, np.unique(groups), a)
      pick = pick[np.minimum(np.arange(len(r)), k - 1)]
      pad = m - slot.shape[0]  # the unique groups first, then copies of the last one (never picked)
      stages.append((groups, np.concatenate([slot, np.repeat(slot[-1:], pad, 0)]), pick))
  return tuple(cols), [(r, tuple(stages)) for r, stages in bands]
