"""Chunked arbitrary-scale inference: peak memory is set by the chunk of query points, not the output size.

One op for every registered model (no file I/O here; files are `inrsr.upscaling`'s job):
  * fitting models (SR-INR/VR-INR, batch keys lr, coords, lr_size) are queried at (x, y, t);
  * generalising models (LIIF, HIIF, LIT/CLIT, batch keys lr, coords, cells) run `encode` once and `query` per
    chunk with each query's cell (2 / W, 2 / H). A model whose queries interact (HIIF's attention averages over
    every query of a call, `queries_independent = False`) is evaluated as one call over the whole output, the
    official evaluation's setting: with `chunk > 0` through its module's `query_global`, which accumulates the
    attention statistics chunk by chunk and gives the one-call result in bounded memory. A model may define
    `query_kwargs(lr_hw, out_hw)` for static query arguments (CLIT's stage scales).
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


def _chunks(total: int, chunk: int):
  """(start, size, padded size) of each chunk of `total` points (chunk 0: one chunk)."""
  chunk = min(chunk, total) if chunk > 0 else total
  return [(s, min(chunk, total - s), chunk) for s in range(0, total, chunk)]


def upscale(model, params, lr: np.ndarray, height: int, width: int, *, t: float = 0.0, chunk: int = 65536,
            progress: bool = False, cell_scale: float = 1.0) -> np.ndarray:
  """Predict an HR frame of any size from an LR frame, `chunk` query points at a time.

  Args:
    model: a registered inrsr model (`inrsr.models.from_config`).
    params: its parameters (the "params" collection).
    lr: (h, w, 3) float32 LR frame in [0, 1].
    height: output rows H, > 0.
    width: output columns W, > 0.
    t: the frame's time coordinate (fitting models; 0 for images).
    chunk: query points per call (the last chunk is padded, so one compilation serves all chunks); 0 queries
      the whole output in one call. Models whose queries interact always give the one-call result.
    progress: show a tqdm progress bar.
    cell_scale: generalising models: the cell passed is (2 / W, 2 / H) times this (HIIF's test-time cell
      clipping passes max(scale / 4, 1)).

  Returns:
    (H, W, 3) float32 in [0, 1].
  """
  if height <= 0 or width <= 0:
    raise ValueError(f"output size {height}x{width} must be positive")
  if chunk < 0:
    raise ValueError(f"{chunk=} must be >= 0")
  total = height * width
  generalising = models.is_generalising(model)
  independent = getattr(model, "queries_independent", True)
  lr_j = jnp.asarray(lr, jnp.float32)
  out = np.empty((total, lr.shape[-1]), np.float32)
  if generalising and not independent:
    return _upscale_global(model, params, lr_j, height, width, chunk, cell_scale)
  pieces = _chunks(total, chunk)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    pieces = tqdm.tqdm(pieces, desc=f"upscale {lr.shape[1]}x{lr.shape[0]} -> {width}x{height}", leave=False)
  if generalising:
    kwargs = model.query_kwargs(lr.shape[:2], (height, width)) if hasattr(model, "query_kwargs") else {}
    kwargs = tuple(sorted(kwargs.items()))
    feats = _encoder(model, kwargs)(params, lr_j[None])
    query = _querier(model, kwargs)
    cell = _cell(height, width, cell_scale)
  else:
    predict = _predictor(model)
  for start, n, padded in pieces:
    flat = np.arange(start, start + padded) % total
    if generalising:
      q = coords.grid_xy_f32(flat // width, flat % width, height, width)
      cells = np.broadcast_to(cell, q.shape)
      pred = np.asarray(query(params, feats, jnp.asarray(q)[None], jnp.asarray(cells)[None]))[0]
    else:
      q = coords.pixel_coords(flat // width, flat % width, height, width, t)
      pred = np.asarray(predict(params, lr_j, jnp.asarray(q)))
    out[start:start + n] = pred[:n]
  return np.clip(out.reshape(height, width, -1), 0.0, 1.0)


def _cell(height: int, width: int, cell_scale: float) -> np.ndarray:
  """The (x, y) cell of an H x W output in float32, times `cell_scale` in float32 (as PyTorch computes it)."""
  return np.array([2.0 / width, 2.0 / height], np.float32) * np.float32(cell_scale)


def _upscale_global(model, params, lr_j, height: int, width: int, chunk: int, cell_scale: float) -> np.ndarray:
  """All H x W queries of a model with interacting queries as one call (bounded by `chunk` when > 0)."""
  import importlib  # pylint: disable=g-import-not-at-top

  total = height * width
  flat = np.arange(total)
  q = jnp.asarray(coords.grid_xy_f32(flat // width, flat % width, height, width))[None]
  cells = jnp.broadcast_to(jnp.asarray(_cell(height, width, cell_scale)), q.shape)
  feats = _encoder(model)(params, lr_j[None])
  query_global = getattr(importlib.import_module(type(model).__module__), "query_global", None)
  if chunk > 0 and query_global is not None and chunk < total:
    pred = query_global(model, {"params": params}, feats, q, cells, chunk)[0]
  else:
    pred = np.asarray(_querier(model, ())(params, feats, q, cells))[0]
  return np.clip(np.asarray(pred).reshape(height, width, -1), 0.0, 1.0)
