"""Chunked arbitrary-scale inference: peak memory is set by the chunk of query points, not the output size.

`upscale_rows` yields the output in bands of rows as the chunks complete (what `inrsr.infer.upscaling` streams to
files); `upscale` is its one-band case and returns the whole (H, W, 3) frame.

One op for every registered model (no file I/O here; files are `inrsr.infer.upscaling`'s job):
  * fitting models (SR-INR/VR-INR, batch keys lr, coords, lr_size) are queried at (x, y, t);
  * generalising models (LIIF, HIIF, LIT/CLIT, batch keys lr, coords, cells) run `encode` once and `query` per
    chunk with each query's cell (2 / W, 2 / H), times the model's test-time factor by default
    (`inrsr.models.cell_scale`: HIIF's official clipping, x max(s / 4, 1); 1 for the others), so every caller
    (evaluate, upscale of files and clips, zero-shot, notebooks) decodes with the same cells (`cell_scale=1.0`
    opts out). A model whose queries interact (HIIF's attention averages over every query of a call,
    `queries_independent = False`) gives the result of one call over the whole output, the official
    evaluation's setting, streamed in passes: its module's `decode_global` sums the attention statistics over
    every query, chunk by chunk (one pass per attention block, each chunk's activations kept between the passes
    where they fit, `hiif.KEPT_MAX_BYTES`), then the chunks are decoded with them and yielded like any other
    model's (`_global_predictions`); neither the output's coordinates nor the output are ever whole (with
    `chunk` 0, or one chunk, it is one plain call). A model may define
    `query_kwargs(lr_hw, out_hw)` for static query arguments (CLIT's stage scales). A model with
    `band_decoding` (LIT/CLIT) is decoded in bands of whole rows instead (`band_layout`, `query_band`: the first
    MLP layer's products formed once per feature pixel; `band_decoding=False` queries it point by point).
  * whole-clip video models (BVSR-IK, batch key lrs: a fixed integer `scale`, a bidirectional recurrence over
    every frame): `upscale_clip_frames` runs the model frame by frame (its module's `stream_clip`: LR-sized
    states of the clip, one frame's activations) and yields the HR frames one at a time, so only one (H, W, 3)
    output frame is held; `upscale_clip` stacks them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from inrsr import coords, models


@functools.lru_cache(maxsize=16)
def _predictor(model):
  return jax.jit(lambda params, lr, q: model.apply({"params": params}, lr, q))


@functools.lru_cache(maxsize=16)
def _encoder(model, kwargs: tuple = ()):
  return jax.jit(lambda params, lr: model.apply({"params": params}, lr, method="encode", **dict(kwargs)))


@functools.lru_cache(maxsize=32)
def _querier(model, kwargs: tuple):
  return jax.jit(lambda params, feats, q, cell: model.apply({"params": params}, feats, q, cell, method="query",
                                                            **dict(kwargs)))


@functools.lru_cache(maxsize=32)
def _band_querier(model, kwargs: tuple):
  return jax.jit(lambda params, feats, ys, xs, cell, plans, cols: model.apply(
      {"params": params}, feats, ys, xs, cell, plans, cols, method="query_band", **dict(kwargs)))


CHUNK_MULTIPLE = 64
"""Chunks of independent queries are rounded up to a multiple of this many points: XLA:CPU's matrix products round
the rows of a partial tile of rows differently from a whole tile's, and a model that hashes learned values
(SR-INR's texture codes) can then move a point to another cell, so a point's output would depend on where the
chunk boundaries fall. (HIIF's chunks are its attention's groups and are kept as given.)"""


def _chunks(total: int, chunk: int, multiple: int = 1):
  """(start, size, padded size) of each chunk of `total` points (chunk 0: one chunk; others rounded up to a
  multiple of `multiple`)."""
  chunk = -(-chunk // multiple) * multiple
  chunk = min(chunk, total) if chunk > 0 else total
  return [(s, min(chunk, total - s), chunk) for s in range(0, total, chunk)]


def upscale(model, params, lr: np.ndarray, height: int, width: int, *, t: float = 0.0, chunk: int = 65536,
            progress: bool = False, cell_scale: float | None = None, band_decoding: bool = True) -> np.ndarray:
  """Predict an HR frame of any size from an LR frame, `chunk` query points at a time.

  The whole frame in one array: `upscale_rows` with one band of all H rows. For outputs too large to hold,
  iterate `upscale_rows` instead (`inrsr.infer.upscaling` writes files that way).

  Args:
    model: a registered inrsr model (`inrsr.models.from_config`).
    params: its parameters (the "params" collection).
    lr: (h, w, 3) float32 LR frame in [0, 1].
    height: output rows H, > 0.
    width: output columns W, > 0.
    t: the frame's time coordinate (fitting models; 0 for images).
    chunk: query points per call (the last chunk is padded, so one compilation serves all chunks), rounded up to
      a multiple of 64 where queries are independent (`CHUNK_MULTIPLE`: the same outputs whatever the chunk); 0
      queries the whole output in one call. Models whose queries interact always give the one-call result.
    progress: show a tqdm progress bar.
    cell_scale: generalising models: the cell passed is (2 / W, 2 / H) times this factor. None (the default):
      the model's test-time rule, `inrsr.models.cell_scale(model, (h, w), (H, W))` (HIIF: the official clipping
      max(s / 4, 1); 1 for the other models); a number: exactly that factor (1.0: the plain cell).
    band_decoding: models with `band_decoding` (LIT/CLIT) decode whole rows, and a stage with many output
      pixels per feature pixel forms its first MLP layer's products once per feature pixel (`CLIT.query_band`:
      the same outputs up to float32 rounding); False queries them point by point like every other model.
      Used when `chunk` > 0.

  Returns:
    (H, W, 3) float32 in [0, 1].
  """
  (_, out), = upscale_rows(model, params, lr, height, width, t=t, chunk=chunk, rows=height, cell_scale=cell_scale,
                           progress=progress, band_decoding=band_decoding)
  return out


def upscale_rows(model, params, lr: np.ndarray, height: int, width: int, *, t: float = 0.0, chunk: int = 65536,
                 rows: int | None = None, cell_scale: float | None = None, progress: bool = False,
                 band_decoding: bool = True):
  """Predict an HR frame band by band: yields (row_start, band) from the top, bands of `rows` rows.

  The computation is `upscale`'s (the same chunks of query points, padded and dispatched alike), so the bands
  stacked equal `upscale`'s output bit for bit whatever `rows` is; only the band being filled is held, so host
  memory is about `rows * W * 3` float32 plus two chunks in flight, whatever H is. Each band is a fresh array
  (the caller may keep it). A model whose queries interact (`queries_independent = False`, HIIF) first passes
  over every chunk to sum its attention statistics (the official one-call result needs every query), then
  decodes and yields like the others, in the same bounded memory.

  Args:
    model, params, lr, height, width, t, chunk, cell_scale, progress, band_decoding: as for `upscale`.
    rows: rows per band (the last band may be shorter); None: enough rows to hold one chunk of query points
      (all H when `chunk` is 0).

  Yields:
    (row_start, band) with band (n_rows, W, 3) float32 clipped to [0, 1], row_start = 0, rows, 2 * rows, ...
  """
  if height <= 0 or width <= 0:
    raise ValueError(f"output size {height}x{width} must be positive")
  if chunk < 0:
    raise ValueError(f"{chunk=} must be >= 0")
  if rows is None:
    rows = -(-chunk // width) if chunk > 0 else height
  if rows <= 0:
    raise ValueError(f"{rows=} must be > 0")
  cell_scale = resolve_cell_scale(model, lr.shape[:2], (height, width), cell_scale)
  return _bands(model, params, lr, height, width, t, chunk, min(rows, height), cell_scale, progress, band_decoding)


def decode_bytes(model, params, lr_hw, out_hw, chunk: int = 65536, band_decoding: bool = True) -> tuple[int, int]:
  """The memory a generalising model takes to decode an `lr_hw` -> `out_hw` output, for one image.

  Compiled, not run: the encoder for the output's static arguments, whose outputs (CLIT's stage maps, except
  those of stages computed in blocks of rows, two blocks each; the others' LR-sized maps) are held while the
  output is decoded, its temporaries while it runs, and, for a model that decodes in bands, the band call's
  temporaries and output twice (two bands in flight); for a model whose module keeps activations between its
  passes (HIIF's `decode_global`), those too. A fitting model decodes from the LR itself in bounded chunks: (0, 0).

  Args:
    model: a registered model.
    params: its parameters (only their shapes are read).
    lr_hw: the LR's (h, w).
    out_hw: the output's (H, W).
    chunk, band_decoding: as for `upscale`.

  Returns:
    (bytes of the features (and kept activations), the peak: those plus the larger of the encoder's and the
    decoding's working set).
  """
  if not models.is_generalising(model):
    return 0, 0
  lr = jax.ShapeDtypeStruct((1, int(lr_hw[0]), int(lr_hw[1]), 3), jnp.float32)
  bands = _decodes_in_bands(model, chunk, band_decoding)
  windows = ()
  if bands:
    encoder, decode, cols, layout, windows = _band_programs(model, lr_hw, out_hw, chunk)
  else:
    encoder = _encoder(model, _query_kwargs(model, lr_hw, out_hw))
  feats = jax.eval_shape(encoder, params, lr)
  nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
  features = nbytes(feats)
  kept = models.module_hook(model, "kept_bytes")
  total = int(out_hw[0]) * int(out_hw[1])
  if kept is not None and 0 < chunk < total:  # activations held between `decode_global`'s passes
    features += kept(model, sum(padded for _, _, padded in _chunks(total, chunk)))
  working = []
  analysis = encoder.lower(params, lr).compile().memory_analysis()
  if analysis is not None:
    working.append(analysis.temp_size_in_bytes)
  if bands:
    stages = list(feats["stages"])
    for i, hw, rows in windows:  # blocks of rows: two of a stage held while one replaces the other
      maker = _block_maker(model, i, hw, rows)
      stages[i] = jax.eval_shape(maker, params, feats["feat"], np.int32(0))
      features += 2 * nbytes(stages[i])
      analysis = maker.lower(params, feats["feat"], np.int32(0)).compile().memory_analysis()
      if analysis is not None:
        working.append(analysis.temp_size_in_bytes)
    rows, plans = layout[0]
    ys, xs = coords.make_coord_f32(int(out_hw[0])), coords.make_coord_f32(int(out_hw[1]))
    cell = np.zeros((2,), np.float32)
    analysis = decode.lower(params, {**feats, "stages": tuple(stages)}, ys[rows], xs, cell, plans,
                            cols).compile().memory_analysis()
    if analysis is not None:
      working.append(2 * (analysis.temp_size_in_bytes + analysis.output_size_in_bytes))
  return int(features), int(features + max(working, default=0))


def resolve_cell_scale(model, lr_hw, out_hw, cell_scale: float | None) -> float:
  """The cell factor a decode uses: the model's rule (`inrsr.models.cell_scale`) for None, else `cell_scale`.

  Args:
    model: a registered model.
    lr_hw: (h, w) of the LR.
    out_hw: (H, W) of the output.
    cell_scale: None (the model's rule) or an explicit factor, finite and > 0.

  Returns:
    The factor.
  """
  if cell_scale is None:
    return models.cell_scale(model, lr_hw, out_hw)
  if not np.isfinite(cell_scale) or cell_scale <= 0:
    raise ValueError(f"{cell_scale=} must be None (the model's rule) or a finite number > 0")
  return float(cell_scale)


def _bands(model, params, lr, height, width, t, chunk, rows, cell_scale, progress, band_decoding):
  """`upscale_rows`'s generator (a separate function so that bad arguments raise at the call)."""
  if models.is_generalising(model) and not models.hook(model, "queries_independent"):
    predictions = functools.partial(_global_predictions, model, params, lr, height, width, chunk, cell_scale,
                                    progress)
  elif _decodes_in_bands(model, chunk, band_decoding):
    predictions = functools.partial(_band_predictions, model, params, lr, height, width, chunk, cell_scale, progress)
  else:
    predictions = functools.partial(_point_predictions, model, params, lr, height, width, t, chunk, cell_scale,
                                    progress)
  row, band, filled = 0, None, 0
  for pred in predictions():
    pos = 0
    while pos < len(pred):
      n_rows = min(rows, height - row)
      if band is None:
        band = np.empty((n_rows * width, pred.shape[-1]), np.float32)
      take = min(len(pred) - pos, len(band) - filled)
      band[filled:filled + take] = pred[pos:pos + take]
      pos, filled = pos + take, filled + take
      if filled == len(band):
        yield row, np.clip(band, 0.0, 1.0, out=band).reshape(n_rows, width, -1)
        row, band, filled = row + n_rows, None, 0


def _in_flight(calls):
  """Fetch each (device array, leading entries kept) of `calls` as NumPy, dispatching call i + 1 before fetching i."""
  pending = None
  for nxt in calls:
    if pending is not None:
      yield np.asarray(pending[0])[:pending[1]]
    pending = nxt
  if pending is not None:
    yield np.asarray(pending[0])[:pending[1]]


def _decodes_in_bands(model, chunk, band_decoding) -> bool:
  """Whether `upscale` decodes `model` band by band (`_band_predictions`) rather than by chunks of points."""
  return (models.is_generalising(model) and models.hook(model, "queries_independent") and band_decoding
          and chunk > 0 and models.hook(model, "band_decoding"))


@functools.lru_cache(maxsize=32)
def _block_maker(model, stage: int, hw: tuple, rows: int):
  return jax.jit(lambda params, feat, row0: model.apply({"params": params}, feat, row0, method="stage_block",
                                                        stage=stage, hw=hw, rows=rows))


class _Blocks:
  """The stage maps that `band_layout` computes in blocks of rows (`CLIT.stage_block`): one block per such stage
  held at a time, the next one made when a band reads rows outside it (bands come in order, top to bottom)."""

  def __init__(self, model, params, feats, windows):
    """windows: (stage, (h, w), rows) of each stage computed in blocks."""
    self.model, self.params, self.feats, self.windows = model, params, feats, tuple(windows)
    self.held, self.made = {}, 0  # stage -> (row0, block); blocks computed so far

  def __call__(self, plans) -> dict:
    """The encoder's features with the block each windowed stage of a band (its `band_plans` entry) reads."""
    if not self.windows:
      return self.feats
    stages, margin = list(self.feats["stages"]), self.model.block_margin()
    for i, (h, w), rows in self.windows:
      groups = np.asarray(plans[i][0])  # the band's feature rows
      lo, hi = max(int(groups.min()) - margin, 0), min(int(groups.max()) + margin, h - 1)
      row0, block = self.held.get(i, (None, None))
      if row0 is None or lo < row0 or hi >= row0 + rows:
        row0 = min(lo, h - rows)
        block = _block_maker(self.model, i, (h, w), rows)(self.params, self.feats["feat"], np.int32(row0))
        self.held[i] = (row0, block)
        self.made += 1
      stages[i] = block
    return {**self.feats, "stages": tuple(stages)}


def _band_programs(model, lr_hw, out_hw, chunk):
  """Band decoding's jitted encoder and band call for an output, its layout, and the stages computed in blocks of
  rows: (encoder, decode, cols, bands, windows), windows holding (stage, (h, w), rows) of each such stage."""
  kwargs, cols, bands = model.band_layout(tuple(lr_hw), tuple(out_hw), chunk)
  encoder = _encoder(model, (("scales", kwargs["scales"]), ("windows", kwargs["windows"])))
  hws = model.stage_plan(tuple(lr_hw), kwargs["scales"])
  windows = tuple((i, tuple(int(v) for v in hws[i]), rows) for i, rows in enumerate(kwargs["windows"]) if rows)
  return encoder, _band_querier(model, tuple(sorted(kwargs.items()))), cols, bands, windows


def _query_kwargs(model, lr_hw, out_hw) -> tuple:
  """The static arguments of a generalising model's encode and point queries for an output (`query_kwargs`)."""
  own = models.hook(model, "query_kwargs")
  return tuple(sorted((own(tuple(lr_hw), tuple(out_hw)) if own is not None else {}).items()))


def _band_setup(model, params, lr, height, width, chunk, cell_scale):
  """Band decoding's compiled call and its per-image arguments: (decode, feats_of, ys, xs, cell, cols, bands).

  Band b is decoded by `decode(params, feats_of(plans_b), ys[rows_b], xs, cell, plans_b, cols)` with
  (rows_b, plans_b) = bands[b]; every band has the same shapes. `feats_of` adds the blocks of rows of the stages
  computed in blocks (`_Blocks`), to be called for the bands in order.
  """
  encoder, decode, cols, bands, windows = _band_programs(model, lr.shape[:2], (height, width), chunk)
  feats = encoder(params, jnp.asarray(lr, jnp.float32)[None])
  ys, xs = coords.make_coord_f32(height), jnp.asarray(coords.make_coord_f32(width))
  cell, cols = jnp.asarray(_cell(height, width, cell_scale)), jax.tree.map(jnp.asarray, cols)
  return decode, _Blocks(model, params, feats, windows), ys, xs, cell, cols, bands


def _point_setup(model, params, lr, height, width, cell_scale):
  """A generalising model's compiled point query and its per-image arguments: (query, feats, cell (2,))."""
  kwargs = _query_kwargs(model, lr.shape[:2], (height, width))
  feats = _encoder(model, kwargs)(params, jnp.asarray(lr, jnp.float32)[None])
  return _querier(model, kwargs), feats, _cell(height, width, cell_scale)


def repeated_call(model, params, lr, height: int, width: int, *, chunk: int, band_decoding: bool = True):
  """The compiled call `upscale` makes again and again for an (h, w) -> (H, W) output, and its arguments.

  For benchmarks and memory reports (`tools.benchmarking`): what is measured is exactly inference's call. A
  fitting model: one chunk of `chunk` (x, y, t) queries; a generalising model with independent queries: one
  band of whole rows (`CLIT.query_band`) when it decodes in bands, else one chunk of point queries. Every band,
  and every chunk, has the same shapes. The encoder's call, made once, is not included.

  Args:
    model, params, lr, height, width, band_decoding: as for `upscale`.
    chunk: query points per call (> 0).

  Returns:
    (fn, args): `fn(*args)` is one band's or one chunk's call (a jitted function, so `fn.lower(*args)` works).
  """
  if chunk <= 0:
    raise ValueError(f"repeated_call: {chunk=} must be > 0")
  size = _chunks(height * width, chunk, CHUNK_MULTIPLE)[0][2]  # a chunk of point queries, as `upscale` pads it
  if not models.is_generalising(model):
    if is_clip_model(model):
      raise ValueError(f"repeated_call: {type(model).__name__} is a whole-clip model, decoded frame by frame")
    q = jnp.zeros((size, 3), jnp.float32)
    return _predictor(model), (params, jnp.asarray(lr, jnp.float32), q)
  if not models.hook(model, "queries_independent"):
    raise ValueError(f"repeated_call: {type(model).__name__}'s queries interact (two passes per chunk)")
  if _decodes_in_bands(model, chunk, band_decoding):
    decode, feats_of, ys, xs, cell, cols, bands = _band_setup(model, params, lr, height, width, chunk, 1.0)
    rows, plans = bands[0]
    return decode, (params, feats_of(plans), ys[rows], xs, cell, plans, cols)
  query, feats, cell = _point_setup(model, params, lr, height, width, 1.0)
  q = jnp.zeros((1, size, 2), jnp.float32)
  return query, (params, feats, q, jnp.broadcast_to(jnp.asarray(cell), q.shape))


def _band_predictions(model, params, lr, height, width, chunk, cell_scale, progress):
  """(n, C) predictions of whole output rows in order, band by band (`CLIT.band_layout` / `query_band`)."""
  decode, feats_of, ys, xs, cell, cols, bands = _band_setup(model, params, lr, height, width, chunk, cell_scale)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    bands = tqdm.tqdm(bands, desc=f"upscale {lr.shape[1]}x{lr.shape[0]} -> {width}x{height}", leave=False)

  def dispatch(r, plans):
    feats = feats_of(plans)
    out = decode(params, feats, jnp.asarray(ys[r]), xs, cell, jax.tree.map(jnp.asarray, plans), cols)
    return out.reshape(-1, out.shape[-1]), min(len(r), height - int(r[0])) * width  # the last band's repeats go

  yield from _in_flight(dispatch(r, plans) for r, plans in bands)


def _point_predictions(model, params, lr, height, width, t, chunk, cell_scale, progress):
  """(n, C) predictions of `chunk` query points at a time, in raster order."""
  total = height * width
  pieces = _chunks(total, chunk, CHUNK_MULTIPLE)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    pieces = tqdm.tqdm(pieces, desc=f"upscale {lr.shape[1]}x{lr.shape[0]} -> {width}x{height}", leave=False)
  if models.is_generalising(model):
    query, feats, cell = _point_setup(model, params, lr, height, width, cell_scale)

    def dispatch(flat):
      q = coords.grid_xy_f32(flat // width, flat % width, height, width)
      return query(params, feats, jnp.asarray(q)[None], jnp.asarray(np.broadcast_to(cell, q.shape))[None])[0]
  else:
    predict, lr_j = _predictor(model), jnp.asarray(lr, jnp.float32)

    def dispatch(flat):
      return predict(params, lr_j, jnp.asarray(coords.pixel_coords(flat // width, flat % width, height, width, t)))

  yield from _in_flight((dispatch(np.arange(start, start + padded) % total), n) for start, n, padded in pieces)


def _cell(height: int, width: int, cell_scale: float) -> np.ndarray:
  """The (x, y) cell of an H x W output in float32, times `cell_scale` in float32 (as PyTorch computes it)."""
  return np.array([2.0 / width, 2.0 / height], np.float32) * np.float32(cell_scale)


def _global_predictions(model, params, lr, height, width, chunk, cell_scale, progress):
  """(n, C) predictions in raster order of a model whose queries interact (HIIF): one call's result, streamed.

  The model's module gives `decode_global(model, variables, feats, chunks, queries)`: the statistics every query
  shares, summed chunk by chunk, then each chunk decoded with them. The chunks are `_point_predictions`'s (the
  last padded with repeats, masked out of the statistics), their coordinates made from the pixel indices in each
  pass, so no more than a chunk's queries are held (and, where they fit, the activations `decode_global` keeps).
  With `chunk` 0 or one chunk for the whole output: the plain one-call `query`.
  """
  query, feats, cell = _point_setup(model, params, lr, height, width, cell_scale)
  total = height * width
  decode_global = models.module_hook(model, "decode_global")
  if chunk <= 0 or chunk >= total or decode_global is None:
    flat = np.arange(total)
    q = coords.grid_xy_f32(flat // width, flat % width, height, width)
    yield np.asarray(query(params, feats, jnp.asarray(q)[None], jnp.asarray(np.broadcast_to(cell, q.shape))[None])[0])
    return
  pieces = _chunks(total, chunk)
  cells = jnp.asarray(np.broadcast_to(cell, (1, chunk, 2)))

  def inputs(start, padded):
    flat = np.arange(start, start + padded)
    q = coords.grid_xy_f32(flat % total // width, flat % total % width, height, width)
    return jnp.asarray(q)[None], cells, jnp.asarray(flat < total)[None]

  def passes(desc):
    if not progress:
      return pieces
    import tqdm  # pylint: disable=g-import-not-at-top
    return tqdm.tqdm(pieces, desc=f"{desc} {lr.shape[1]}x{lr.shape[0]} -> {width}x{height}", leave=False)

  outputs = decode_global(model, {"params": params}, feats,
                          lambda: (inputs(start, padded) for start, _, padded in passes("pass")),
                          sum(padded for _, _, padded in pieces))
  yield from _in_flight((out[0], n) for out, (_, n, _) in zip(outputs, pieces))


# The 8 symmetries of the square as (transpose, flip rows, flip columns): flips first, then the transpose.
DIHEDRAL = tuple((tr, fr, fc) for tr in (False, True) for fr in (False, True) for fc in (False, True))


def _dihedral(x: np.ndarray, transpose: bool, flip_rows: bool, flip_cols: bool) -> np.ndarray:
  x = x[::-1] if flip_rows else x
  x = x[:, ::-1] if flip_cols else x
  return x.transpose(1, 0, 2) if transpose else x


def _dihedral_inverse(x: np.ndarray, transpose: bool, flip_rows: bool, flip_cols: bool) -> np.ndarray:
  x = x.transpose(1, 0, 2) if transpose else x
  x = x[:, ::-1] if flip_cols else x
  return x[::-1] if flip_rows else x


def upscale_self_ensemble(model, params, lr: np.ndarray, height: int, width: int, *, chunk: int = 65536,
                          cell_scale: float | None = None, progress: bool = False) -> np.ndarray:
  """The geometric self-ensemble: the mean of `upscale` over the 8 flips and transposes of the LR, each undone.

  EDSR's "+" and ZSSR's test-time augmentation. Only for generalising models (they see nothing but the LR, and
  pixel-centre query grids map onto themselves under flips and transposes); a fitting model's positional
  tables are tied to the frame's orientation. The output is held whole; 8 times `upscale`'s compute. Every pass
  uses the cell factor of the untransformed upscale (the model's rule for None, as `upscale`).

  Args:
    model, params, lr, height, width, chunk, cell_scale, progress: as for `upscale`.

  Returns:
    (H, W, 3) float32 in [0, 1].
  """
  if not models.is_generalising(model):
    raise ValueError(f"{type(model).__name__} is a fitting model: its positional tables are not symmetric under "
                     "flips, so the self-ensemble is for generalising models (LIIF, HIIF, LIT/CLIT) only")
  cell_scale = resolve_cell_scale(model, lr.shape[:2], (height, width), cell_scale)
  total = np.zeros((height, width, lr.shape[-1]), np.float64)
  for g in DIHEDRAL:
    h, w = (width, height) if g[0] else (height, width)
    out = upscale(model, params, np.ascontiguousarray(_dihedral(lr, *g)), h, w, chunk=chunk, cell_scale=cell_scale,
                  progress=progress)
    total += _dihedral_inverse(out, *g)
  return (total / len(DIHEDRAL)).astype(np.float32)


def is_clip_model(model) -> bool:
  """A model that upscales a whole clip at its fixed integer `scale` (batch key "lrs", e.g. BVSR-IK)."""
  return models.hook(model, "batch_keys") == ("lrs",)


def upscale_clip_frames(model, params, frames):
  """Upscale a clip with a whole-clip video model (`is_clip_model`), yielding the HR frames one at a time.

  The model's module gives `stream_clip(model, params, frames)`, which runs the model frame by frame (BVSR-IK:
  its backward pass over the LR clip, then its forward pass, each step followed by that frame's upsampling) and
  yields each HR frame as it is made, so only LR-sized states and one frame's activations are held, whatever
  the clip's length. The frames equal `__call__`'s outputs on the whole clip up to float32 rounding (batches
  of one frame instead of T).

  Args:
    model: e.g. BVSR-IK's KCANet.
    params: its parameters.
    frames: T LR frames (h, w, 3) float32 in [0, 1], all the same size.

  Yields:
    T frames (scale * h, scale * w, 3) float32 clipped to [0, 1], in order.
  """
  if not is_clip_model(model):
    keys = models.hook(model, "batch_keys")
    raise ValueError(f"{type(model).__name__} is not a whole-clip model (batch_keys {keys}, expected ('lrs',))")
  shapes = {f.shape for f in frames}
  if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
    raise ValueError(f"a clip needs T frames of one (h, w, 3) shape, got shapes {sorted(shapes)}")
  return _clip_frames(model, params, frames)


def _clip_frames(model, params, frames):
  """`upscale_clip_frames`'s generator (a separate function so that bad arguments raise at the call)."""
  stream = models.module_hook(model, "stream_clip")
  for out in stream(model, params, [np.asarray(f, np.float32) for f in frames]):
    yield np.clip(out, 0.0, 1.0)


def upscale_clip(model, params, frames) -> np.ndarray:
  """Upscale a clip with a whole-clip video model (`is_clip_model`): `upscale_clip_frames` stacked.

  Args:
    model: e.g. BVSR-IK's KCANet.
    params: its parameters.
    frames: T LR frames (h, w, 3) float32 in [0, 1], all the same size.

  Returns:
    (T, scale * h, scale * w, 3) float32 clipped to [0, 1].
  """
  return np.stack(list(upscale_clip_frames(model, params, frames)))
