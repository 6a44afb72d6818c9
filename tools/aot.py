"""Will it fit? A config's train step and inference call compiled ahead of time for a TPU or GPU it does not own.

As MaxText's `train_compile.py`: JAX compiles for compile-only devices of a target (`jax.experimental.topologies`:
libtpu's TPU topologies, the `aot` extra; the CUDA plugin's H100 node with a target config, `kernel_report`),
from `jax.ShapeDtypeStruct` inputs that carry their shardings, so nothing is allocated and no accelerator is
needed. What is compiled is what `training.train` jits: `training.make_train_step` with `training.make_optimizer`,
the state's shardings from `sharding.state_shardings` and a batch of the config's shapes (`abstract_batch`: the
data pipeline's own example makers run on blank frames of the config's sizes), and one call of the model as
inference runs it (`compile_inference`). XLA's memory analysis gives the per-device argument, output and
temporary bytes; a TPU compile that needs more HBM than the chip has is refused by XLA, and the refusal's figure
is reported. `will_it_fit` searches the (data, model, table layout) plans in the order `candidate_plans` gives
(the least communication first) and names the first that fits.

Trace-time choices that depend on the platform follow the target: SR-INR's hash gather `kernel_impl="auto"` is
the Pallas kernel on a GPU target and the XLA reference on a TPU (`for_target`), `jax.default_backend()` reads
the target's platform while the step is traced (BVSR-IK's depthwise VJP), and `jax.lax.platform_dependent`
branches (the TPU layout of the texture patches, `encoding.sample_patches`) are resolved by XLA for the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import time
from unittest import mock

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from inrsr import models
from inrsr.data import protocols
from inrsr.train import sharding, training

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Target:
  """A machine to compile for.

  Attributes:
    name: "tpu:v5e:2x2", "gpu:h100x8", ...
    platform: "tpu" or "cuda".
    topology: libtpu's topology name ("v5e:2x2") or the CUDA plugin's ("1x1x8": one host of 8 devices).
    devices: number of devices (chips).
    capacity_bytes: memory one device's program may use. TPU: the HBM XLA allows (it refuses a compile above
      it); GPU: the device's memory times the fraction JAX's allocator takes (XLA_PYTHON_CLIENT_MEM_FRACTION,
      0.75 by default).
    memory_bytes: the device's memory.
    chip_config: libtpu's chip config ("default", or "megacore" for v4/v5p).
    kind: the device kind, in words.
  """

  name: str
  platform: str
  topology: str
  devices: int
  capacity_bytes: int
  memory_bytes: int
  chip_config: str = "default"
  kind: str = ""

  @property
  def backend(self) -> str:
    """The `jax.default_backend()` name of the platform ("tpu" or "gpu")."""
    return "gpu" if self.platform == "cuda" else self.platform


def _gpu_fraction() -> float:
  return float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))


def _targets() -> dict[str, Target]:
  # TPU capacities: the HBM XLA reports as available when it refuses a compile ("exceeds available HBM (15.75G)",
  # GiB), libtpu 0.0.42.1. H100: 80 GiB (kernel_report.H100) times the allocator's fraction.
  h100 = 80 * GIB
  gpu = int(h100 * _gpu_fraction())
  return {t.name: t for t in (
      Target("tpu:v5e:2x2", "tpu", "v5e:2x2", 4, int(15.75 * GIB), 16 * GIB, kind="TPU v5e (v5litepod-4)"),
      Target("tpu:v5e:4x4", "tpu", "v5e:4x4", 16, int(15.75 * GIB), 16 * GIB, kind="TPU v5e (v5litepod-16)"),
      Target("tpu:v5p:2x2x1", "tpu", "v5:2x2x1", 4, int(95.74 * GIB), 95 * GIB, "megacore", "TPU v5p (v5p-8)"),
      Target("tpu:v6e:2x2", "tpu", "v6e:2x2", 4, int(31.25 * GIB), 32 * GIB, kind="TPU v6e (v6e-4)"),
      Target("gpu:h100", "cuda", "1x1x1", 1, gpu, h100, kind="NVIDIA H100 80GB HBM3"),
      Target("gpu:h100x8", "cuda", "1x1x8", 8, gpu, h100, kind="NVIDIA H100 80GB HBM3, one node"),
  )}


TARGETS = _targets()


def get_target(name: str) -> Target:
  """The Target called `name` (a key of TARGETS); raises a ValueError naming the known ones."""
  if name not in TARGETS:
    raise ValueError(f"--target={name!r} must be one of {sorted(TARGETS)}")
  return TARGETS[name]


def missing_requirements(target: Target) -> list[str]:
  """What the target's compiler needs and is not installed (empty when it can compile)."""
  if target.platform == "tpu" and importlib.util.find_spec("libtpu") is None:
    return ["libtpu (pip install -e '.[aot]')"]
  if target.platform == "cuda" and importlib.util.find_spec("jax_cuda12_plugin") is None:
    return ["jax-cuda12-plugin (pip install -e '.[aot]')"]
  return []


def target_devices(target: Target) -> list:
  """The target's compile-only devices (no accelerator needed).

  Raises:
    RuntimeError: the compiler of the target's platform is not installed.
  """
  missing = missing_requirements(target)
  if missing:
    raise RuntimeError(f"--target={target.name} needs {', '.join(missing)}")
  if target.platform == "cuda":
    from tools import kernel_report  # pylint: disable=g-import-not-at-top
    return kernel_report.h100_devices(target.devices)
  # libtpu compiles for a topology without a TPU: no metadata server, no lock on the (absent) chips.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  topo = topologies.get_topology_desc(target.topology, "tpu", chip_config_name=target.chip_config,
                                      chips_per_host_bounds=(2, 2, 1), num_slices=1)
  if len(topo.devices) != target.devices:
    raise RuntimeError(f"{target.name}: libtpu made {len(topo.devices)} devices, expected {target.devices}")
  return list(topo.devices)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A (data, model) mesh and the hash tables' layout on it (`train.model_axis`, `train.table_sharding`)."""

  data: int
  model: int
  table_sharding: str = "replicated"

  @property
  def mesh(self) -> str:
    return f"{self.data}x{self.model}"

  def __str__(self) -> str:
    return f"mesh {self.mesh} (data x model), tables {self.table_sharding}"


def parse_mesh(text: str, devices: int, table_sharding: str | None = None) -> Plan:
  """A Plan from "DATAxMODEL" (e.g. "2x2"); the layout defaults to replicated on model 1, levels otherwise."""
  m = re.fullmatch(r"(\d+)x(\d+)", text or "")
  if not m:
    raise ValueError(f"--mesh={text!r} must be DATAxMODEL, e.g. 4x1 or 2x2")
  data, model = int(m.group(1)), int(m.group(2))
  if data * model != devices:
    raise ValueError(f"--mesh={text} has {data * model} devices; the target has {devices}")
  layout = table_sharding or ("replicated" if model == 1 else "levels")
  if layout not in sharding.TABLE_SHARDINGS:
    raise ValueError(f"--table_sharding={layout!r} must be one of {sharding.TABLE_SHARDINGS}")
  return Plan(data, model, layout)


def communication_bytes(plan: Plan, points: int, params_bytes: int, table_shape=None) -> float:
  """Bytes one device sends per train step under `plan`, by a ring-collective model (what the plan search sorts by).

  The gradients are all-reduced over the data axis (2 (d - 1) / d of the state each device holds: the tables
  split over the model axis by levels or rows); the levels layout all-gathers each point's (L / m, F) features
  over the model axis in the forward pass and reduce-scatters their cotangents in the backward pass; the rows
  layout psums (N, L, F) features forward and the (N, L, 2**6) corner-weight cotangents backward
  (`sharding.sharded_gather`). Activations that XLA may still move (the texture codes of a device's levels)
  are not counted.

  Args:
    plan: the plan.
    points: HR query points per step (batch x pixels), N.
    params_bytes: bytes of all parameters (float32), tables included.
    table_shape: (L, T, F) of the hash tables, or None.

  Returns:
    Bytes.
  """
  d, m = plan.data, plan.model
  tables = math.prod(table_shape) * 4 if table_shape else 0
  held = params_bytes - tables + (tables / m if plan.table_sharding != "replicated" else tables)
  sent = 2 * (d - 1) / d * held
  if plan.table_sharding != "replicated" and m > 1:
    levels, _, feats = table_shape
    local = points / d * levels * 4
    sent += 2 * (m - 1) / m * local * (feats if plan.table_sharding == "levels" else 2 * (feats + 64))
  return sent


def candidate_plans(devices: int, batch_size: int, table_shape=None, *, points: int = 0,
                    params_bytes: int = 0) -> list[Plan]:
  """The plans `will_it_fit` tries, in order: the least communication first (`communication_bytes`).

  Data parallelism (data = devices) and, for a model with hash tables of shape (L, T, F), every model axis m > 1
  that divides the devices: by levels where m divides L (each device gathers its own levels), by rows where it
  divides T (every device hashes all its data group's points). The data axis must divide the batch. For the
  paper-size SR-INR (1.6 GB of tables) the tables' gradient all-reduce dominates, so the largest model axis
  by levels comes first and pure data parallelism last; a model without tables has only data parallelism.

  Args:
    devices: the target's device count.
    batch_size: `data.batch_size`.
    table_shape: (L, T, F) of the tables, or None for a model without them.
    points: HR query points per step (for the order; 0 orders by the gradients alone).
    params_bytes: bytes of all parameters (for the order).

  Returns:
    The plans (possibly none, when no data axis divides the batch), cheapest first.
  """
  plans = [Plan(devices, 1)] if batch_size % devices == 0 else []
  if table_shape is not None:
    for model in (m for m in range(2, devices + 1) if devices % m == 0):
      if batch_size % (devices // model):
        continue
      for layout, axis in (("levels", 0), ("rows", 1)):
        if table_shape[axis] % model == 0:
          plans.append(Plan(devices // model, model, layout))
  params_bytes = params_bytes or (math.prod(table_shape) * 4 if table_shape else 0)
  return sorted(plans, key=lambda p: communication_bytes(p, points, params_bytes, table_shape))


def for_target(config: ml_collections.ConfigDict, target: Target) -> ml_collections.ConfigDict:
  """A copy of `config` with the choices `auto` makes on the target's machine: SR-INR's hash gather
  (`model.kernel_impl` "auto" is the Pallas kernel on a GPU, the XLA reference elsewhere)."""
  config = ml_collections.ConfigDict(config.to_dict())
  if config.model.get("kernel_impl", None) == "auto":
    config.model.kernel_impl = "pallas" if target.platform == "cuda" else "reference"
  return config


@contextlib.contextmanager
def traced_for(target: Target):
  """While active, `jax.default_backend()` names the target's platform (trace-time choices follow the target)."""
  with mock.patch.object(jax, "default_backend", lambda: target.backend):
    yield


# ---------------------------------------------------------------------------------------------------------
# The config's batch, as shapes.


def example_batch(config: ml_collections.ConfigDict) -> tuple[dict, tuple | None, dict]:
  """One training example of the config's shapes, made by its protocol on blank frames (`protocols.blank_example`).

  Returns:
    (example: name -> array without the batch axis, the static stage scales or None, info: "hr_pixels" per
    example, "steps_per_epoch", "total_steps").
  """
  training.validate_config(config)
  blank = protocols.blank_example(config)
  return blank.example, blank.stage_scales, {"hr_pixels": blank.hr_pixels, "steps_per_epoch": blank.steps_per_epoch,
                                             "total_steps": blank.total_steps}


def abstract_batch(example: dict, batch_size: int, batch_sharding) -> dict:
  """(batch_size, ...) ShapeDtypeStructs of an example's entries, placed by `batch_sharding` (nothing allocated)."""
  return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape, v.dtype, sharding=batch_sharding)
          for k, v in example.items()}


# ---------------------------------------------------------------------------------------------------------
# Compiling and reading the compiled program.

_COLLECTIVE = re.compile(r"= (.*?) (all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter)"
                         r"(-start)?\(")
_ARRAY = re.compile(r"\b([a-z]+)(\d*)\[([\d,]*)\]")
_REFUSED = re.compile(r"HLO temporaries \(([\d.]+)([KMGT]?)\) exceeds available HBM \(([\d.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def largest_collective(hlo: str) -> tuple[int, str]:
  """Bytes and kind of the largest single collective (all-gather, all-reduce, ...) result in compiled HLO text."""
  largest, kind = 0, ""
  for line in hlo.splitlines():
    m = _COLLECTIVE.search(line)
    if m:
      sizes = [int(np.prod([int(d) for d in dims.split(",") if d], dtype=np.int64)) * max(1, int(bits or 8) // 8)
               for _, bits, dims in _ARRAY.findall(m.group(1))]
      # An asynchronous all-gather / permute's result is (operand, result): count the result alone.
      size = sizes[-1] if m.group(3) and m.group(2) in ("all-gather", "collective-permute") else sum(sizes)
      if size > largest:
        largest, kind = size, m.group(2)
  return largest, kind


def _cost(compiled, lowered) -> dict:
  """XLA's FLOPs and bytes accessed of the compiled program, else (the CUDA plugin's compile-only executables have
  none) of the lowered module before optimisation."""
  for source, stage in (("compiled", compiled), ("lowered", lowered)):
    try:
      cost = stage.cost_analysis()
    except Exception:  # pylint: disable=broad-except
      cost = None
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else None
    if cost:
      return {"flops": cost.get("flops"), "bytes_accessed": cost.get("bytes accessed"), "cost_source": source}
  return {"flops": None, "bytes_accessed": None, "cost_source": None}


def compiled_report(lower_fn, capacity_bytes: int, dump_to: str | None = None) -> dict:
  """Lower (`lower_fn()` -> a `jax.stages.Lowered`), compile, and read the per-device memory, cost and collectives.

  A TPU compile that XLA refuses for lack of HBM is reported with `fits` False and the temporaries XLA asked
  for; any other compile error propagates. `dump_to`: a folder for XLA's dump of the program (HLO after each
  pass, buffer assignment, memory-usage report: where the temporaries come from).
  """
  tic = time.perf_counter()
  lowered = lower_fn()
  try:
    compiled = lowered.compile(compiler_options={"xla_dump_to": dump_to} if dump_to else None)
  except Exception as e:  # pylint: disable=broad-except
    m = _REFUSED.search(str(e))
    if "RESOURCE_EXHAUSTED" not in str(e) or m is None:
      raise
    return {"fits": False, "refused": True, "error": str(e).splitlines()[0][:300],
            "temp_bytes": int(float(m.group(1)) * _UNITS[m.group(2)]), "peak_bytes_per_device": None,
            **_cost(None, lowered), "compile_s": time.perf_counter() - tic}
  seconds = time.perf_counter() - tic
  figures = sharding.memory_figures(compiled)
  collective, kind = largest_collective(compiled.as_text())
  return {**figures, **_cost(compiled, lowered), "largest_collective_bytes": collective,
          "largest_collective": kind, "fits": figures["peak_bytes_per_device"] <= capacity_bytes, "refused": False,
          "compile_s": seconds}


_VALUE = re.compile(r"value: <\d+ ([\w.\-]+)(?:\{[\d,]*\})? @\d+> \(size=(\d+),offset=\d+\): (\w+)\[([\d,]*)\]")
_OP_NAME = re.compile(r"%([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]+)\"")
_ITEMSIZE = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
             "s8": 1, "u8": 1, "pred": 1}


def largest_buffers(dump_dir: str, top: int = 10) -> list[dict]:
  """The largest values of XLA's buffer assignment in a dump (`--dump_to`), with their padding.

  A TPU lays each array out in (8, 128) tiles of its two minor dimensions, so an array whose minor dimensions
  are small takes many times its logical size; the ratio physical / logical shows it.

  Args:
    dump_dir: the folder XLA dumped one program into.
    top: how many values to return.

  Returns:
    Dicts (largest physical size first): value, shape, physical_bytes, logical_bytes, op (the jax op it came
    from, from the HLO's metadata), for the first module whose buffer assignment is in the folder.
  """
  import glob  # pylint: disable=g-import-not-at-top
  found = sorted(glob.glob(os.path.join(dump_dir, "*after_optimizations-buffer-assignment.txt")))
  if not found:
    raise ValueError(f"{dump_dir}: no *after_optimizations-buffer-assignment.txt (an XLA dump of a compiled program)")
  hlo_path = found[0].replace("-buffer-assignment.txt", ".txt")
  names = dict(_OP_NAME.findall(open(hlo_path).read())) if os.path.exists(hlo_path) else {}
  values = {}
  for name, size, dtype, dims in _VALUE.findall(open(found[0]).read()):
    logical = math.prod(int(d) for d in dims.split(",") if d) * _ITEMSIZE.get(dtype, 4)
    values[(name, dtype, dims)] = {"value": name, "shape": f"{dtype}[{dims}]", "physical_bytes": int(size),
                                   "logical_bytes": logical, "op": names.get(name, "")}
  return sorted(values.values(), key=lambda v: -v["physical_bytes"])[:top]


@dataclasses.dataclass
class Setup:
  """What `compile_train_step` compiles for a config on a target: model, optimizer, example and devices."""

  config: ml_collections.ConfigDict
  target: Target
  devices: list
  model: object
  tx: object
  abstract_state: object
  example: dict
  scales: tuple | None
  info: dict

  @property
  def table_shape(self):
    shapes = sharding.table_shapes(self.abstract_state["params"])
    return shapes[0] if shapes else None


def setup(config: ml_collections.ConfigDict, target: Target | str) -> Setup:
  """The model, optimizer, abstract state and example batch of `config` as it would train on `target`."""
  target = get_target(target) if isinstance(target, str) else target
  config = for_target(config, target)
  example, scales, info = example_batch(config)
  devices = target_devices(target)
  model = models.from_config(config.model)
  tx = training.make_optimizer(config, info["steps_per_epoch"], info["total_steps"])
  with traced_for(target):
    abstract = training.abstract_state(model, tx)
  return Setup(config, target, devices, model, tx, abstract, example, scales, info)


def compile_train_step(s: Setup, plan: Plan, dump_to: str | None = None) -> dict:
  """The config's train step (`training.make_train_step`) compiled for the target with `plan`; its report
  (`compiled_report`; `dump_to`: XLA's dump folder)."""
  batch_size = int(s.config.data.batch_size)
  if batch_size % plan.data:
    raise ValueError(f"data.batch_size={batch_size} must be a multiple of the {plan.data} devices of the data axis "
                     f"(mesh {plan.mesh})")
  mesh = sharding.make_mesh(plan.model, devices=s.devices)
  state_sharding = sharding.state_shardings(s.abstract_state, mesh, plan.table_sharding)
  state = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), s.abstract_state,
                       state_sharding)
  batch = abstract_batch(s.example, batch_size, NamedSharding(mesh, P("data")))
  step = training.make_train_step(s.model, s.tx, s.config.train.loss, mesh, state_sharding, plan.table_sharding)

  def lower_fn():
    with traced_for(s.target):
      return step.lower(state, batch, s.scales)

  report = compiled_report(lower_fn, s.target.capacity_bytes, dump_to)
  return {"mesh": plan.mesh, "data": plan.data, "model": plan.model, "table_sharding": plan.table_sharding,
          **report}


def inference_inputs(s: Setup) -> tuple[tuple, dict]:
  """One inference call's inputs (batch 1, `eval.chunk` queries, the training LR size) and static kwargs."""
  keys = models.hook(s.model, "batch_keys")
  chunk = int(s.config.eval.get("chunk", 65536) or 65536)
  ex = s.example
  if keys == ("lr", "coords", "lr_size"):
    return (ex["lr"][None], np.zeros((1, chunk, 3), np.float32), ex["lr_size"][None]), {}
  if keys == ("lr", "coords", "cells"):
    kwargs = {} if s.scales is None else {"scales": s.scales}
    return (ex["lr"][None], np.zeros((1, chunk, 2), np.float32), np.zeros((1, chunk, 2), np.float32)), kwargs
  if keys == ("lrs",):
    return (ex["lrs"][None],), {}
  raise ValueError(f"{type(s.model).__name__}: no inference inputs for batch_keys {keys}")


def compile_inference(s: Setup) -> dict:
  """One call of the model as inference makes it (`model.apply` on one chunk of queries), on one device."""
  device = s.devices[0]
  single = jax.sharding.SingleDeviceSharding(device)
  inputs, kwargs = inference_inputs(s)
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single),
                        s.abstract_state["params"])
  args = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=single) for x in inputs]
  fn = jax.jit(lambda p, *xs: s.model.apply({"params": p}, *xs, **kwargs))

  def lower_fn():
    with traced_for(s.target):
      return fn.lower(params, *args)

  report = compiled_report(lower_fn, s.target.capacity_bytes)
  return {"inputs": {k: list(x.shape) for k, x in zip(models.hook(s.model, "batch_keys"), inputs)}, **report}


def will_it_fit(config: ml_collections.ConfigDict, target: Target | str, plan: Plan | None = None, *,
                inference: bool = True, log=print, dump_to: str | None = None) -> dict:
  """Compile the config's train step for `target` with `plan`, or search the plans for the first that fits.

  Args:
    config: a training config.
    target: a Target or a key of TARGETS.
    plan: the plan to compile; None tries `candidate_plans` in order and stops at the first that fits.
    inference: also compile one inference call (`compile_inference`).
    log: called with one line per compiled program (None: silent).
    dump_to: a folder for XLA's dumps of the train steps compiled (`compiled_report`), one sub-folder per plan
      tried (plan0, plan1, ...).

  Returns:
    The report (JSON-ready): `target`, `devices`, `device_kind`, `mesh`, `table_sharding`, `batch` (`frames`,
    `hr_pixels`, `shapes`), `peak_bytes_per_device`, `capacity_bytes`, `fits`, `flops`, `bytes_accessed`, the
    argument / output / temporary bytes, the largest collective, `compile_s`, `plans_tried` (every compiled
    plan's report) and `inference`. Without a fitting plan the fields are those of the last plan tried.

  Raises:
    ValueError: no plan can split the batch, or the named plan cannot (naming the fields).
  """
  s = setup(config, target)
  t = s.target
  batch_size = int(s.config.data.batch_size)
  params_bytes = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(s.abstract_state["params"]))
  points = batch_size * s.info["hr_pixels"]
  plans = [plan] if plan is not None else candidate_plans(t.devices, batch_size, s.table_shape, points=points,
                                                          params_bytes=params_bytes)
  if not plans:
    raise ValueError(f"data.batch_size={batch_size}: no (data x model) mesh of {t.name}'s {t.devices} devices has a "
                     "data axis that divides it")
  tried = []
  for i, p in enumerate(plans):
    r = compile_train_step(s, p, dump_to and os.path.join(dump_to, f"plan{i}"))
    r["communication_bytes_estimate"] = communication_bytes(p, points, params_bytes, s.table_shape)
    tried.append(r)
    if log:
      log(f"{t.name} train step, {p}: {report_line(r, t)}")
    if r["fits"]:
      break
  chosen = next((r for r in tried if r["fits"]), tried[-1])
  report = {"target": t.name, "devices": t.devices, "device_kind": t.kind,
            "batch": {"frames": batch_size, "hr_pixels": s.info["hr_pixels"],
                      "shapes": {k: [batch_size, *v.shape] for k, v in s.example.items()}},
            "scales": list(s.scales) if s.scales else None, **chosen, "capacity_bytes": t.capacity_bytes,
            "device_memory_bytes": t.memory_bytes, "plans_tried": tried}
  if inference:
    report["inference"] = compile_inference(s)
    if log:
      log(f"{t.name} inference call (one device, inputs {report['inference']['inputs']}): "
          f"{report_line(report['inference'], t)}")
  return report


def _gb(x) -> str:
  return "n/a" if x is None else f"{x / 1e9:.2f} GB"


def report_line(r: dict, target: Target) -> str:
  """One line of a compiled program's report: memory per device against the target's, FLOPs, collective, time."""
  if r.get("refused"):
    return (f"refused by XLA: temporaries {_gb(r['temp_bytes'])} exceed the {_gb(target.capacity_bytes)} "
            f"of a {target.kind} device: does not fit (compile {r['compile_s']:.0f} s)")
  line = sharding.format_memory(r, target.capacity_bytes, target.kind)
  cost = (f"{r['flops']:.3g} FLOPs, {r['bytes_accessed']:.3g} bytes accessed ({r['cost_source']})"
          if r.get("flops") is not None else "no cost analysis")
  coll = (f"largest collective {r['largest_collective_bytes'] / 1e6:.1f} MB ({r['largest_collective']})"
          if r.get("largest_collective_bytes") else "no collective")
  return f"{line}: {'fits' if r['fits'] else 'does not fit'}; {cost}; {coll}; compile {r['compile_s']:.0f} s"


def summary(report: dict) -> str:
  """The verdict: the chosen (or named) plan and its peak per device against the capacity, or that none fits."""
  name = f"{report.get('config') or 'config'} on {report['target']} ({report['devices']} x {report['device_kind']})"
  batch = f"batch {report['batch']['frames']} x {report['batch']['hr_pixels']} HR pixels"
  if report["fits"]:
    return (f"{name}, {batch}: FITS with mesh {report['mesh']} (data x model), tables {report['table_sharding']}: "
            f"peak {_gb(report['peak_bytes_per_device'])} per device of {_gb(report['capacity_bytes'])}")
  tried = ", ".join(f"{r['mesh']} {r['table_sharding']}" for r in report["plans_tried"])
  return f"{name}, {batch}: DOES NOT FIT with any plan tried ({tried})"
