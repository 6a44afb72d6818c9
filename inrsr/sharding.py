"""Sharding SR-INR's hash tables over a `model` mesh axis: mesh, train-state shardings, sharded table gather.

The paper-size model keeps 4.0e8 table parameters (1.6 GB, 3.2 GB more of Adam moments) that a data-parallel
run replicates on every device. `make_mesh(model)` builds a ("data", "model") mesh and `state_shardings` places
every tables-shaped leaf of the train state (the param `tables` and the Adam `mu`/`nu` that mirror it) by rows
of T (`P(None, "model", None)`) or by levels (`P("model", None, None)`), everything else replicated. While
`table_layout(mesh, tables)` is active (`with_table_layout` enters it inside a jitted step), `HashEncoding`
reads its tables through `sharded_gather`, an explicit `jax.shard_map` (manual over "data" and "model"): by rows,
each device gathers the corners that fall in its row range (a mask), a psum over "model" adds the (N, L, F)
features, and the backward scatter-adds into its own rows only; by levels, each device runs `hashgrid_gather`
(the Pallas kernel on a GPU) on its own L / model levels, and XLA then runs the texture and weight MLPs of those
levels on that device too. Without the context the model is unchanged and XLA's SPMD partitioner partitions
the gather of sharded tables itself, correctly but worse: by rows it all-reduces the (N, 2**D, F) gathered
rows instead of the features, by levels it all-reduces the whole table (1.6 GB at the paper's size), and a
custom call such as the Pallas kernel gets its operands replicated. Measured (BENCHMARKS.md, "Sharded hash
tables"): per-device peak of a paper-size train step on 4 devices 3.8 GB by levels, 14.3 GB by rows, 20.3 GB
replicated on one; so levels where the model axis divides L, rows where it does not (L = 12 on 8 devices).
The shard_map is manual over the `data` axis too, and with a `data` axis of 2 or more even replicated tables go
through it: XLA's partitioner could split neither the reference gather's chunk loop nor the Pallas kernel over
the batch, and all-gathered every device's points onto each device (BENCHMARKS.md, "Will it fit?").
"""

from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from kernels import hashgrid

TABLE_SHARDINGS = ("replicated", "rows", "levels")
TABLE_SPECS = {"replicated": P(), "rows": P(None, "model", None), "levels": P("model", None, None)}
TABLES_NAME = "tables"  # The HashEncoding param (and the Adam moments that mirror it) that is sharded.


def make_mesh(model: int = 1, *, devices=None) -> Mesh:
  """A 2-D ("data", "model") mesh over all devices (automatic sharding), data = device_count // model.

  Args:
    model: devices along the `model` axis (`train.model_axis`); 1 is plain data parallelism.
    devices: the devices to use (default all, `jax.devices()`).

  Returns:
    The mesh.

  Raises:
    ValueError: `model` < 1 or not a divisor of the device count.
  """
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  if model < 1 or n % model:
    raise ValueError(f"train.model_axis={model} must be a positive divisor of the {n} devices")
  return jax.make_mesh((n // model, model), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2,
                       devices=devices)


def _check_layout(tables: str) -> None:
  if tables not in TABLE_SHARDINGS:
    raise ValueError(f"train.table_sharding={tables!r} must be one of {TABLE_SHARDINGS}")


def check_divisible(shape, model: int, tables: str, what: str = TABLES_NAME) -> None:
  """Raise a ValueError naming the config fields when an (L, T, F) table does not split over `model` devices.

  Args:
    shape: the table's shape (L, T, F).
    model: the size of the `model` mesh axis.
    tables: the layout, one of TABLE_SHARDINGS.
    what: the leaf named in the error.
  """
  _check_layout(tables)
  if tables == "replicated":
    return
  if len(shape) != 3:
    raise ValueError(f"{what} must be (L, T, F) to be sharded by {tables}, got shape {tuple(shape)}")
  axis, name = (0, "levels L") if tables == "levels" else (1, "rows T")
  if shape[axis] % model:
    raise ValueError(f"train.table_sharding={tables!r}: the {shape[axis]} {name} of {what} {tuple(shape)} "
                     f"must be divisible by train.model_axis={model}")


def _is_tables(path, leaf) -> bool:
  last = path[-1] if path else None
  return getattr(last, "key", getattr(last, "name", None)) == TABLES_NAME and len(getattr(leaf, "shape", ())) == 3


def state_shardings(state, mesh: Mesh, tables: str = "replicated"):
  """NamedShardings of a train state {"step", "params", "opt_state"}: tables sharded, the rest replicated.

  The result is a pytree of the state's structure, usable as the state's `in_shardings` / `out_shardings`, with
  `jax.device_put(state, shardings)`, and as the `sharding=` of each leaf of an abstract state for Orbax:
  `jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)`.

  Args:
    state: the state or its abstract version (anything with `.shape` leaves); also works on params alone.
    mesh: a mesh with a `model` axis (`make_mesh`).
    tables: "replicated", "rows" (`P(None, "model", None)`) or "levels" (`P("model", None, None)`).

  Returns:
    A pytree of NamedSharding: every 3-D leaf whose last path key is `tables` (the param and the optimizer
    moments that mirror it) by `tables`, every other leaf replicated.

  Raises:
    ValueError: an unknown layout, or L (levels) / T (rows) not divisible by the `model` axis.
  """
  _check_layout(tables)
  model = dict(mesh.shape).get("model", 1)
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, TABLE_SPECS[tables])

  def one(path, leaf):
    if not _is_tables(path, leaf):
      return replicated
    check_divisible(leaf.shape, model, tables, jax.tree_util.keystr(path))
    return sharded

  return jax.tree_util.tree_map_with_path(one, state)


def table_shapes(params) -> list[tuple[int, ...]]:
  """The (L, T, F) shapes of the hash tables in a params pytree (those `state_shardings` would shard)."""
  return [tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(params) if _is_tables(p, x)]


def memory_figures(compiled) -> dict:
  """Per-device bytes of a compiled executable from XLA's memory analysis.

  Returns:
    argument_bytes, output_bytes, temp_bytes, alias_bytes (outputs written over donated arguments),
    generated_code_bytes and peak_bytes_per_device = arguments + outputs + temporaries - aliases (BENCHMARKS.md's
    "peak").
  """
  m = compiled.memory_analysis()
  out = {"argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
         "temp_bytes": int(m.temp_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes),
         "generated_code_bytes": int(m.generated_code_size_in_bytes)}
  out["peak_bytes_per_device"] = (out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"]
                                  - out["alias_bytes"])
  return out


def format_memory(figures: dict, capacity_bytes: int | None = None, device_kind: str = "") -> str:
  """"arguments A GB, outputs O GB, temporaries T GB, peak P GB [of C GB (kind)]" from `memory_figures`."""
  gb = lambda b: f"{b / 1e9:.2f} GB"
  line = (f"arguments {gb(figures['argument_bytes'])}, outputs {gb(figures['output_bytes'])}, temporaries "
          f"{gb(figures['temp_bytes'])}, peak {gb(figures['peak_bytes_per_device'])}")
  if capacity_bytes:
    line += f" of {gb(capacity_bytes)}" + (f" ({device_kind})" if device_kind else "")
  return line


def device_memory_line(compiled, device=None) -> str:
  """The per-device memory line of a compiled step, as `python -m experiments.aot` prints it for a target.

  Args:
    compiled: a compiled executable (`jax.jit(f).lower(...).compile()`).
    device: the device it runs on; its memory limit (`memory_stats()["bytes_limit"]`) is quoted when known.

  Returns:
    "per device: arguments ..., peak P GB of C GB (kind)" (without "of C GB" where the device has no stats).
  """
  capacity, kind = None, ""
  if device is not None:
    kind = device.device_kind
    try:
      capacity = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # pylint: disable=broad-except  # Compile-only and CPU devices may have no stats.
      capacity = None
  return "per device: " + format_memory(memory_figures(compiled), capacity, kind)


# ---------------------------------------------------------------------------------------------------------
# The explicit (shard_map) gather and the context that routes HashEncoding through it.

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
  _check_layout(tables)
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
