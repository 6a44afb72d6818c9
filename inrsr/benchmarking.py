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


def _load_official_liif(official: str, checkpoint: str):
  """The official PyTorch LIIF (`models.make(torch.load(ckpt)['model'], load_sd=True)`) from a checkout.

  Modules the checkout imports but inference does not use (tensorboardX, torchvision, yaml) are stubbed, and
  `.cuda()` is the identity, as the fixture generators do; no model code is edited.
  """
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top

  import torch  # pylint: disable=g-import-not-at-top

  for name in ("tensorboardX", "torchvision", "torchvision.transforms", "yaml"):
    if name not in sys.modules:
      stub = types.ModuleType(name)
      stub.SummaryWriter = stub.transforms = None
      sys.modules[name] = stub
  torch.Tensor.cuda = lambda self, *a, **k: self
  sys.path.insert(0, official)
  import models as official_models  # pylint: disable=g-import-not-at-top
  import test as official_test  # pylint: disable=g-import-not-at-top
  model = official_models.make(torch.load(checkpoint, map_location="cpu")["model"], load_sd=True).eval()
  return model, official_test.batched_predict


def liif_inference_comparison(checkpoint: str, official: str | None, lr, scale: float, *, chunk: int = 30000,
                              reps: int = 3, torch_threads: int = 0) -> dict:
  """Output pixels per second of inrsr's LIIF and (when `official` is given) the official PyTorch LIIF.

  Both run the same weights on the same LR, alternately, after one untimed warm-up call each (compilation for
  inrsr); each figure is the median of `reps` calls of the whole upscale (encoder once, queries in chunks of
  `chunk`, the official test.py's `eval_bsize`).

  Args:
    checkpoint: an official LIIF .pth file.
    official: a checkout of yinboc/liif, or None to time inrsr alone.
    lr: (h, w, 3) float32 LR in [0, 1].
    scale: output = round(h * scale) x round(w * scale).
    chunk: queries per call for both.
    reps: timed calls.
    torch_threads: torch.set_num_threads (0 leaves torch's default).

  Returns:
    dict with output size, inrsr and official pixels/s, their ratio, the max abs difference of the outputs.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from inrsr import convert, inference, models  # pylint: disable=g-import-not-at-top

  _, model_config, params = convert.read_checkpoint(checkpoint, "liif")
  model = models.from_config(ml_collections.ConfigDict(model_config))
  h, w = int(round(lr.shape[0] * scale)), int(round(lr.shape[1] * scale))
  run_ours = lambda: inference.upscale(model, params, lr, h, w, chunk=chunk)
  runs = {"inrsr": run_ours}
  if official:
    import torch  # pylint: disable=g-import-not-at-top
    from inrsr import coords  # pylint: disable=g-import-not-at-top
    if torch_threads:
      torch.set_num_threads(torch_threads)
    off_model, batched_predict = _load_official_liif(official, checkpoint)
    inp = torch.from_numpy((np.asarray(lr, np.float32).transpose(2, 0, 1)[None] - 0.5) / 0.5)
    rows, cols = np.divmod(np.arange(h * w), w)
    coord = torch.from_numpy(coords.grid_xy_f32(rows, cols, h, w)[:, ::-1].copy())[None]  # official (y, x)
    cell = torch.from_numpy(np.tile(np.array([2.0 / h, 2.0 / w], np.float32), (h * w, 1)))[None]

    def run_official():
      pred = batched_predict(off_model, inp, coord, cell, chunk)[0]
      return (pred * 0.5 + 0.5).clamp(0, 1).view(h, w, 3).numpy()

    runs["official"] = run_official
  outs = {k: fn() for k, fn in runs.items()}  # warm-up (and the outputs compared below)
  times = {k: [] for k in runs}
  for _ in range(reps):
    for k, fn in runs.items():
      t = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t)
  result = {"lr": f"{lr.shape[1]}x{lr.shape[0]}", "output": f"{w}x{h}", "scale": scale, "chunk": chunk,
            "device": device_description()}
  for k in runs:
    result[f"{k}_pixels_per_s"] = h * w / statistics.median(times[k])
  if official:
    result["ratio_inrsr_over_official"] = result["inrsr_pixels_per_s"] / result["official_pixels_per_s"]
    result["max_abs_diff"] = float(np.abs(outs["inrsr"] - outs["official"]).max())
  return result
