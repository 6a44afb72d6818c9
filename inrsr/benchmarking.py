"""Timing and memory helpers for experiments/benchmark_*.py (never used by tests to judge speed)."""

from __future__ import annotations

import platform
import statistics
import time

import jax


def time_fn(fn, *args, warmup: int = 2, reps: int = 5) -> float:
  """Median wall time in seconds of `fn(*args)` (outputs blocked on), after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def compiled_peak_bytes(jitted, *args) -> int | None:
  """Arguments + outputs + temporaries of the compiled executable (XLA's memory analysis), or None."""
  try:
    m = jitted.lower(*args).compile().memory_analysis()
  except Exception:  # Some backends do not implement the analysis.
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def device_description() -> str:
  d = jax.devices()[0]
  if d.platform == "cpu":
    return f"CPU ({platform.processor() or platform.machine()}, {jax.device_count()} device, jax {jax.__version__})"
  return f"{d.device_kind} (jax {jax.__version__})"


def train_throughput(config, *, steps: int = 20, warmup: int = 3) -> dict:
  """HR pixels per second of the jitted train step on `config`, and its compiled peak memory.

  Batches come from the real Grain pipeline, prefetched before timing so that only the step is measured.

  Args:
    config: a training config.
    steps: timed steps.
    warmup: untimed steps first (compilation).

  Returns:
    dict with pixels_per_step, step_ms (median), pixels_per_s, peak_bytes, device.
  """
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  from inrsr import training  # pylint: disable=g-import-not-at-top
  from inrsr.data import pipeline  # pylint: disable=g-import-not-at-top
  from inrsr import models  # pylint: disable=g-import-not-at-top

  frames, times, _ = training.load_training_frames(config)
  spec = training.example_spec(config, frames)
  _, per_epoch = training.total_steps(config, frames)
  it = iter(pipeline.training_dataset(frames, spec, batch_size=config.data.batch_size, seed=0, times=times))
  mesh = training.make_mesh()
  batch_sharding = NamedSharding(mesh, P("data"))
  batches = [{k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in next(it).items()
              if k != "scale"} for _ in range(min(steps + warmup, 8))]
  model = models.from_config(config.model)
  tx = training.make_optimizer(config, per_epoch)
  state = jax.device_put(training.init_state(model, tx, 0), NamedSharding(mesh, P()))
  step = training.make_train_step(model, tx, config.train.loss, mesh)
  peak = compiled_peak_bytes(step, state, batches[0])
  for i in range(warmup):
    state, m = step(state, batches[i % len(batches)])
  jax.block_until_ready(state)
  times_s = []
  for i in range(steps):
    t = time.perf_counter()
    state, m = step(state, batches[i % len(batches)])
    jax.block_until_ready(m)
    times_s.append(time.perf_counter() - t)
  pixels = config.data.batch_size * config.data.pixels_per_frame
  step_s = statistics.median(times_s)
  return {"pixels_per_step": pixels, "step_ms": step_s * 1e3, "pixels_per_s": pixels / step_s,
          "peak_bytes": peak, "device": device_description()}
