"""CLIT's full-grid decoding by bands of output rows: the band layout, and each band's stages decoded.

What `CLIT.band_layout` and `CLIT.query_band` run (`inrsr.infer.inference` calls them per band); the functions take
the CLIT module (bound to its parameters for the decoding ones). A departure in the order of operations, not in the
function: the first MLP layer is a sum over (neighbour, head) blocks of attention weight x (value @ weight block),
and the products depend only on the feature pixel, so a stage with many output pixels per feature pixel forms them
once per pixel and shares them among the queries nearest to it (the row and column bias terms are likewise formed
per row and per column). A later stage whose maps at its full grid would exceed `CLIT.stage_maps_max_bytes` (256
MiB) is read from blocks of rows (`CLIT.stage_block`: the resampled features of the block's rows and one halo row
each side, then the 3x3 convolutions; `stage_windows` sizes them), each covering a band's feature rows and the r
rows around them that its queries read, so memory no longer grows with the scale (x32 from 512x512: 12.8 GiB of
third-stage maps for a `:small` CLIT3 otherwise). Outputs equal `CLIT.query`'s up to float32 rounding; the official
fixture's full grids match to 1e-5 either way.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from inrsr.models import clit_tables, sampling

PRECISION = jax.lax.Precision.HIGHEST  # as `clit.PRECISION`: the fixtures' 1e-5 needs full float32 products


def band_layout(model, lr_hw: Sequence[int], out_hw: Sequence[int], chunk: int):
  """Static arguments of `query_band` for a full `out_hw` output, in bands sized like `chunk` query points.

  `CLIT.band_layout`; the model need not be bound.

  A stage is factored (`decode_band`) when the output has at least `model.factor_threshold()` pixels per pixel of
  the stage's feature map. A band holds as many output rows as keep its largest intermediates (factored: the
  per-pixel products and the per-query attention; otherwise `query`'s MLP input) within the floats of one
  `chunk` of `query`'s MLP input, and a divisor or a multiple of `unit`, the most output rows that share a
  feature row of a factored stage: such bands fill every slot of their layout at integer scales (a factored
  stage computes its per-query terms for every slot, filled or not: 2-row bands of a x12 stage computed 6
  times the queries, 3.7 times the point path's time on 64 -> 768). The smallest such height is kept if none
  fits the budget.

  Returns:
    (kwargs, cols, bands): `query_band`'s static keywords {"scales", "factored", "windows"} ("scales" and
    "windows" are `encode`'s too), then `clit_tables.band_plans`' layouts.
  """
  height, width = (int(v) for v in out_hw)
  scales = model.query_kwargs(lr_hw, out_hw)["scales"]
  hws = model.stage_plan(lr_hw, scales)
  factored = tuple(height * width >= model.factor_threshold() * h * w for h, w in hws)
  n_nb, hidden = (2 * model.radius + 1) ** 2, int(model.hidden_list[0]) if model.hidden_list else 3
  budget = max(int(chunk), width) * model.mlp_in_dim()

  def floats(rows: int) -> int:
    total = 0
    for (h, w), fac in zip(hws, factored):
      if fac:  # the products per feature pixel, then logits, bias, attention and activations per query
        total += ((rows * h // height + 2) * w * n_nb * (model.head * hidden + model.base_dim)
                  + 2 * rows * width * (4 * n_nb * model.head + model.base_dim + 2 * hidden))
      else:
        total += 2 * rows * width * model.mlp_in_dim()
    return total

  heights = clit_tables.band_heights(height, [h for (h, _), fac in zip(hws, factored) if fac])
  rows = max([r for r in heights if floats(r) <= budget], default=heights[0])
  cols, bands = clit_tables.band_plans(height, width, hws, rows)
  return {"scales": scales, "factored": factored, "windows": stage_windows(model, hws, bands)}, cols, bands


def stage_windows(model, hws, bands) -> tuple[int, ...]:
  """Rows of each stage's blocks (`CLIT.stage_block`) for `band_layout`'s bands; 0: the whole map, from `encode`.

  A later stage whose maps (q, k, v and the resampled features they come from) exceed `model.stage_maps_max_bytes`
  at its full grid is computed in blocks of about `model.stage_block_bytes`, and of at least twice a band's feature
  rows with `model.block_margin()` rows each side: each band reads one block, and a block serves the bands of half
  its rows or more, so the convolutions cost at most twice those of the whole map.
  """
  windows = []
  for i, (h, w) in enumerate(hws):
    row_bytes = 4 * w * model.base_dim * 4
    if i == 0 or h * row_bytes <= model.stage_maps_max_bytes:
      windows.append(0)
      continue
    need = len(bands[0][1][i][0]) + 2 * model.block_margin()  # a band's feature rows and their neighbours
    # At least twice that, so that each block serves bands for half its rows or more (at most 2x the convs).
    rows = min(h, max(2 * need, model.stage_block_bytes // row_bytes))
    windows.append(0 if rows == h else rows)
  return tuple(windows)


def decode_band(model, stage: int, maps: dict, hw, ys, xs, plan, col, cell) -> jax.Array:
  """One stage's residual (normalised space) at the band's (R, W) grid, the first Linear factored per pixel.

  The MLP's input is the 49 attention-weighted values (and the cell), so its first Linear is a sum over
  (neighbour, head) blocks: `sum_n,h attn[q, n, h] * (v[p + n, h] @ W[n, h])`. The products `v @ W` depend
  on the feature pixel p and the block only, so they are formed once per pixel and shared by every query
  whose nearest pixel is p (s^2 queries at scale s); the queries sharing p are laid out together.
  """
  h, w = hw
  r = model.radius
  k = 2 * r + 1
  n_nb = k * k
  rows, rslot, rpick = plan
  cslot, cpick = col
  cy, cx = ys[rslot], xs[cslot]  # (m, A), (w, B)
  m, a = cy.shape
  b = cx.shape[1]
  ty_c, ty_i, ty_v = clit_tables.neighbour_table(h, r)
  tx_c, tx_i, tx_v = clit_tables.neighbour_table(w, r)
  ny_c, ny_i, ny_v = (jnp.asarray(t)[rows] for t in (ty_c, ty_i, ty_v))  # (m, k)
  nx_c, nx_i, nx_v = (jnp.asarray(t[:w]) for t in (tx_c, tx_i, tx_v))  # (w, k)
  rel_y = (cy[..., None] - ny_c[:, None, :]) * np.float32(h)  # (m, A, k), as `CLIT.decode_points`
  rel_x = (cx[..., None] - nx_c[:, None, :]) * np.float32(w)  # (w, B, k)
  niy, nix, nvalid = (a[None] for a in sampling.neighbourhoods(ny_i[:, None], ny_v[:, None], nx_i[None],
                                                                nx_v[None]))
  row0 = maps.get("row0", 0)  # a block of rows (`CLIT.stage_block`): its first row
  niy = niy - row0
  dim = model.base_dim
  c = dim // model.head
  v = sampling.gather(maps["v"], niy, nix, nvalid)[0].reshape(m, w, n_nb, model.head, c)
  kn = sampling.gather(maps["k"], niy, nix, nvalid)[0].reshape(m, w, n_nb, model.head, c)
  qy = jnp.broadcast_to(cy[:, :, None, None], (m, a, w, b)).reshape(1, -1)
  qx = jnp.broadcast_to(cx[None, None], (m, a, w, b)).reshape(1, -1)
  qv = sampling.bilinear(maps["q"], qy, qx, border=False, row0=row0, height=h).reshape(m, a, w, b, model.head, c)
  logits = jnp.einsum("iajbhc,ijnhc->iajbnh", qv, kn, precision=PRECISION) / np.float32(np.sqrt(c))
  by, bx = model.bias_parts(rel_y, rel_x)  # (m, A, k, head), (w, B, k, head)
  bias = by[:, :, None, None, :, None, :] + bx[None, None, :, :, None, :, :]  # (m, A, w, B, k, k, head)
  attn = jax.nn.softmax(logits + bias.reshape(m, a, w, b, n_nb, model.head), axis=4)
  kern, bias1 = model.imnets[stage].first_layer()
  u = jnp.einsum("ijnhc,nhcd->ijnhd", v, kern[:n_nb * dim].reshape(n_nb, model.head, c, -1),
                 precision=PRECISION)  # (m, w, N, head, hidden): once per feature pixel
  y1 = jnp.einsum("iajbnh,ijnhd->iajbd", attn, u, precision=PRECISION)
  rel_cell = jnp.stack([cell[1] * np.float32(h), cell[0] * np.float32(w)])
  y1 = y1 + (jnp.matmul(rel_cell, kern[n_nb * dim:], precision=PRECISION) + bias1)
  out = model.imnets[stage].tail(y1).reshape(m * a, w * b, -1)
  return out[rpick][:, cpick]


def query_band(model, feats: dict, ys: jax.Array, xs: jax.Array, cell: jax.Array, plans, cols, *,
               scales=None, factored: Sequence[bool] = (), windows: Sequence[int] = ()) -> jax.Array:
  """RGB of whole output rows, equal to `CLIT.query` at the (x, y) grid `xs` x `ys` up to float32 rounding.

  `CLIT.query_band` (the model bound to its parameters).

  In the `factored` stages the first MLP layer's products are formed once per feature pixel
  (`decode_band`), which divides that layer's cost by about the output pixels per feature pixel (s^2 at
  scale s for a one-stage model); the other stages run `query`'s decoding on the band. The sums run in
  another order than `query`'s, so outputs differ by float32 rounding (about 1e-6).

  Args:
    feats: `encode`'s output for one LR (batch 1), with the same `scales`.
    ys: (R,) float32 row coordinates of the band; xs: (W,) column coordinates (`make_coord` values).
    cell: (2,) the output's (x, y) cell.
    plans: per stage (feature rows (m,), slot (m, A), pick (R,)) of the band; cols: per stage (slot (w, B),
      pick (W,)); both from `band_layout`.
    scales: the stage scales (static; see `CLIT.stage_plan`).
    factored: per stage (static), whether to factor its first Linear; the others are decoded point by point
      as in `query`. Missing entries are False.
    windows: per stage (static), the rows of its blocks where it is computed in blocks: `feats` must then
      hold the band's block (`CLIT.stage_block`, found by `inrsr.infer.inference`). Missing entries are 0.

  Returns:
    (R, W, 3) RGB, `pred * 0.5 + 0.5`, not clipped.
  """
  if not model.band_decoding:
    raise ValueError("query_band needs local_attn, pos_bias and cell_decode on and freq_encoding off; use query")
  inp, feat = feats["inp"], feats["feat"]
  if feat.shape[0] != 1:
    raise ValueError(f"query_band decodes one image, got a batch of {feat.shape[0]}")
  sizes = model.stage_plan(feat.shape[1:3], scales)
  given = feats.get("stages", ())
  cell = cell.astype(jnp.float32)
  grid = (ys.shape[0], xs.shape[0])
  cy = jnp.broadcast_to(ys[:, None], grid).reshape(1, -1)
  cx = jnp.broadcast_to(xs[None, :], grid).reshape(1, -1)
  res = None
  for i, hw in enumerate(sizes):
    maps = given[i] if i < len(given) and given[i] else model.stage_maps(feat, i, hw)
    rows = windows[i] if i < len(windows) else 0
    if rows and tuple(maps["v"].shape[1:3]) != (rows, hw[1]) or not rows and "row0" in maps:
      raise ValueError(f"stage {i}: feats hold maps of size {tuple(maps['v'].shape[1:3])}, but windows={windows} "
                       f"needs {(rows, hw[1]) if rows else tuple(hw)} (a `stage_block` when windowed)")
    if i < len(factored) and factored[i]:
      out = decode_band(model, i, maps, hw, ys, xs, plans[i], cols[i], cell)
    else:
      cells = jnp.broadcast_to(cell, (1, cy.shape[1], 2))
      out = model.decode_points(i, maps, hw, cy, cx, cells)[0].reshape(*grid, -1)
    res = out if res is None else out + np.float32(model.cascade_weight) * res
  skip = sampling.bilinear(inp, cy, cx, border=True)[0].reshape(res.shape)
  return (res + skip) * 0.5 + 0.5
