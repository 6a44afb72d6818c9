r"""Per-device memory and step time of SR-INR's train step with the hash tables sharded over a `model` axis.

  python -m experiments.benchmark_sharding [--memory_devices=1,2,4,8] [--reps=5] [--out=sharding.json]

Runs on 8 host (CPU) devices; the script sets `--xla_force_host_platform_device_count=8` (and JAX_PLATFORMS=cpu
unless set) before jax starts. Two parts:
  * memory: the paper-size model (L=12, T=2^24, F=2; `experiments/configs/common.py`) with Adam, one train step
    (MSE, value_and_grad, Adam update, state donated) compiled from `jax.ShapeDtypeStruct` inputs, so nothing is
    allocated, on d = 1, 2, 4, 8 devices: per-device bytes from XLA's memory analysis for the replicated state
    (data = d) and for each table layout ("rows", "levels") and mechanism ("spmd": only the state is sharded
    and XLA partitions the gather; "shard_map": `inrsr.train.sharding.table_layout`) on a (data=1, model=d) mesh and
    on the (data=4, model=2) and (2, 4) meshes of 8 devices, with the largest single collective of the
    compiled program (which shows a table all-gathered or all-reduced);
  * throughput: the CPU-sized model (`common.cpu_model`: L=8, T=2^18) on the 8 devices, replicated (data=8)
    against each layout and mechanism on (data=4, model=2), (2, 4) and (1, 8), timed round-robin
    (`benchmarking.alternating_times`), random parameters and inputs.
Prints both tables as Markdown and writes them as JSON to --out.
"""

import os

HOST_DEVICES = 8
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):  # Before jax starts.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={HOST_DEVICES}").strip()

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax

from experiments import configs
from experiments.configs import common
from inrsr import models
from inrsr.train import sharding
from tools import aot, benchmarking
# pylint: enable=g-import-not-at-top,wrong-import-position

_MEMORY_DEVICES = flags.DEFINE_list("memory_devices", ["1", "2", "4", "8"],
                                     "Device counts of the memory table (each on a (data=1, model=d) mesh).")
_MIXED = flags.DEFINE_list("mixed_meshes", ["4x2", "2x4"], "More (data x model) meshes of the memory table.")
_BATCH = flags.DEFINE_integer("batch", 32, "Frames per step, memory part (the papers' B).")
_PIXELS = flags.DEFINE_integer("pixels", 4096, "HR pixels per frame, memory part (the papers' P).")
_LR = flags.DEFINE_integer("lr_size", 64, "LR side, memory part.")
_T_BATCH = flags.DEFINE_integer("throughput_batch", 8, "Frames per step, throughput part.")
_T_PIXELS = flags.DEFINE_integer("throughput_pixels", 1024, "HR pixels per frame, throughput part.")
_T_LR = flags.DEFINE_integer("throughput_lr_size", 32, "LR side, throughput part.")
_REPS = flags.DEFINE_integer("reps", 5, "Timed rounds (median), round-robin over the variants.")
_SKIP = flags.DEFINE_list("skip", [], "Parts to skip: memory, throughput.")
_OUT = flags.DEFINE_string("out", "", "Write the results as JSON here.")

VARIANTS = (("rows", "spmd"), ("rows", "shard_map"), ("levels", "spmd"), ("levels", "shard_map"))


def train_step(model, tx, mesh, abstract_state, tables: str, mechanism: str):
  """The jitted train step (MSE, Adam, state donated) and the state's shardings for one layout and mechanism."""
  shardings = sharding.state_shardings(abstract_state, mesh, tables)
  replicated, batched = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

  def step(state, batch):
    def objective(params):
      out = model.apply({"params": params}, batch["lr"], batch["coords"])
      return jnp.mean(jnp.square(out - batch["rgb"]))

    loss, grads = jax.value_and_grad(objective)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, loss

  if mechanism != "spmd":  # "spmd": XLA's partitioner splits the gather of the sharded tables by itself.
    step = sharding.with_table_layout(step, mesh, tables)  # As training.make_train_step; replicated: over `data`.
  jitted = jax.jit(step, in_shardings=(shardings, batched), out_shardings=(shardings, replicated),
                   donate_argnums=(0,))
  return jitted, shardings


def new_state(model, tx, params=None):
  params = models.init_params(model, jax.random.key(0)) if params is None else params
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}


def batch_shapes(batch: int, pixels: int, lr_size: int) -> dict:
  return {"lr": (batch, lr_size, lr_size, 3), "coords": (batch, pixels, 3), "rgb": (batch, pixels, 3)}


def memory_row(model, tx, devices: int, data: int, tables: str, mechanism: str) -> dict:
  """Per-device compiled memory of one train step on `devices` devices as a (data, devices // data) mesh."""
  mesh = sharding.make_mesh(devices // data, devices=jax.devices()[:devices])
  abstract = jax.eval_shape(lambda: new_state(model, tx, model.init(jax.random.key(0),
                                                                     *models.example_inputs(model))["params"]))
  step, shardings = train_step(model, tx, mesh, abstract, tables, mechanism)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
  batched = NamedSharding(mesh, P("data"))
  batch = {k: jax.ShapeDtypeStruct(v, jnp.float32, sharding=batched)
           for k, v in batch_shapes(_BATCH.value, _PIXELS.value, _LR.value).items()}
  tic = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  m = compiled.memory_analysis()
  gb = 1e9
  return {"devices": devices, "mesh": f"{data}x{devices // data}", "tables": tables, "mechanism": mechanism,
          "argument_gb": m.argument_size_in_bytes / gb, "output_gb": m.output_size_in_bytes / gb,
          "temp_gb": m.temp_size_in_bytes / gb, "alias_gb": m.alias_size_in_bytes / gb,
          "peak_gb": (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                      - m.alias_size_in_bytes) / gb,
          "largest_collective_mb": aot.largest_collective(compiled.as_text())[0] / 1e6,
          "compile_s": time.perf_counter() - tic}


def memory_table(model_config) -> list[dict]:
  """Memory rows: replicated (data = d) and each variant on (1, d) for each d, then each variant on the mixed
  meshes."""
  model = models.from_config(model_config)
  tx = optax.adam(1e-4)
  num_levels, table_size = model_config.num_levels, 1 << model_config.log2_table_size
  meshes = [(d, 1, d) for d in (int(v) for v in _MEMORY_DEVICES.value)]
  meshes += [(int(a) * int(b), int(a), int(b)) for a, b in (m.split("x") for m in _MIXED.value)]
  rows = []
  for devices, data, model_axis in meshes:
    if model_axis == devices:
      rows.append(memory_row(model, tx, devices, devices, "replicated", "-"))
      print(rows[-1], flush=True)
    for tables, mechanism in VARIANTS if model_axis > 1 else ():
      if (num_levels if tables == "levels" else table_size) % model_axis:
        rows.append({"devices": devices, "mesh": f"{data}x{model_axis}", "tables": tables, "mechanism": mechanism,
                     "skipped": f"L={num_levels} not divisible by {model_axis}"})
      else:
        rows.append(memory_row(model, tx, devices, data, tables, mechanism))
      print(rows[-1], flush=True)
  return rows


def throughput_table(model_config) -> list[dict]:
  """Steps/s and HR pixels/s on all devices, replicated (data parallel) against each sharded variant."""
  model = models.from_config(model_config)
  tx = optax.adam(1e-3)
  host_state = jax.tree.map(np.asarray, new_state(model, tx))
  rng = np.random.default_rng(0)
  shapes = batch_shapes(_T_BATCH.value, _T_PIXELS.value, _T_LR.value)
  host_batch = {k: rng.uniform(-1 if k == "coords" else 0, 1, v).astype(np.float32) for k, v in shapes.items()}
  n = jax.device_count()
  cases = [(n, "replicated", "-")] + [(n // m, t, mech) for m in (2, 4, 8) if n % m == 0 and m <= n
                                      for t, mech in VARIANTS]
  runs, losses = {}, {}
  for data, tables, mechanism in cases:
    mesh = sharding.make_mesh(n // data)
    step, shardings = train_step(model, tx, mesh, host_state, tables, mechanism)
    holder = {"state": jax.device_put(jax.tree.map(np.array, host_state), shardings)}
    batch = jax.device_put(host_batch, NamedSharding(mesh, P("data")))
    label = (data, tables, mechanism)

    def run(step=step, holder=holder, batch=batch, label=label):
      holder["state"], loss = step(holder["state"], batch)
      losses[label] = float(loss)

    for _ in range(2):  # Compilation and warm-up.
      run()
    runs[label] = run
    print(f"compiled {label}", flush=True)
  seconds = benchmarking.alternating_times(runs, _REPS.value)
  pixels = _T_BATCH.value * _T_PIXELS.value
  return [{"mesh": f"{d}x{n // d}", "tables": t, "mechanism": mech, "step_ms": s * 1e3, "steps_per_s": 1 / s,
           "pixels_per_s": pixels / s, "loss_after_warmup_and_reps": losses[(d, t, mech)]}
          for (d, t, mech), s in seconds.items()]


def markdown(rows: list[dict], columns: list[str]) -> str:
  def cell(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(columns) + " | note |", "|" + "---|" * (len(columns) + 1)]
  lines += ["| " + " | ".join(cell(r.get(c, "n/a")) for c in columns) + " | " + r.get("skipped", "") + " |"
            for r in rows]
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = {"device": benchmarking.device_description()}
  if "memory" not in _SKIP.value:
    paper = common.base().model
    result["memory"] = memory_table(paper)
    print(markdown(result["memory"], ["devices", "mesh", "tables", "mechanism", "argument_gb", "temp_gb",
                                      "peak_gb", "largest_collective_mb"]))
  if "throughput" not in _SKIP.value:
    small = common.cpu_model(common.base()).model
    result["throughput"] = throughput_table(small)
    print(markdown(result["throughput"], ["mesh", "tables", "mechanism", "step_ms", "steps_per_s",
                                          "pixels_per_s"]))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  configs.run(main, names=())
