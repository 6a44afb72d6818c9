"""SR-INR's hash-table gather on a ("data", "model") mesh: the shard_map op and the context that routes to it.

`sharded_gather` is `hashgrid.hashgrid_gather` with the points split over the `data` axis and the (L, T, F)
tables split over `model` by rows of T or by levels (or replicated); `table_layout(mesh, tables)` makes the
hash encoding trace its gather through it (read at trace time; `with_table_layout` enters it inside a jitted
step). Why explicit and not left to XLA's partitioner: `inrsr/train/sharding.py` and BENCHMARKS.md ("Sharded hash
tables", "Will it fit?"). Imports nothing of inrsr.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from kernels import hashgrid

TABLE_SHARDINGS = ("replicated", "rows", "levels")
TABLE_SPECS = {"replicated": P(), "rows": P(None, "model", None), "levels": P("model", None, None)}


def check_layout(tables: str) -> None:
  if tables not in TABLE_SHARDINGS:
    raise ValueError(f"train.table_sharding={tables!r} must be one of {TABLE_SHARDINGS}")


def check_divisible(shape, model: int, tables: str, what: str = "tables") -> None:
  """Raise a ValueError naming the config fields when an (L, T, F) table does not split over `model` devices.

  Args:
    shape: the table's shape (L, T, F).
    model: the size of the `model` mesh axis.
    tables: the layout, one of TABLE_SHARDINGS.
    what: the leaf named in the error.
  """
  check_layout(tables)
  if tables == "replicated":
    return
  if len(shape) != 3:
    raise ValueError(f"{what} must be (L, T, F) to be sharded by {tables}, got shape {tuple(shape)}")
  axis, name = (0, "levels L") if tables == "levels" else (1, "rows T")
  if shape[axis] % model:
    raise ValueError(f"train.table_sharding={tables!r}: the {shape[axis]} {name} of {what} {tuple(shape)} "
                     f"must be divisible by train.model_axis={model}")


_ACTIVE = threading.local()


@contextlib.contextmanager
def table_layout(mesh: Mesh, tables: str):
  """While active, `HashEncoding` traces its gather as `sharded_gather(..., mesh, tables)`.

  Read at trace time: enter it inside the jitted function (`with_table_layout`) so that every trace of that
  function sees it. A mesh of one device leaves the model's computation unchanged; "replicated" tables on a
  `data` axis of 2 or more devices still go through `sharded_gather`, which gives each device its own points.

  Args:
    mesh: the mesh of the step: its `data` axis splits the batch, its `model` axis the tables.
    tables: one of TABLE_SHARDINGS.
  """
  check_layout(tables)
  previous = getattr(_ACTIVE, "layout", None)
  shape = dict(mesh.shape)
  if tables == "replicated" or shape.get("model", 1) == 1:
    tables = "replicated"
  _ACTIVE.layout = (mesh, tables) if tables != "replicated" or shape.get("data", 1) > 1 else None
  try:
    yield
  finally:
    _ACTIVE.layout = previous


def current_layout() -> tuple[Mesh, str] | None:
  """The (mesh, tables) of the innermost active `table_layout`, or None (the unsharded gather)."""
  return getattr(_ACTIVE, "layout", None)


def with_table_layout(fn, mesh: Mesh, tables: str):
  """`fn` with `table_layout(mesh, tables)` entered inside it, for `jax.jit(with_table_layout(step, ...))`."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with table_layout(mesh, tables):
      return fn(*args, **kwargs)

  return wrapped


def _masked_gather(points, weights, tables, resolutions, table_size: int):
  """(n, L, F): the reference gather restricted to the rows this device holds (the others read as zero)."""
  rows = tables.shape[1]
  start = jax.lax.axis_index("model") * rows
  outs = []
  for level, res in enumerate(resolutions):
    idx = hashgrid.corner_indices(points[:, level], res, table_size) - start  # (n, C)
    mine = (idx >= 0) & (idx < rows)
    got = jnp.take(tables[level], jnp.where(mine, idx, 0), axis=0, mode="clip")  # (n, C, F)
    w = jnp.where(mine, weights[:, level], 0).astype(got.dtype)
    outs.append(jnp.einsum("nc,ncf->nf", w, got, preferred_element_type=jnp.float32))
  return jnp.stack(outs, axis=1)


def _gather_rows(points, weights, tables, resolutions, table_size: int, chunk: int):
  n = points.shape[0]
  if n <= chunk:
    out = _masked_gather(points, weights, tables, resolutions, table_size)
  else:  # Chunked over N as hashgrid_reference, so the (chunk, L, 2**D, F) rows bound the memory.
    pad = (-n) % chunk
    p = jnp.pad(points, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, *points.shape[1:])
    w = jnp.pad(weights, ((0, pad), (0, 0), (0, 0))).reshape(-1, chunk, *weights.shape[1:])
    out = jax.lax.map(lambda pw: _masked_gather(pw[0], pw[1], tables, resolutions, table_size), (p, w))
    out = out.reshape(-1, *out.shape[2:])[:n]
  return jax.lax.psum(out, "model")


def _gather_levels(points, weights, tables, groups, impl: str):
  branches = [functools.partial(lambda res, p, w, t: hashgrid.hashgrid_gather(p, w, t, res, impl=impl), g)
              for g in groups]
  if len(set(groups)) == 1:
    return branches[0](points, weights, tables)
  return jax.lax.switch(jax.lax.axis_index("model"), branches, points, weights, tables)


def _per_device_tables(fn):
  """`fn` with its tables marked as varying over `data` (each device's table gradient its own: the shard_map's
  transpose then sums them over the data axis, the data-parallel all-reduce)."""

  def wrapped(points, weights, tables):
    return fn(points, weights, jax.lax.pcast(tables, ("data",), to="varying"))

  return wrapped


def sharded_gather(points, weights, tables, resolutions, mesh: Mesh, layout: str, *, impl: str = "auto",
                   chunk: int = hashgrid.DEFAULT_CHUNK):
  """`hashgrid.hashgrid_gather` on a ("data", "model") mesh: the points split over `data`, the tables by `layout`.

  A `jax.shard_map` manual over both axes, so every device gathers for its own points alone: XLA's partitioner
  cannot split the reference gather's chunk loop (a `lax.map` over the points) nor the Pallas kernel (a custom
  call) over the batch, and would all-gather every device's points and corner weights onto each device
  (BENCHMARKS.md, "Will it fit?"). "replicated": each device runs `hashgrid_gather(impl=impl)` on its points.
  "rows": every device computes its points' corner indices, gathers those in its T / model rows (XLA gather:
  `impl` is not used) and a psum over "model" adds the features; the backward scatter-adds into local rows and
  psums dweights. "levels": device i runs `hashgrid_gather(impl=impl)` on levels [i L / model, (i + 1) L / model)
  (a `lax.switch` on its index picks the static resolutions) and the features are concatenated over "model".
  The tables' gradient is summed over "data" by the shard_map's transpose.

  Args:
    points: (N, L, D) coordinates in [-1, 1], N divisible by the `data` axis.
    weights: (N, L, 2**D) corner weights.
    tables: (L, T, F) tables (placed by `state_shardings`; another placement is resharded by XLA).
    resolutions: static tuple of L resolutions.
    mesh: the ("data", "model") mesh.
    layout: "replicated", "rows" or "levels".
    impl: the `hashgrid_gather` implementation of the replicated and levels layouts.
    chunk: points per chunk of the rows layout's gather.

  Returns:
    (N, L, F) float32, as `hashgrid.hashgrid_gather`. Gradients flow to weights and tables, not to points.
  """
  resolutions = tuple(int(r) for r in resolutions)
  hashgrid.check_shapes(points, weights, tables, resolutions)
  model = dict(mesh.shape).get("model", 1)
  if layout not in TABLE_SHARDINGS:
    raise ValueError(f"sharded_gather: layout={layout!r} must be one of {TABLE_SHARDINGS}")
  check_divisible(tables.shape, model, layout)
  points = jax.lax.stop_gradient(points)
  batch = P("data", None, None)
  if layout == "replicated":
    fn = lambda p, w, t: hashgrid.hashgrid_gather(p, w, t, resolutions, impl=impl)
    in_specs, out_specs = (batch, batch, P()), batch
  elif layout == "rows":
    fn = functools.partial(_gather_rows, resolutions=resolutions, table_size=tables.shape[1], chunk=chunk)
    in_specs, out_specs = (batch, batch, TABLE_SPECS["rows"]), batch
  else:
    k = len(resolutions) // model
    groups = tuple(resolutions[i * k:(i + 1) * k] for i in range(model))
    fn = functools.partial(_gather_levels, groups=groups, impl=impl)
    per_level = P("data", "model", None)
    in_specs, out_specs = (per_level, per_level, TABLE_SPECS["levels"]), per_level
  return jax.shard_map(_per_device_tables(fn), mesh=mesh, in_specs=in_specs, out_specs=out_specs)(
      points, weights, tables)
