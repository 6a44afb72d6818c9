"""Multiresolution hash-grid lookup plus 2**D-vertex weighted gather: corner rules, reference and public op.

Per point n and level l the op computes `sum_c weights[n, l, c] * tables[l, idx_c]` (DESIGN.md, "SR-INR /
VR-INR forward pass", steps 3-6):
  u = (p + 1) / 2 * N (p clipped to [-1, 1]), V0 = floor(u), frac = u - V0; corner c adds bit d of c to
  dimension d; a level is dense when (N + 2)**D <= T (idx = sum_d V[d] (N + 2)**d), hashed otherwise
  (idx = XOR_d V[d] * PI[d] mod T, in uint32 arithmetic).
`hashgrid_reference` (pure jnp, chunked over N) supports D in 1..6; the paper's model uses D = 6.

The Pallas kernel (Triton backend, NVIDIA GPUs; interpret mode on CPU) never writes the (N, L, 2**D) indices or
the (N, L, 2**D, F) gathered rows to HBM. One program handles BLOCK_N points of one level, every value a
(BLOCK_N,) or (BLOCK_N, F) vector, so Triton gives each thread its own points (one per thread at the default
blocks): it loads each coordinate once, keeps the low three dimensions' partial hashes per corner in registers,
and loops over the 2**(D-3) groups of 8 corners (the group's high-dimension hash, 8 gathers of one row each,
the weights in 16-byte loads, 8 FMAs). Backward recomputes the indices, writes dweights by the same gather
(8-byte stores of corner pairs), and scatter-adds w * g into dtables with relaxed atomic adds (RED.ADD.F32x2:
atomic, but without the GPU-wide fence and L1 invalidate that jax.ref.addupdate's acquire-release atomics
bring; exact scatter-adds in interpret mode). Dense levels (many points share few rows, so atomics pile up)
and `deterministic=True` take a sort-based segmented sum in XLA instead, whose result does not depend on the
order of the additions. `python -m experiments.kernel_report` compiles both kernels for an H100 without a GPU
and reports registers, spills, loads, atomics and fences (BENCHMARKS.md). Block sizes per (L, F, T) come from
the data file hashgrid_blocks.json beside this module (BLOCK_TABLE), refilled on a GPU by
`python -m experiments.autotune_hashgrid --write`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pl_triton

PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437)
DEFAULT_CHUNK = 1 << 14


def is_dense(resolution: int, table_size: int, dims: int = 6) -> bool:
  """Whether a level of `resolution` fits its table densely: (N + 2)**D <= T."""
  return (resolution + 2) ** dims <= table_size


def _check_table_size(table_size: int):
  if table_size <= 0 or table_size & (table_size - 1):
    raise ValueError(f"{table_size=} must be a power of two")
  if table_size > 1 << 31:
    raise ValueError(f"{table_size=} must be <= 2**31 so indices fit int32")


def corner_bits(dims: int = 6) -> np.ndarray:
  """(2**D, D) int32 array: bit d of corner c."""
  c = np.arange(1 << dims)
  return ((c[:, None] >> np.arange(dims)[None, :]) & 1).astype(np.int32)


def lattice_position(points: jax.Array, resolution: int) -> tuple[jax.Array, jax.Array]:
  """Base vertex and fractional position of points on a level's lattice.

  Args:
    points: (..., D) float coordinates in [-1, 1] (clipped to that range).
    resolution: N, the level's grid resolution (> 0).

  Returns:
    (v0, frac): v0 (..., D) int32 in [0, N]; frac (..., D) float32 in [0, 1).
  """
  u = (jnp.clip(points.astype(jnp.float32), -1.0, 1.0) + 1.0) * 0.5 * resolution
  v0 = jnp.floor(u)
  return v0.astype(jnp.int32), u - v0


def corner_indices(points: jax.Array, resolution: int, table_size: int) -> jax.Array:
  """Table rows of the 2**D lattice corners around each point, for one level.

  Args:
    points: (N, D) coordinates in [-1, 1], D <= 6.
    resolution: the level's grid resolution N_l (static int).
    table_size: T, a power of two <= 2**31 (static int).

  Returns:
    (N, 2**D) int32 indices in [0, T).
  """
  _check_table_size(table_size)
  dims = points.shape[-1]
  if not 1 <= dims <= len(PRIMES):
    raise ValueError(f"points must have 1..6 coordinates in the last axis, got shape {points.shape}")
  v0, _ = lattice_position(points, resolution)
  corners = v0[:, None, :].astype(jnp.uint32) + jnp.asarray(corner_bits(dims), jnp.uint32)  # (N, C, D)
  if is_dense(resolution, table_size, dims):
    strides = jnp.asarray([(resolution + 2) ** d for d in range(dims)], jnp.uint32)
    idx = jnp.sum(corners * strides, axis=-1, dtype=jnp.uint32)
  else:
    idx = corners[..., 0] * jnp.uint32(PRIMES[0])
    for d in range(1, dims):
      idx = idx ^ (corners[..., d] * jnp.uint32(PRIMES[d]))
    idx = idx & jnp.uint32(table_size - 1)
  return idx.astype(jnp.int32)


def _gather_levels(points, weights, tables, resolutions):
  """(n, L, F) weighted gather for one chunk, level by level."""
  table_size = tables.shape[1]
  outs = []
  for level, res in enumerate(resolutions):
    idx = corner_indices(points[:, level], res, table_size)  # (n, C)
    rows = jnp.take(tables[level], idx, axis=0)  # (n, C, F)
    outs.append(jnp.einsum("nc,ncf->nf", weights[:, level].astype(rows.dtype), rows,
                           preferred_element_type=jnp.float32))
  return jnp.stack(outs, axis=1)


def check_shapes(points, weights, tables, resolutions):
  """Validate the op's arguments (DESIGN.md, Kernel contract); raises ValueError."""
  if points.ndim != 3:
    raise ValueError(f"points must be (N, L, D), got shape {points.shape}")
  n, num_levels, dims = points.shape
  if weights.shape != (n, num_levels, 1 << dims):
    raise ValueError(f"weights must be (N, L, 2**D) = {(n, num_levels, 1 << dims)}, got {weights.shape}")
  if tables.ndim != 3 or tables.shape[0] != num_levels:
    raise ValueError(f"tables must be (L={num_levels}, T, F), got shape {tables.shape}")
  if len(resolutions) != num_levels:
    raise ValueError(f"resolutions must have L={num_levels} entries, got {resolutions}")
  _check_table_size(tables.shape[1])


@functools.partial(jax.jit, static_argnames=("resolutions", "chunk"))
def hashgrid_reference(points, weights, tables, resolutions, *, chunk: int = DEFAULT_CHUNK):
  """Reference multiresolution hash-grid gather, chunked over N so memory stays bounded.

  out[n, l] = sum_c weights[n, l, c] * tables[l, corner_indices(points[:, l], N_l, T)[n, c]].

  The chunks are a `lax.map` over the points: call it on one device's points (`inrsr.train.sharding.sharded_gather`
  does, inside a `shard_map` over the batch), since XLA cannot split a map over a sharded axis and would
  all-gather every device's points.

  Args:
    points: (N, L, D) float coordinates in [-1, 1].
    weights: (N, L, 2**D) corner weights.
    tables: (L, T, F) feature tables, T a power of two.
    resolutions: static tuple of L ints, the grid resolution of each level.
    chunk: points per chunk; intermediates are (chunk, L, 2**D, F).

  Returns:
    (N, L, F) float32 features. Differentiable in weights and tables (points get zero gradient).
  """
  resolutions = tuple(int(r) for r in resolutions)
  check_shapes(points, weights, tables, resolutions)
  n = points.shape[0]
  points = jax.lax.stop_gradient(points)
  if n <= chunk:
    return _gather_levels(points, weights, tables, resolutions)
  pad = (-n) % chunk
  p = jnp.pad(points, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, *points.shape[1:])
  w = jnp.pad(weights, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, *weights.shape[1:])
  out = jax.lax.map(lambda pw: _gather_levels(pw[0], pw[1], tables, resolutions), (p, w))
  return out.reshape(-1, *out.shape[2:])[:n]



# ---------------------------------------------------------------------------------------------------------
# Pallas kernel.


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Block sizes of the Pallas kernels (powers of two).

  Attributes:
    block_n: points per program, forward.
    block_n_bwd: points per program, backward.
    num_warps: Triton warps per program. block_n = 32 * num_warps gives each thread one point; a smaller
      block_n makes threads repeat each other's work, a larger one gives each thread several points.
    num_stages: Triton pipeline stages.
  """

  block_n: int = 128
  block_n_bwd: int = 128
  num_warps: int = 4
  num_stages: int = 1

  def __post_init__(self):
    for name in ("block_n", "block_n_bwd", "num_warps"):
      v = getattr(self, name)
      if v <= 0 or v & (v - 1):
        raise ValueError(f"{name}={v} must be a power of two")

  @classmethod
  def get_default(cls, num_levels: int | None = None, feats: int | None = None,
                  table_size: int | None = None) -> "BlockSizes":
    """The block sizes for an (L, F, T) from BLOCK_TABLE (nearest row), or the class defaults."""
    if feats is None or table_size is None:
      return cls()
    key = _nearest_block_key(num_levels or 1, feats, table_size)
    return cls(*BLOCK_TABLE[key]) if key is not None else cls()


# Block sizes per (L, F, log2 T) are data: kernels/hashgrid_blocks.json (package data), one row per case, read
# here at import. `BlockSizes.get_default(L, F, T)` takes the row with the same padded F, then the nearest log2 T,
# then the nearest L. `python -m experiments.autotune_hashgrid --write` rewrites the file from GPU timings
# (`save_block_table`); the file's `note` says where its rows come from.
BLOCK_TABLE_FILE = pathlib.Path(__file__).with_name("hashgrid_blocks.json")
BLOCK_KEY_FIELDS = ("num_levels", "feats", "log2_table_size")
BLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(BlockSizes))

BlockTable = dict[tuple[int, int, int], tuple[int, int, int, int]]


def load_block_table(path=BLOCK_TABLE_FILE) -> BlockTable:
  """A block-size table file: {"note": ..., "rows": [{num_levels, feats, log2_table_size, block_n, ...}, ...]}.

  Args:
    path: the JSON file (default: kernels/hashgrid_blocks.json).

  Returns:
    {(L, F, log2 T): (block_n, block_n_bwd, num_warps, num_stages)}.

  Raises:
    ValueError: one line naming the file and the row that is not a table row of positive integers (block sizes
      powers of two), or a key that is given twice.
  """
  fields = BLOCK_KEY_FIELDS + BLOCK_FIELDS
  try:
    data = json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable JSON block-size table ({type(e).__name__}: {e})") from e
  rows = data.get("rows") if isinstance(data, dict) else None
  if not isinstance(rows, list):
    raise ValueError(f"{path}: expected a JSON object with a list \"rows\" of {{{', '.join(fields)}}}")
  table = {}
  for i, row in enumerate(rows):
    if (not isinstance(row, dict) or set(row) != set(fields) or
        not all(type(row[k]) is int and row[k] > 0 for k in fields)):  # pylint: disable=unidiomatic-typecheck
      raise ValueError(f"{path}: rows[{i}]={row!r} must have exactly the positive integer fields {fields}")
    key, value = tuple(row[k] for k in BLOCK_KEY_FIELDS), tuple(row[k] for k in BLOCK_FIELDS)
    if key in table:
      raise ValueError(f"{path}: rows[{i}] repeats the case {dict(zip(BLOCK_KEY_FIELDS, key))}")
    try:
      BlockSizes(*value)
    except ValueError as e:
      raise ValueError(f"{path}: rows[{i}]: {e}") from e
    table[key] = value
  return table


def block_table_json(table: BlockTable, note: str = "") -> str:
  """The JSON text of a block-size table (`load_block_table`'s format), one row per line, rows sorted."""
  fields = BLOCK_KEY_FIELDS + BLOCK_FIELDS
  rows = [json.dumps(dict(zip(fields, tuple(k) + tuple(v)))) for k, v in sorted(table.items())]
  return "{\n  \"note\": " + json.dumps(note) + ",\n  \"rows\": [\n    " + ",\n    ".join(rows) + "\n  ]\n}\n"


def save_block_table(table: BlockTable, path=BLOCK_TABLE_FILE, note: str = "") -> None:
  """Write a block-size table to `path` (written whole to a temporary file, then renamed over it).

  Args:
    table: {(L, F, log2 T): (block_n, block_n_bwd, num_warps, num_stages)}.
    path: the JSON file (default: kernels/hashgrid_blocks.json, the table this module reads at import).
    note: where the rows come from (device, date, command), kept in the file.
  """
  path = pathlib.Path(path)
  for key, value in table.items():
    BlockSizes(*value)  # powers of two, before anything is written
    if len(key) != len(BLOCK_KEY_FIELDS):
      raise ValueError(f"block table key {key!r} must be {BLOCK_KEY_FIELDS}")
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(block_table_json(table, note))
  os.replace(tmp, path)


BLOCK_TABLE = load_block_table()


def _nearest_block_key(num_levels: int, feats: int, table_size: int):
  fp = _padded_features(min(feats, 8))
  log2_t = max(table_size, 1).bit_length() - 1
  rows = [k for k in BLOCK_TABLE if _padded_features(k[1]) == fp] or list(BLOCK_TABLE)
  return min(rows, key=lambda k: (abs(k[2] - log2_t), abs(k[0] - num_levels)), default=None)


def _check_kernel_shapes(num_levels: int, table_size: int, feats: int) -> None:
  if num_levels * table_size > 1 << 31:
    raise ValueError(f"the Pallas kernel addresses L * T = {num_levels} * {table_size} rows with 32-bit "
                     "indices; it must be <= 2**31 (use impl='reference')")
  _padded_features(feats)


def _padded_features(f: int) -> int:
  if f > 8:
    raise ValueError(f"the Pallas hash-grid kernel supports F <= 8 features per row, got F={f}")
  return max(2, 1 << (f - 1).bit_length())


def _flat_tables(tables):
  """(L, T, F) tables as the kernel's 2-D (L * T, F_pad) rows, features padded to 2, 4 or 8; and F_pad."""
  num_levels, table_size, feats = tables.shape
  fp = _padded_features(feats)
  flat = tables.reshape(num_levels * table_size, feats)
  if fp != feats:
    flat = jnp.pad(flat, ((0, 0), (0, fp - feats)))
  return flat, fp


def _level_meta(resolutions, table_size, dims):
  """(L, 2) int32: each level's resolution and whether it is dense."""
  return np.asarray([[r, is_dense(r, table_size, dims)] for r in resolutions], np.int32)


def _make_relaxed_addupdate():
  """A `jax.ref.addupdate` whose Triton lowering is a relaxed (unfenced) atomic add, or None.

  Pallas lowers addupdate to an acquire-release atomic, which ptxas brackets with a GPU-wide MEMBAR before and
  an L1 invalidate (CCTL.IVALL) after; the scatter-add needs atomicity only, not ordering. jax has no public
  switch for the memory semantic, so this registers a twin primitive with the same abstract evaluation and a
  lowering that asks Triton for `MemSemantic.RELAXED`. It uses jax internals of the pinned version; when they
  are not there it returns None and the kernel keeps `jax.ref.addupdate`.
  """
  try:
    from jax._src import core as jax_core  # pylint: disable=g-import-not-at-top
    from jax._src import tree_util  # pylint: disable=g-import-not-at-top
    from jax._src.lib.triton import dialect as tt_dialect  # pylint: disable=g-import-not-at-top
    from jax._src.pallas.triton import lowering as triton_lowering  # pylint: disable=g-import-not-at-top
    from jax._src.state import primitives as state_primitives  # pylint: disable=g-import-not-at-top
    relaxed = tt_dialect.MemSemantic.RELAXED
    abstract_eval = state_primitives._addupdate_abstract_eval  # pylint: disable=protected-access
    atomic_rmw = triton_lowering._atomic_rmw  # pylint: disable=protected-access
    pointers = triton_lowering._compute_pointers_from_indices  # pylint: disable=protected-access
  except (ImportError, AttributeError):
    return None

  prim = jax_core.Primitive("hashgrid_relaxed_addupdate")
  prim.multiple_results = True
  prim.is_effectful = lambda params: True
  prim.def_effectful_abstract_eval(abstract_eval)

  def lowering(ctx, ptr, value, *idx, tree):
    block_info, *_ = ctx.block_infos
    (indexer,) = tree_util.tree_unflatten(tree, idx)
    ptr = pointers(ptr, block_info, indexer)
    atomic_rmw(tt_dialect.RMWOp.FADD, ptr, value, semantic=relaxed)
    return []

  triton_lowering.register_lowering(prim)(lowering)

  def addupdate(ref, idx, x):
    ref, transforms = state_primitives.get_ref_and_transforms(ref, idx, "relaxed_addupdate")
    flat, tree = tree_util.tree_flatten(transforms)
    prim.bind(ref, x, *flat, tree=tree)

  return addupdate


_relaxed_addupdate = _make_relaxed_addupdate()


def _scatter_add(ref, rows, values, *, relaxed: bool):
  """ref[rows, :] += values with atomic adds (relaxed on the GPU when available; exact in interpret mode)."""
  if relaxed and _relaxed_addupdate is not None:
    _relaxed_addupdate(ref, (rows, slice(None)), values)
  else:
    jax.ref.addupdate(ref, (rows, slice(None)), values)


class _Corners:
  """Per-point lattice state of one program's block, from which each corner's table row is built on demand.

  The coordinates are loaded once (one (block_n,) column per dimension). The corners are visited in groups:
  the low `split` dimensions give the 2**split corners of a group (precomputed partial hashes / linear
  offsets, unrolled), the high dimensions give the group number (a loop). Every value is a (block_n,) vector,
  so Triton's layout gives each thread its own points and nothing is loaded twice.
  """

  def __init__(self, points_ref, meta_ref, level, start, *, block_n: int, num_points: int, dims: int,
               table_size: int):
    rows = start + jax.lax.broadcasted_iota(jnp.int32, (block_n,), 0)
    self.valid = rows < num_points
    resolution = meta_ref[level, 0]
    self.dense = meta_ref[level, 1] != 0
    self.offset = (level * table_size).astype(jnp.uint32)
    self.mask = jnp.uint32(table_size - 1)
    self.dims = dims
    self.split = min(3, dims)
    res_f = resolution.astype(jnp.float32)
    side = (resolution + 2).astype(jnp.uint32)
    self.v, self.strides = [], []
    stride = jnp.uint32(1)
    for d in range(dims):
      p = pl_triton.load(points_ref.at[pl.ds(start, block_n), level, jnp.int32(d)], mask=self.valid, other=0.0)
      self.v.append(jnp.floor((jnp.clip(p, -1.0, 1.0) + 1.0) * 0.5 * res_f).astype(jnp.int32).astype(jnp.uint32))
      self.strides.append(stride)
      stride = stride * side
    # Partial hashes / linear offsets of the low dimensions, one per corner of a group: entry k has dimension d
    # at v[d] + bit d of k, so corner group * 2**split + k is entry k combined with the group's high part.
    self.lo_hashed = [jnp.zeros_like(self.v[0])]
    self.lo_linear = [jnp.zeros_like(self.v[0])]
    for d in range(self.split):
      h = [(self.v[d] + b) * jnp.uint32(PRIMES[d]) for b in (0, 1)]
      x = [(self.v[d] + b) * self.strides[d] for b in (0, 1)]
      self.lo_hashed = [a ^ b for b in h for a in self.lo_hashed]
      self.lo_linear = [a + b for b in x for a in self.lo_linear]

  @property
  def group_size(self) -> int:
    return 1 << self.split

  @property
  def num_groups(self) -> int:
    return 1 << (self.dims - self.split)

  def group_rows(self, group):
    """(block_n,) int32 rows in the flat (L * T, F) table of the corners group * 2**split + 0, 1, ..."""
    hi_hashed = jnp.zeros_like(self.v[0])
    hi_linear = jnp.zeros_like(self.v[0])
    for d in range(self.split, self.dims):
      v = self.v[d] + ((jnp.asarray(group, jnp.uint32) >> (d - self.split)) & jnp.uint32(1))
      hi_hashed = hi_hashed ^ (v * jnp.uint32(PRIMES[d]))
      hi_linear = hi_linear + v * self.strides[d]
    rows = []
    for lh, ll in zip(self.lo_hashed, self.lo_linear):
      idx = jnp.where(self.dense, ll + hi_linear, (lh ^ hi_hashed) & self.mask)
      rows.append((idx + self.offset).astype(jnp.int32))
    return rows


def _load_weight_columns(weights_ref, level, start, first, count: int, valid):
  """The weights of corners first .. first + count - 1 as `count` (block_n,) vectors.

  Read 4 corners (16 bytes) per vector load, so that each thread holds whole rows and splitting them into
  columns stays in registers (a wider tile is spread over two threads and goes through shared memory).
  """
  block_n = valid.shape[0]
  cols = []
  for c in range(0, count, 4):
    n = min(4, count - c)
    tile = pl_triton.load(weights_ref.at[pl.ds(start, block_n), level, pl.ds(first + c, n)],
                          mask=valid[:, None], other=0.0)
    cols += [tile[:, 0]] if n == 1 else [col[:, 0] for col in jnp.split(tile, n, axis=1)]
  return cols


def _fwd_kernel(points_ref, weights_ref, tables_ref, meta_ref, out_ref, *, block_n: int, num_points: int,
                dims: int, table_size: int):
  start = pl.program_id(0) * block_n
  level = pl.program_id(1)
  corners = _Corners(points_ref, meta_ref, level, start, block_n=block_n, num_points=num_points, dims=dims,
                     table_size=table_size)
  size = corners.group_size

  def group(j, out):
    weights = _load_weight_columns(weights_ref, level, start, j * size, size, corners.valid)
    for idx, w in zip(corners.group_rows(j), weights):
      rows = tables_ref[idx, :]  # (block_n, F) gather
      out = out + w.astype(jnp.float32)[:, None] * rows.astype(jnp.float32)
    return out

  out = jax.lax.fori_loop(0, corners.num_groups, group, jnp.zeros((block_n, tables_ref.shape[1]), jnp.float32))
  pl_triton.store(out_ref.at[pl.ds(start, block_n), level, :], out, mask=corners.valid[:, None])


def _bwd_kernel(points_ref, weights_ref, tables_ref, meta_ref, g_ref, dt_in_ref, dw_ref, dt_ref, *,
                block_n: int, num_points: int, dims: int, table_size: int, relaxed: bool):
  del dt_in_ref  # Aliased to dt_ref: the zeroed accumulator.
  start = pl.program_id(0) * block_n
  level = pl.program_id(1)
  corners = _Corners(points_ref, meta_ref, level, start, block_n=block_n, num_points=num_points, dims=dims,
                     table_size=table_size)
  valid = corners.valid
  size = corners.group_size
  g = pl_triton.load(g_ref.at[pl.ds(start, block_n), level, :], mask=valid[:, None], other=0.0)
  scatter = meta_ref[level, 2] != 0  # Levels whose dtables are not summed in XLA afterwards.

  def group(j, carry):
    first = j * size
    idx = corners.group_rows(j)
    dw = [jnp.sum(tables_ref[i, :].astype(jnp.float32) * g, axis=1) for i in idx]  # (block_n,) each
    for c in range(0, size, 2):  # Pairs of corners: one 8-byte store.
      if c + 1 < size:
        pair = jnp.concatenate([dw[c][:, None], dw[c + 1][:, None]], axis=1)
        pl_triton.store(dw_ref.at[pl.ds(start, block_n), level, pl.ds(first + c, 2)], pair.astype(dw_ref.dtype),
                        mask=valid[:, None])
      else:
        pl_triton.store(dw_ref.at[pl.ds(start, block_n), level, first + c], dw[c].astype(dw_ref.dtype),
                        mask=valid)

    @pl.when(scatter)
    def _():
      weights = _load_weight_columns(weights_ref, level, start, first, size, valid)
      for i, w in zip(idx, weights):
        # Masked rows have w = 0 and g = 0, so they add zeros.
        _scatter_add(dt_ref, i, w.astype(jnp.float32)[:, None] * g, relaxed=relaxed)

    return carry

  jax.lax.fori_loop(0, corners.num_groups, group, jnp.int32(0))


def _manual_type(*operands):
  """The union of the operands' manual-axis types: how the kernel's outputs vary over the mesh axes of an enclosing
  `jax.shard_map` (the sharded levels layout, `inrsr.train.sharding`), which Pallas asks for when `check_vma` is on."""
  mat = jax.typeof(operands[0]).manual_axis_type
  for x in operands[1:]:
    mat = mat.update(varying=mat.varying | jax.typeof(x).manual_axis_type.varying)
  return mat


def _struct(shape, dtype, mat):
  return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=mat)


def _vary_like(x, mat):
  """`x` (made inside the kernel's caller, so invariant) marked as varying over `mat`'s axes, for an alias."""
  missing = tuple(sorted(mat.varying - jax.typeof(x).manual_axis_type.varying))
  return jax.lax.pcast(x, missing, to="varying") if missing else x


def _pallas_forward(points, weights, tables, resolutions, block_sizes, interpret):
  n, num_levels, dims = points.shape
  _, table_size, feats = tables.shape
  flat, fp = _flat_tables(tables)
  meta = jnp.asarray(_level_meta(resolutions, table_size, dims))
  bn = block_sizes.block_n
  kernel = functools.partial(_fwd_kernel, block_n=bn, num_points=n, dims=dims, table_size=table_size)
  out = pl.pallas_call(
      kernel, grid=(pl.cdiv(n, bn), num_levels),
      out_shape=_struct((n, num_levels, fp), jnp.float32, _manual_type(points, weights, tables)),
      interpret=interpret,
      compiler_params=pl_triton.CompilerParams(num_warps=block_sizes.num_warps,
                                               num_stages=block_sizes.num_stages),
      name="hashgrid_fwd")(points, weights, flat, meta)
  return out[..., :feats]


def _segmented_table_grad(idx, contrib, num_rows):
  """Deterministic scatter-add: sort by row, segmented sum in a fixed tree order, then a scatter-set."""
  idx = idx.reshape(-1)
  contrib = contrib.reshape(idx.shape[0], -1)
  order = jnp.argsort(idx, stable=True)
  idx_s, val_s = idx[order], contrib[order]
  starts = jnp.concatenate([jnp.ones((1,), bool), idx_s[1:] != idx_s[:-1]])

  def combine(a, b):
    va, fa = a
    vb, fb = b
    return jnp.where(fb[..., None], vb, va + vb), fa | fb

  sums, _ = jax.lax.associative_scan(combine, (val_s, starts))
  ends = jnp.concatenate([idx_s[1:] != idx_s[:-1], jnp.ones((1,), bool)])
  target = jnp.where(ends, idx_s, num_rows)  # Non-final elements go out of range and are dropped.
  return jnp.zeros((num_rows, contrib.shape[-1]), contrib.dtype).at[target].set(sums, mode="drop",
                                                                             unique_indices=True)


def _pallas_backward(points, weights, tables, resolutions, g, block_sizes, interpret, deterministic):
  n, num_levels, dims = points.shape
  _, table_size, feats = tables.shape
  flat, fp = _flat_tables(tables)
  g = g.astype(jnp.float32)
  if fp != feats:
    g = jnp.pad(g, ((0, 0), (0, 0), (0, fp - feats)))
  dense = [is_dense(r, table_size, dims) for r in resolutions]
  scatter = tuple(not (deterministic or d) for d in dense)
  meta = jnp.asarray(np.concatenate([_level_meta(resolutions, table_size, dims),
                                     np.asarray(scatter, np.int32)[:, None]], axis=1))
  bn = block_sizes.block_n_bwd
  kernel = functools.partial(_bwd_kernel, block_n=bn, num_points=n, dims=dims, table_size=table_size,
                             relaxed=not interpret)
  mat = _manual_type(points, weights, tables, g)
  dw, dt = pl.pallas_call(
      kernel, grid=(pl.cdiv(n, bn), num_levels),
      out_shape=(_struct(weights.shape, weights.dtype, mat),
                 _struct((num_levels * table_size, fp), jnp.float32, mat)),
      input_output_aliases={5: 1}, interpret=interpret,
      compiler_params=pl_triton.CompilerParams(num_warps=block_sizes.num_warps,
                                               num_stages=block_sizes.num_stages),
      name="hashgrid_bwd")(points, weights, flat, meta, g,
                           _vary_like(jnp.zeros((num_levels * table_size, fp), jnp.float32), mat))
  dt = dt[:, :feats].reshape(num_levels, table_size, feats)
  for level, res in enumerate(resolutions):
    if scatter[level]:
      continue
    idx = corner_indices(points[:, level], res, table_size)
    contrib = weights[:, level, :, None].astype(jnp.float32) * g[:, level, None, :feats]
    dt = dt.at[level].set(_segmented_table_grad(idx, contrib, table_size))
  return dw, dt.astype(tables.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _hashgrid_pallas(points, weights, tables, resolutions, block_sizes, interpret, deterministic):
  return _pallas_forward(points, weights, tables, resolutions, block_sizes, interpret)


def _hashgrid_pallas_fwd(points, weights, tables, resolutions, block_sizes, interpret, deterministic):
  out = _pallas_forward(points, weights, tables, resolutions, block_sizes, interpret)
  return out, (points, weights, tables)


def _hashgrid_pallas_bwd(resolutions, block_sizes, interpret, deterministic, res, g):
  points, weights, tables = res
  dw, dt = _pallas_backward(points, weights, tables, resolutions, g, block_sizes, interpret, deterministic)
  return jnp.zeros_like(points), dw, dt


_hashgrid_pallas.defvjp(_hashgrid_pallas_fwd, _hashgrid_pallas_bwd)


IMPLS = ("auto", "pallas", "reference")


def _on_nvidia_gpu() -> bool:
  return jax.default_backend() == "gpu" and "NVIDIA" in jax.devices()[0].device_kind.upper()


def hashgrid_gather(points, weights, tables, resolutions, *, impl: str = "auto", interpret: bool = False,
                    deterministic: bool = False, block_sizes: BlockSizes | None = None):
  """Weighted gather of 2**D lattice-corner rows per point and level.

  Args:
    points: (N, L, D) float32 coordinates in [-1, 1].
    weights: (N, L, 2**D) corner weights.
    tables: (L, T, F) tables, T a power of two.
    resolutions: static tuple of L grid resolutions.
    impl: "pallas" (Triton on NVIDIA GPUs, or interpret mode), "reference", or "auto" (pallas on a GPU,
      reference elsewhere).
    interpret: run the Pallas path in interpret mode (on CPU).
    deterministic: Pallas path: compute dtables with the sort-based segmented sum for every level.
    block_sizes: Pallas block sizes (default `BlockSizes.get_default(L, F, T)`, from BLOCK_TABLE).

  Returns:
    (N, L, F) float32. Gradients flow to weights and tables, not to points.
  """
  if impl not in IMPLS:
    raise ValueError(f"{impl=} must be one of {IMPLS}")
  resolutions = tuple(int(r) for r in resolutions)
  check_shapes(points, weights, tables, resolutions)
  if impl == "auto":
    impl = "pallas" if _on_nvidia_gpu() else "reference"
  if impl == "reference":
    return hashgrid_reference(points, weights, tables, resolutions)
  _check_kernel_shapes(tables.shape[0], tables.shape[1], tables.shape[2])
  block_sizes = block_sizes or BlockSizes.get_default(tables.shape[0], tables.shape[2], tables.shape[1])
  return _hashgrid_pallas(points.astype(jnp.float32), weights, tables, resolutions, block_sizes, interpret,
                          deterministic)
