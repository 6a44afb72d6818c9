"""Sharding SR-INR's hash tables over a `model` mesh axis: mesh, train-state shardings, memory figures.

The gather itself and the context that routes the hash encoding through it are in `kernels/sharded_gather.py`
(re-exported here).

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


import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from kernels.sharded_gather import (  # noqa: F401 (the gather and its context, re-exported)
    TABLE_SHARDINGS, TABLE_SPECS, check_divisible, check_layout, current_layout, sharded_gather, table_layout,
    with_table_layout)

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
  check_layout(tables)
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
