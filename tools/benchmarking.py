"""Timing and memory helpers for experiments/benchmark_*.py (never used by tests to judge speed)."""

from __future__ import annotations

import platform
import statistics
import time

import jax
import ml_collections

from experiments.configs import clit_train291, common, srinr_demo


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


def alternating_times(runs: dict, reps: int) -> dict:
  """Median wall time in seconds of each callable, timed round-robin (`reps` rounds over all of them).

  Alternating spreads a change in the machine's load over every entry alike, so their ratios stay fair.

  Args:
    runs: {label: zero-argument callable returning host values (already warmed up)}.
    reps: rounds.

  Returns:
    {label: median seconds}.
  """
  times = {label: [] for label in runs}
  for _ in range(reps):
    for label, fn in runs.items():
      t = time.perf_counter()
      fn()
      times[label].append(time.perf_counter() - t)
  return {label: statistics.median(ts) for label, ts in times.items()}


def side_by_side(runs: dict, reps: int) -> dict:
  """First-call time, median time and first output of each callable: one untimed-for-the-median warm-up call
  each (its wall time is the first-call time: compilation included for JAX), then `alternating_times`.

  Args:
    runs: {label: zero-argument callable returning host values}.
    reps: timed rounds (round-robin over the labels).

  Returns:
    {label: {"first_s", "median_s", "output"}} with the output of the first call.
  """
  result = {}
  for label, fn in runs.items():
    t = time.perf_counter()
    out = fn()
    result[label] = {"first_s": time.perf_counter() - t, "output": out}
  for label, seconds in alternating_times(runs, reps).items():
    result[label]["median_s"] = seconds
  return result


def load_average() -> str:
  """The 1, 5 and 15 minute load averages of the machine (`/proc/loadavg`), or "n/a" where there is none."""
  try:
    with open("/proc/loadavg", encoding="ascii") as f:
      return " ".join(f.read().split()[:3])
  except OSError:
    return "n/a"


def compiled_peak_bytes(jitted, *args) -> int | None:
  """Arguments + outputs + temporaries of the compiled executable (XLA's memory analysis), or None."""
  try:
    return _peak_bytes(jitted.lower(*args).compile())
  except Exception:  # Some backends do not implement the analysis.
    return None


def _peak_bytes(compiled) -> int | None:
  """`compiled_peak_bytes` of an executable already compiled (`jitted.lower(...).compile()`)."""
  try:
    m = compiled.memory_analysis()
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

  Batches come from the config's own training data (`training.training_data`: every protocol, fit, internal,
  patches, clips and cascade), prefetched before timing so that only the step is measured. A batch's static
  stage scales (`training.stage_scales`, the cascade protocol) select one compiled step per distinct tuple: every
  tuple among the prefetched batches is compiled and run once before timing, so the figure is the step's, not
  XLA's.

  Args:
    config: a training config.
    steps: timed steps (cycling over at most 8 prefetched batches).
    warmup: untimed steps after the first call of each distinct stage-scale tuple (which compiles it).

  Returns:
    dict with pixels_per_step, step_ms (median), pixels_per_s, peak_bytes (XLA's memory analysis of the first
    batch's step), compiled_steps (distinct stage-scale tuples), first_step_s (compilation and one step) and
    device.
  """
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  from inrsr import models  # pylint: disable=g-import-not-at-top
  from inrsr.train import training  # pylint: disable=g-import-not-at-top

  if steps < 1 or warmup < 0:
    raise ValueError(f"{steps=} must be >= 1 and {warmup=} >= 0")
  dataset, total, per_epoch, pixels = training.training_data(config)
  it = iter(dataset)
  mesh = training.make_mesh()
  batch_sharding = NamedSharding(mesh, P("data"))
  batches = []
  for _ in range(min(steps + warmup, 8)):
    host = dict(next(it))
    scales = training.stage_scales(host)
    batches.append(({k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in host.items()
                     if k != "scale"}, scales))
  model = models.from_config(config.model)
  tx = training.make_optimizer(config, per_epoch, total)
  state = jax.device_put(training.init_state(model, tx, 0), NamedSharding(mesh, P()))
  step = training.make_train_step(model, tx, config.train.loss, mesh)
  compiled, t = {}, time.perf_counter()
  for batch, scales in batches:  # one executable per distinct scales tuple, compiled once (and analysed)
    if scales not in compiled:
      compiled[scales] = step.lower(state, batch, scales).compile()
      state, m = compiled[scales](state, batch)
      if len(compiled) == 1:
        jax.block_until_ready(m)
        first_step_s = time.perf_counter() - t
  for i in range(warmup):
    batch, scales = batches[i % len(batches)]
    state, m = compiled[scales](state, batch)
  jax.block_until_ready(state)
  times_s = []
  for i in range(steps):
    batch, scales = batches[i % len(batches)]
    t = time.perf_counter()
    state, m = compiled[scales](state, batch)
    jax.block_until_ready(m)
    times_s.append(time.perf_counter() - t)
  step_s = statistics.median(times_s)
  return {"pixels_per_step": pixels, "step_ms": step_s * 1e3, "pixels_per_s": pixels / step_s,
          "peak_bytes": _peak_bytes(compiled[batches[0][1]]), "compiled_steps": len(compiled),
          "first_step_s": first_step_s,
          "device": device_description()}


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

  from inrsr import convert, models  # pylint: disable=g-import-not-at-top
  from inrsr.infer import inference

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
  seconds = alternating_times(runs, reps)
  result = {"lr": f"{lr.shape[1]}x{lr.shape[0]}", "output": f"{w}x{h}", "scale": scale, "chunk": chunk,
            "device": device_description()}
  for k in runs:
    result[f"{k}_pixels_per_s"] = h * w / seconds[k]
  if official:
    result["ratio_inrsr_over_official"] = result["inrsr_pixels_per_s"] / result["official_pixels_per_s"]
    result["max_abs_diff"] = float(np.abs(outs["inrsr"] - outs["official"]).max())
  return result


def varied_params(model, seed: int = 0):
  """Random parameters whose output varies over the image: the model's init with every hash table drawn from
  U(-0.5, 0.5) instead of its near-zero init and output biases of 0.5 (an untrained stand-in for a fitted model:
  the same compute, and an image that is not flat, so PNG compression does real work)."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  from inrsr import models  # pylint: disable=g-import-not-at-top

  flat = traverse_util.flatten_dict(model.init(jax.random.key(seed), *models.example_inputs(model))["params"])
  key = jax.random.key(seed + 1)
  for path, leaf in flat.items():
    key, sub = jax.random.split(key)
    if path[-1] == "tables":
      flat[path] = jax.random.uniform(sub, leaf.shape, leaf.dtype, -0.5, 0.5)
    elif path[-2:] == ("color_out", "bias"):
      flat[path] = jax.numpy.full_like(leaf, 0.5)
  return traverse_util.unflatten_dict(flat)


def _memory_input(model, photo, height: int, width: int, lr_size: int, frames: int | None):
  """`upscale_memory`'s LR: a central lr_size crop of the photograph, or (frames given) that many crops of the
  clip model's LR size shifted by 2 pixels per frame."""
  from inrsr.data import images  # pylint: disable=g-import-not-at-top

  if frames is None:
    return images.center_crop(photo, lr_size)
  if height % model.scale or width % model.scale:
    raise ValueError(f"{height}x{width} is not a multiple of {type(model).__name__}'s scale {model.scale}")
  h, w = height // model.scale, width // model.scale
  if h + 2 * (frames - 1) > photo.shape[0] or w + 2 * (frames - 1) > photo.shape[1]:
    raise ValueError(f"{frames} frames of {w}x{h} do not fit the {photo.shape[1]}x{photo.shape[0]} photograph")
  return [photo[2 * k:2 * k + h, 2 * k:2 * k + w] for k in range(frames)]


def upscale_memory(model_config, *, height: int, width: int, lr_size: int = 512, chunk: int = 16384,
                   output: str | None = None, frames: int = 1) -> dict:
  """Wall time and peak host memory of upscaling a bundled photograph to a streamed H x W PNG (or a clip).

  The model (`model_config`) has random parameters (`varied_params`; a whole-clip model, BVSR-IK, its module's
  `init_params`); the LR is an lr_size x lr_size crop of the bundled astronaut photograph. An untimed upscale
  of four chunks' rows comes first (compilation, two chunks in flight), then `inrsr.infer.upscaling.upscale_to_file`
  streams the output band by band. A whole-clip model upscales `frames` crops (shifted by 2 pixels per frame)
  at its own scale instead, H x W being its output (lr_size = H / scale), its frames written one PNG at a time
  from `inference.upscale_clip_frames` (`upscaling.upscale_paths`' clip path), after an untimed 2-frame clip.
  Peak RSS is the process's high-water mark (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, JAX itself and the
  compilation included): run one case per process (`upscale_memory_table`) to compare cases.

  Args:
    model_config: a config's `model` section (e.g. `srinr_demo.get_config("small").model`).
    height: output rows.
    width: output columns.
    lr_size: side of the LR input (images).
    chunk: query points per call (XLA's temporaries for one chunk dominate the memory; see the result's
      `chunk_peak_mib`).
    output: where to keep the PNG (images); None writes it to a temporary folder and deletes it.
    frames: clip length T (whole-clip models only).

  Returns:
    dict with sizes, seconds, pixels per second, the PNG's size, peak RSS before and after the upscale (MiB),
    the compiled chunk's memory (MiB, fitting models), the size a whole float32 output would have taken, and
    the device.
  """
  import os  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import resource  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  from inrsr.infer import allocator, inference, upscaling  # pylint: disable=g-import-not-at-top
  from inrsr import models
  from inrsr.data import images  # pylint: disable=g-import-not-at-top

  max_rss_mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
  model = models.from_config(model_config)
  clip = inference.is_clip_model(model)
  params = models.init_params(model, jax.random.key(0)) if clip else varied_params(model)
  lr = _memory_input(model, images.bundled_image("astronaut"), height, width, lr_size, frames if clip else None)
  chunk_peak = None
  if not clip and not models.is_generalising(model):
    fn, args = inference.repeated_call(model, params, lr, height, width, chunk=chunk or height * width)
    chunk_peak = compiled_peak_bytes(fn, *args)
  tmp = tempfile.TemporaryDirectory()
  path = pathlib.Path(tmp.name) / "upscaled.png" if output is None else pathlib.Path(output)

  def run_clip(clip_frames, folder):
    folder.mkdir(exist_ok=True)
    for k, frame in enumerate(inference.upscale_clip_frames(model, params, clip_frames)):
      upscaling.write_png(upscaling.frame_path(folder, k), iter([(0, frame)]), height, width)
    return sum(os.path.getsize(p) for p in folder.iterdir())

  try:
    if clip:
      allocator.return_freed_memory()  # as `upscaling.upscale_paths` does for a whole-clip model
      run_clip(lr[:2], pathlib.Path(tmp.name) / "warm")
    else:
      warm_rows = 4 * -(-chunk // width) if chunk else height  # four chunks: compiled, two in flight, streamed
      upscaling.upscale_to_file(model, params, lr, pathlib.Path(tmp.name) / "warm.png", min(warm_rows, height),
                                width, chunk=chunk)
    rss_before = max_rss_mib()
    t = time.perf_counter()
    if clip:
      file_bytes = run_clip(lr, pathlib.Path(tmp.name) / "clip")
    else:
      upscaling.upscale_to_file(model, params, lr, path, height, width, chunk=chunk)
      file_bytes = os.path.getsize(path)
    seconds = time.perf_counter() - t
  finally:
    tmp.cleanup()
  n_frames = frames if clip else 1
  first = lr[0] if clip else lr
  return {"lr": f"{first.shape[1]}x{first.shape[0]}", "output": f"{width}x{height}", "frames": n_frames,
          "chunk": chunk, "seconds": seconds, "pixels_per_s": n_frames * height * width / seconds,
          "png_mib": file_bytes / 2**20, "peak_rss_before_upscale_mib": rss_before, "peak_rss_mib": max_rss_mib(),
          "chunk_peak_mib": None if chunk_peak is None else chunk_peak / 2**20,
          "whole_float32_output_mib": n_frames * height * width * 3 * 4 / 2**20, "device": device_description()}


# `experiments.benchmark_upscale --models=...`: the config each model name upscales with (random parameters).
UPSCALE_CONFIGS = {"small": {"srinr": "srinr_demo:small", "liif": "liif_train291:small",
                             "hiif": "hiif_train291:small", "clit": "clit_train291:clit3,small",
                             "bvsr_ik": "bvsr_ik_train291:small"},
                   "full": {"srinr": "srinr_demo", "liif": "liif_train291", "hiif": "hiif_train291",
                            "clit": "clit_train291:clit3", "bvsr_ik": "bvsr_ik_train291"}}


def upscale_memory_table(names, sizes, *, lr_size: int = 512, chunk: int = 65536, frames=(1, 5, 20),
                         model_size: str = "small", timeout_s: float | None = None) -> list[dict]:
  """Peak RSS against output size: one `experiments.benchmark_upscale --config=...` process per (model, size).

  Each case runs alone in a fresh Python process (`upscale_memory`, which reports the process's own peak RSS),
  so one case's allocations never raise another's figure. Image models upscale an lr_size^2 crop to each
  size^2; a whole-clip model (bvsr_ik) upscales a clip of each length in `frames` to size^2 frames (its LR is
  size / 4), so its rows show the memory of T frames against one frame's working set.

  Args:
    names: model names, keys of `UPSCALE_CONFIGS[model_size]`.
    sizes: output sides.
    lr_size: image models' LR side.
    chunk: query points per call, as `experiments.upscale --chunk` (its default 65536).
    frames: the clip lengths of the whole-clip model's rows.
    model_size: "small" (the configs' `:small` models: the streaming path, in minutes on a CPU) or "full".
    timeout_s: per case (None: none); a case over it, or failing, is a row with its "error".

  Returns:
    One dict per case: "model", "config", and `upscale_memory`'s fields (or "error").
  """
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  if model_size not in UPSCALE_CONFIGS:
    raise ValueError(f"{model_size=} must be one of {sorted(UPSCALE_CONFIGS)}")
  configs = UPSCALE_CONFIGS[model_size]
  unknown = [n for n in names if n not in configs]
  if unknown:
    raise ValueError(f"--models: unknown {unknown}; expected some of {', '.join(configs)}")
  rows = []
  for name in names:
    for size in sizes:
      for t in (tuple(frames) if name == "bvsr_ik" else (1,)):
        cmd = [sys.executable, "-m", "experiments.benchmark_upscale", f"--config={configs[name]}",
               f"--size={size}", f"--lr_size={lr_size}", f"--chunk={chunk}", f"--frames={t}"]
        row = {"model": name, "config": configs[name]}
        try:
          run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
          if run.returncode:
            row["error"] = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
          else:
            row.update(json.loads(run.stdout[run.stdout.index("{"):]))
        except subprocess.TimeoutExpired:
          row["error"] = f"over {timeout_s} s"
        rows.append(row)
        print(json.dumps(row), flush=True)
  return rows


def upscale_call_peak_bytes(model, params, lr, height: int, width: int, *, chunk: int,
                            band_decoding: bool = True) -> int | None:
  """XLA's memory analysis (`compiled_peak_bytes`) of one decoding call of `inrsr.infer.inference.upscale`.

  The call is the one `upscale` dispatches again and again for a generalising model: one band of whole rows
  (`CLIT.query_band`) when it decodes in bands, otherwise one chunk of `chunk` query points. Every band, and
  every chunk, has the same shapes, so this is the peak of each. The encoder's call, made once, is not included.

  Args:
    model, params, lr, height, width, chunk, band_decoding: as for `inrsr.infer.inference.upscale` (chunk > 0).

  Returns:
    Bytes (arguments, here the parameters and the features, + outputs + temporaries), or None where the backend
    has no memory analysis.
  """
  from inrsr.infer import inference  # pylint: disable=g-import-not-at-top

  if not has_repeated_call(model, chunk):
    raise ValueError(f"upscale_call_peak_bytes needs a generalising model with independent queries (not "
                     f"{type(model).__name__}) and {chunk=} > 0")
  fn, args = inference.repeated_call(model, params, lr, height, width, chunk=chunk, band_decoding=band_decoding)
  return compiled_peak_bytes(fn, *args)


def has_repeated_call(model, chunk: int) -> bool:
  """Whether `inrsr.infer.inference.upscale` decodes `model` by one call repeated per band or chunk (a generalising
  model whose queries are independent, chunk > 0): the case `upscale_call_peak_bytes` measures."""
  from inrsr import models  # pylint: disable=g-import-not-at-top

  return models.is_generalising(model) and models.hook(model, "queries_independent") and chunk > 0


def inference_throughput(model_configs: dict, lr, scale: float, *, chunk: int = 30000, reps: int = 3,
                         options: dict | None = None) -> dict:
  """Output pixels per second of `inrsr.infer.inference.upscale` for several models on one input, side by side.

  Each model gets random parameters (a jitted `model.init`: the compute does not depend on the values). Every
  model is compiled and run once untimed, then the timed repetitions go round-robin over the models, so that
  a machine whose load changes during the run affects all of them alike; each figure is the median.

  Args:
    model_configs: {label: a config's `model` section}.
    lr: (h, w, 3) float32 LR image.
    scale: SR scale (the output is round(h * scale) x round(w * scale)).
    chunk: query points per inference call.
    reps: timed repetitions per model.
    options: {label: further keywords of `inference.upscale`} (e.g. band_decoding=False).

  Returns:
    dict with the input and output sizes, the device, and per label: seconds (median), pixels_per_s,
    first_call_s (compilation included), the parameter count and, for generalising models whose queries are
    independent, call_peak_mib (`upscale_call_peak_bytes`: XLA's memory for one band or chunk call).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  from inrsr.infer import inference  # pylint: disable=g-import-not-at-top
  from inrsr import models

  height, width = round(lr.shape[0] * scale), round(lr.shape[1] * scale)
  runs, result = {}, {"lr": f"{lr.shape[1]}x{lr.shape[0]}", "output": f"{width}x{height}", "scale": scale,
                      "chunk": chunk, "device": device_description(), "models": {}}
  for label, model_config in model_configs.items():
    model = models.from_config(model_config)
    params = jax.jit(model.init)(jax.random.key(0), *models.example_inputs(model))["params"]
    kwargs = dict((options or {}).get(label, {}))
    run = lambda model=model, params=params, kwargs=kwargs: inference.upscale(model, params, lr, height, width,
                                                                              chunk=chunk, **kwargs)
    t = time.perf_counter()
    run()
    result["models"][label] = {"first_call_s": time.perf_counter() - t,
                               "parameters": int(sum(np.size(x) for x in jax.tree.leaves(params)))}
    if has_repeated_call(model, chunk):
      peak = upscale_call_peak_bytes(model, params, lr, height, width, chunk=chunk,
                                     band_decoding=kwargs.get("band_decoding", True))
      result["models"][label]["call_peak_mib"] = None if peak is None else peak / 2**20
    runs[label] = run
  for label, seconds in alternating_times(runs, reps).items():
    result["models"][label].update(seconds=seconds, pixels_per_s=height * width / seconds)
  return result


POINT_QUERIED = {"lit_points": "lit", "clit_points": "clit"}  # decoded point by point (band_decoding=False)


def model_config(name: str) -> ml_collections.ConfigDict:
  """The `model` section benchmarked for a name."""
  name = POINT_QUERIED.get(name, name)
  if name == "srinr":
    return srinr_demo.get_config().model
  key = {"liif": "liif", "hiif": "hiif", "lit": "clit", "clit": "clit"}.get(name)
  if key is None:
    raise ValueError(f"--models: unknown model {name!r}; expected srinr, liif, hiif, lit, clit, lit_points or "
                     "clit_points")
  config = ml_collections.ConfigDict(common.GENERALISING_MODELS[key])
  if name == "clit":
    config.num_stages = len(clit_train291.STAGES["clit3"][0])  # CLIT3, the end of the cumulative schedule
  return config
