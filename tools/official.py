"""The official PyTorch code beside the ports: cases, runs, rows and their Markdown (experiments.benchmark_official)."""

from __future__ import annotations

import ast
import dataclasses
import datetime
import importlib.util
import json
import multiprocessing
import os
import pathlib
import platform
import sys
import traceback
import types

import numpy as np

from inrsr.infer import allocator
from tools import benchmarking


REPO = pathlib.Path(__file__).resolve().parents[1]

BAR = 1e-5  # the fixtures' bar (../shared/fixtures/README.md): max abs difference of the outputs
CHECKOUTS = {"liif": ("liif",), "clit": ("CLIT", "clit"), "hiif": ("HIIF", "hiif"),
             "bvsr_ik": ("BVSR-IK", "BVSR_IK", "bvsr_ik")}
CHECKPOINTS = {"liif_edsr": "liif/edsr_baseline_liif.pth", "liif_rdn_a": "liif/rdn_a_liif.pth",
               "clit3": "clit/edsr_baseline_clit3.pth", "hiif": "hiif/edsr_baseline_hiif.pth",
               "bvsr_ik": "bvsr_ik/bvsr_ik.pth"}


@dataclasses.dataclass(frozen=True)
class Case:
  """One row (or several rows sharing the official side: `variants` of inrsr's options)."""
  label: str
  model: str  # liif, clit, hiif, bvsr_ik
  checkpoint: str  # key of CHECKPOINTS
  size: int = 128  # LR side
  scale: float = 4.0
  variants: tuple = (("", {}),)  # (label suffix, inference.upscale keywords) per inrsr run
  frames: int = 5  # bvsr_ik
  batch: int = 0  # > 0: the LIIF train step at this batch size


CASES = {
    "liif_edsr_x4": Case("LIIF EDSR-baseline x4, 128 -> 512", "liif", "liif_edsr"),
    "liif_rdn_a_x4": Case("LIIF RDN-A x4, 128 -> 512", "liif", "liif_rdn_a"),
    "clit3_x4": Case("CLIT3 x4 (one stage), 128 -> 512", "clit", "clit3"),
    "clit3_x12_32": Case("CLIT3 x12 cascade [4, 3], 32 -> 384", "clit", "clit3", size=32, scale=12.0),
    "clit3_x12_64": Case("CLIT3 x12 cascade [4, 3], 64 -> 768", "clit", "clit3", size=64, scale=12.0,
                         variants=((", band decoding (the default)", {}),
                                   (", point queries (band_decoding=False)", {"band_decoding": False}))),
    "hiif_x4": Case("HIIF x4, 128 -> 512 (official batched_predict_fast, one chunk)", "hiif", "hiif"),
    "hiif_x8": Case("HIIF x8, 64 -> 512 (cell clipped x2)", "hiif", "hiif", size=64, scale=8.0),
    "bvsr_ik_x4": Case("BVSR-IK x4, 5 frames 64 -> 256", "bvsr_ik", "bvsr_ik", size=64),
    "liif_train_b4": Case("LIIF train step (48x48 LR, 2304 queries, L1, Adam), batch 4", "liif", "liif_edsr",
                          size=48, batch=4),
    "liif_train_b16": Case("LIIF train step (48x48 LR, 2304 queries, L1, Adam), batch 16", "liif", "liif_edsr",
                           size=48, batch=16),
}
TRAIN_QUERIES = 2304  # the official LIIF sample_q


# ------------------------------------------------------------------------------------------ the official code

def _stub(*names: str) -> None:
  """Empty modules for imports the official files make but this benchmark never uses (where they do not import)."""
  import importlib  # pylint: disable=g-import-not-at-top
  for name in names:
    if name in sys.modules:
      continue
    try:
      importlib.import_module(name)
      continue
    except Exception:  # pylint: disable=broad-except
      pass
    stub = types.ModuleType(name)
    for attr in ("SummaryWriter", "transforms", "DropPath", "to_2tuple", "trunc_normal_", "InterpolationMode"):
      setattr(stub, attr, None)
    sys.modules[name] = stub
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
      setattr(sys.modules[parent], child, stub)


def _purge(prefixes=("models", "utils", "datasets", "test", "model_KCA", "config")) -> None:
  # The checkouts all have top-level `models` and `utils`: forget one repository's before importing another's
  # (objects already made keep their modules).
  for name in list(sys.modules):
    if name.split(".")[0] in prefixes:
      del sys.modules[name]


def _import_from(root: pathlib.Path, *names: str):
  _purge()
  sys.path.insert(0, str(root))
  try:
    return [__import__(n, fromlist=["_"]) for n in names]
  finally:
    sys.path.remove(str(root))
    _purge()


def _official_fn(path: pathlib.Path, name: str, namespace: dict):
  """A top-level function of an official file, taken verbatim (importing the file would pull in its script deps)."""
  src = path.read_text()
  fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == name)
  exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), namespace)  # pylint: disable=exec-used
  return namespace[name]


def _cuda_is_identity() -> None:
  import torch  # pylint: disable=g-import-not-at-top
  torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the official code calls .cuda() on tensors
  torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # ... and on CLIT's position encoder


def _official_model(kind: str, root: pathlib.Path, checkpoint: pathlib.Path):
  """(official model in eval mode, helpers) for LIIF, CLIT or HIIF: `models.make(ckpt['model'], load_sd=True)`."""
  import torch  # pylint: disable=g-import-not-at-top
  _cuda_is_identity()
  _stub("tensorboardX", "torchvision", "torchvision.transforms", "timm", "timm.models", "timm.models.layers",
        "cv2", "matplotlib", "matplotlib.pyplot")
  models_mod, utils_mod = _import_from(root, "models", "utils")
  model = models_mod.make(torch.load(checkpoint, map_location="cpu")["model"], load_sd=True).eval()
  helpers = {"make_coord": utils_mod.make_coord}
  if kind == "liif":
    helpers["batched_predict"] = _official_fn(root / "test.py", "batched_predict", {"torch": torch})
  elif kind == "hiif":
    helpers["batched_predict_fast"] = _official_fn(root / "test.py", "batched_predict_fast", {"torch": torch})
  elif kind == "clit":
    import copy  # pylint: disable=g-import-not-at-top
    helpers["sample_system_scale"] = _official_fn(root / "datasets" / "cascaded_wrappers.py", "sample_system_scale",
                                                  {"copy": copy})
  return model, helpers


def _official_bvsr_ik(root: pathlib.Path, checkpoint: pathlib.Path):
  """The official KCANet (exp_KCA_REDS_Gaussian.cfg) with the fixture's plain state_dict, eval mode."""
  import torch  # pylint: disable=g-import-not-at-top
  _stub("cv2")
  prev = os.getcwd()
  os.chdir(root)  # SpyNet's relative './preprocessing/...' path
  try:
    mk, config = _import_from(root, "model_KCA", "config")

    class _CpuTorch(types.ModuleType):
      def __getattr__(self, name):
        return getattr(torch, name)

    def _cpu(fn):
      def call(*args, **kw):
        if str(kw.get("device", "")).startswith("cuda"):
          kw["device"] = "cpu"
        return fn(*args, **kw)
      return call

    proxy = _CpuTorch("torch")
    proxy.zeros, proxy.ones, proxy.arange = _cpu(torch.zeros), _cpu(torch.ones), _cpu(torch.arange)
    mk.torch = proxy  # hard-coded device='cuda' in SizeGroupINRConvCord and shape2coordinate
    spynet_init = mk.SpyNet.__init__

    def _spynet(self, load_path=None):  # the pretrained SpyNet file is absent from the snapshot; the state_dict has it
      return spynet_init(self, load_path if load_path and os.path.isfile(load_path) else None)

    mk.SpyNet.__init__ = _spynet
    model = mk.KCANet(config.Config_KCA(str(root / "exp_KCA_REDS_Gaussian.cfg")))
  finally:
    os.chdir(prev)
  model.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=True)
  return model.eval()


# --------------------------------------------------------------------------------------------------- cases

def _lr(size: int) -> np.ndarray:
  from inrsr.data import images  # pylint: disable=g-import-not-at-top
  return np.ascontiguousarray(images.center_crop(images.bundled_image("astronaut"), size), np.float32)


def _inrsr_model(checkpoint: pathlib.Path, name: str):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from inrsr import convert, models  # pylint: disable=g-import-not-at-top
  got, model_config, params = convert.read_checkpoint(checkpoint, name)
  return models.from_config(ml_collections.ConfigDict({**model_config, "name": got})), params


def _unamplify(kind: str, official, params) -> dict:
  """Take the LIIF and CLIT fixtures' x100 on the last MLP layer back out, the same in both implementations.

  The fixtures amplify it so that a port's error shows far above the 1e-5 bar on their tiny input; on a
  photograph it drives most outputs out of [0, 1], where clipping would hide any difference. The timing does
  not depend on the values.
  """
  import torch  # pylint: disable=g-import-not-at-top
  if kind not in ("liif", "clit"):
    return params
  with torch.no_grad():
    for imnet in [official.imnet] if kind == "liif" else list(official.imnets):
      imnet.layers[-1].weight.mul_(np.float32(0.01))
  params = dict(params)
  if kind == "liif":
    last = f"imnet_{sum(k.startswith('imnet_') for k in params) - 1}"
    params[last] = {**params[last], "kernel": params[last]["kernel"] * np.float32(0.01)}
  else:
    for name in [k for k in params if k.startswith("imnets_")]:
      layers = dict(params[name])
      last = f"layers_{len(layers) - 1}"
      layers[last] = {**layers[last], "kernel": layers[last]["kernel"] * np.float32(0.01)}
      params[name] = layers
  return params


def _image_runs(case: Case, root: pathlib.Path, checkpoint: pathlib.Path, chunk: int):
  """(official run, {suffix: inrsr run}, output pixels) of an image SR case; runs return (H, W, 3) in [0, 1]."""
  import torch  # pylint: disable=g-import-not-at-top
  from inrsr.infer import inference  # pylint: disable=g-import-not-at-top

  lr = _lr(case.size)
  h, w = lr.shape[:2]
  height, width = round(h * case.scale), round(w * case.scale)
  inp = torch.from_numpy((lr.transpose(2, 0, 1)[None] - 0.5) / 0.5)
  off, helpers = _official_model(case.model, root, checkpoint)
  make_coord = helpers["make_coord"]
  cell_scale = max(case.scale / 4, 1.0) if case.model == "hiif" else 1.0  # test.py's eval_psnr clip (HIIF)

  if case.model == "liif":
    coord = make_coord((height, width))[None]
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / height
    cell[..., 1] *= 2 / width

    def official():
      return helpers["batched_predict"](off, inp, coord, cell, chunk)[0].view(height, width, 3)
  elif case.model == "clit":
    scales = helpers["sample_system_scale"](case.scale, 4)
    hws = [(round(h * float(np.prod(scales[:i + 1]))), round(w * float(np.prod(scales[:i + 1]))))
           for i in range(len(scales))]
    if tuple(hws[-1]) != (height, width):
      raise ValueError(f"CLIT stage sizes {hws} do not end at {height}x{width}")
    coords = [make_coord(t, flatten=False)[None] for t in hws]
    cell = torch.tensor([[2.0 / height, 2.0 / width]])

    def official():
      with torch.no_grad():
        return off.chop_forward(inp, coords, cell, chunk)[0].view(height, width, 3)
  else:  # hiif: every query in one chunk (bsize = H rows), the cell clipped as test.py's eval_psnr does
    coord = make_coord((height, width), flatten=False)[None]
    cell = torch.tensor([[2.0 / height, 2.0 / width]]) * cell_scale

    def official():
      return helpers["batched_predict_fast"](off, inp, coord, cell, height)[0].permute(1, 2, 0)

  def official_run():
    with torch.no_grad():
      return (official() * 0.5 + 0.5).clamp(0, 1).numpy()

  model, params = _inrsr_model(checkpoint, case.model)
  params = _unamplify(case.model, off, params)
  runs = {suffix: (lambda kw=kw: inference.upscale(model, params, lr, height, width, chunk=chunk,
                                                   cell_scale=cell_scale, **kw))
          for suffix, kw in case.variants}
  return official_run, runs, height * width


def _clip(size: int, frames: int) -> np.ndarray:
  """T frames of a size x size window drifting over the bundled astronaut photograph (1 px down, 2 px right per
  frame): (T, size, size, 3) RGB float32."""
  from inrsr.data import images  # pylint: disable=g-import-not-at-top
  image = images.bundled_image("astronaut")
  y0, x0 = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2 - frames
  return np.stack([image[y0 + t:y0 + t + size, x0 + 2 * t:x0 + 2 * t + size] for t in range(frames)]).astype(
      np.float32)


def _clip_runs(case: Case, root: pathlib.Path, checkpoint: pathlib.Path):
  """(official run, {"": inrsr run}, output pixels) of BVSR-IK; runs return (T, H, W, 3) RGB in [0, 1]."""
  import torch  # pylint: disable=g-import-not-at-top
  from inrsr.infer import inference  # pylint: disable=g-import-not-at-top
  from inrsr import models

  frames = _clip(case.size, case.frames)
  off = _official_bvsr_ik(root, checkpoint)
  lrs = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1].transpose(0, 3, 1, 2))[None])  # BGR, as cv2 reads

  def official_run():
    with torch.no_grad():
      out = off(lrs)["outputs"][0]  # (T, 3, H, W) BGR
    return out.permute(0, 2, 3, 1).flip(-1).clamp(0, 1).numpy()

  model, params = _inrsr_model(checkpoint, "bvsr_ik")
  scale = int(models.hook(model, "scale") or 4)
  return official_run, {"": lambda: inference.upscale_clip(model, params, list(frames))}, (
      case.frames * (case.size * scale) ** 2)


def _train_runs(case: Case, root: pathlib.Path, checkpoint: pathlib.Path):
  """(official step, {"": inrsr step}, None) of the LIIF train step; each returns the step's L1 loss in [0, 1]
  units (the official loss is on the normalised output, (x - 0.5) / 0.5, so it is halved)."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from inrsr.train import training  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  b, q, s = case.batch, TRAIN_QUERIES, case.size
  image = _lr(512)
  tops = rng.integers(0, image.shape[0] - s, size=(b, 2))
  lr = np.stack([image[y:y + s, x:x + s] for y, x in tops]).astype(np.float32)  # (B, s, s, 3)
  xy = rng.uniform(-1, 1, size=(b, q, 2)).astype(np.float32)  # inrsr's (x, y)
  cells = np.full((b, q, 2), 2.0 / (s * 4), np.float32)
  rgb = rng.uniform(0, 1, size=(b, q, 3)).astype(np.float32)

  off, _ = _official_model("liif", root, checkpoint)
  off.train()
  optimizer = torch.optim.Adam(off.parameters(), lr=1e-4)  # the official train_liif.py optimiser spec
  loss_fn = torch.nn.L1Loss()
  inp = torch.from_numpy((lr.transpose(0, 3, 1, 2) - 0.5) / 0.5)
  coord, cell = torch.from_numpy(xy[..., ::-1].copy()), torch.from_numpy(cells[..., ::-1].copy())
  gt = torch.from_numpy((rgb - 0.5) / 0.5)

  def official_step():  # the body of train_liif.py's train() loop
    pred = off(inp, coord, cell)
    loss = loss_fn(pred, gt)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return np.float32(loss.item() * 0.5)

  model, params = _inrsr_model(checkpoint, "liif")
  params = _unamplify("liif", off, params)
  tx = optax.adam(1e-4)
  mesh = training.make_mesh()
  step = training.make_train_step(model, tx, "l1", mesh)
  # Placed as `training.train` places it: an uncommitted state would make the second call compile again.
  state = jax.device_put({"step": jax.numpy.zeros((), jax.numpy.int32), "params": params,
                          "opt_state": tx.init(params)}, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  batch = {"lr": lr, "coords": xy, "cells": cells, "rgb": rgb}
  holder = {"state": state}

  def inrsr_step():
    holder["state"], metrics = step(holder["state"], batch)
    return np.float32(metrics["loss"])

  return official_step, {"": inrsr_step}, None


def run_case(name: str, case: Case, official_dir: pathlib.Path, fixtures: pathlib.Path, reps: int,
             chunk: int) -> list[dict]:
  """The rows of one case (one per inrsr variant)."""

  root = next((official_dir / d for d in CHECKOUTS[case.model] if (official_dir / d).is_dir()), None)
  checkpoint = fixtures / CHECKPOINTS[case.checkpoint]
  base = {"case": name, "label": case.label}
  if root is None:
    return [{**base, "skipped": f"no checkout of the official {case.model} code under {official_dir} "
                                f"(looked for {', '.join(CHECKOUTS[case.model])})"}]
  if not checkpoint.is_file():
    return [{**base, "skipped": f"fixture checkpoint {checkpoint} not found (--fixtures or INRSR_SHARED_DIR)"}]
  if case.batch:
    official, ours, pixels = _train_runs(case, root, checkpoint)
  elif case.model == "bvsr_ik":
    official, ours, pixels = _clip_runs(case, root, checkpoint)
  else:
    official, ours, pixels = _image_runs(case, root, checkpoint, chunk)
  runs = {"official": official, **{f"inrsr{suffix}": fn for suffix, fn in ours.items()}}
  timed = benchmarking.side_by_side(runs, reps)
  rows = []
  for suffix in ours:
    mine, theirs = timed[f"inrsr{suffix}"], timed["official"]
    diff = float(np.max(np.abs(np.asarray(mine["output"], np.float64) - np.asarray(theirs["output"], np.float64))))
    row = {**base, "label": case.label + suffix}
    if pixels is None:  # train step: seconds per step; speed is its inverse
      row.update(unit="s/step", official=theirs["median_s"], inrsr=mine["median_s"],
                 ratio=theirs["median_s"] / mine["median_s"])
    else:
      row.update(unit="px/s", official=pixels / theirs["median_s"], inrsr=pixels / mine["median_s"],
                 ratio=theirs["median_s"] / mine["median_s"])
    row.update(max_abs_diff=diff, within_bar=diff <= BAR, official_first_s=theirs["first_s"],
               inrsr_first_s=mine["first_s"], repeats=reps)
    rows.append(row)
  return rows


# ------------------------------------------------------------------------------------------------- output

def run_header(threads: int, allocator_mode: str = "glibc default") -> dict:
  """The run's context: date, command, machine, versions, threads, XLA flags, glibc's allocator (`allocator_mode`
  and its environment variables) and the load average at start."""
  import jax  # pylint: disable=g-import-not-at-top
  torch = _torch()
  cpu = "unknown CPU"
  try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo", encoding="ascii") if "model name" in l)
  except (OSError, StopIteration):
    pass
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "command": " ".join(["python -m experiments.benchmark_official"] + sys.argv[1:]),
          "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()}",
          "torch": torch.__version__ if torch else "not installed", "torch_threads": threads,
          "jax": jax.__version__, "jax_device": benchmarking.device_description(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "allocator": " ".join(filter(None, [allocator_mode, allocator.settings()])),
          "load_start": benchmarking.load_average()}


def _fmt(v, unit):
  if unit == "s/step":
    return f"{v:.3g} s"
  return f"{v:,.0f} px/s"


def run_cases(names, official_dir: pathlib.Path, fixtures: pathlib.Path, *, repeats: int, chunk: int,
              threads: int, json_path: str | None = None, allocator_mode: str = "glibc default",
              one_process: bool = False) -> tuple[dict, list[dict]]:
  """Every named case in turn (`run_case`), each in a fresh process of its own unless `one_process`, each logged to
  stderr with the load average; a case that raises (or whose process dies) is a row with its error.

  A case run after others in one process inherits their heap, threads and imported code, and either side may gain
  from that more than the other (BVSR-IK's official side ran 1.7x faster fifth in one process than alone,
  BENCHMARKS.md), so by default each case starts from a new interpreter (`multiprocessing`'s spawn), as a user's
  run of either implementation would and as the issue's table was measured.

  Args:
    names: keys of CASES.
    official_dir: the folder of official checkouts.
    fixtures: the shared fixtures folder (its checkpoints are the weights).
    repeats: timed calls per implementation (median), interleaved.
    chunk: query points per call for both.
    threads: torch's thread count (set in the process that runs the case).
    json_path: rewritten with the rows and the run's header after every case (a run that stops keeps what it
      measured), when given.
    allocator_mode: how the caller set glibc's allocator ("reuse_freed_memory" or the default); a case's own
      process sets it the same way before anything else.
    one_process: run every case in this process (the earlier behaviour).

  Returns:
    (the run's header, `run_header` with "processes" and "load_end"; the rows, each with the "pid" of the process
    that ran it).
  """
  header = run_header(threads, allocator_mode)
  header["processes"] = "one for every case" if one_process else "a fresh one per case"
  rows = []
  for name in names:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {name} (load {benchmarking.load_average()})", file=sys.stderr,
          flush=True)
    case = (name, official_dir, fixtures, repeats, chunk, threads)
    got = _case_here(*case) if one_process else _case_in_child(*case, allocator_mode)
    for r in got:
      print(json.dumps(r), file=sys.stderr, flush=True)
    rows += got
    header["load_end"] = benchmarking.load_average()
    if json_path:
      pathlib.Path(json_path).write_text(json.dumps([{**r, "run": header} for r in rows], indent=1))
  return header, rows


def _torch():
  """The torch module, or None where it is not installed."""
  if importlib.util.find_spec("torch") is None:
    return None
  import torch  # pylint: disable=g-import-not-at-top
  return torch


def _case_here(name: str, official_dir: pathlib.Path, fixtures: pathlib.Path, reps: int, chunk: int,
               threads: int) -> list[dict]:
  """`run_case` in this process (its allocator as the caller set it), torch's threads set; an exception becomes a
  row with its error."""
  try:
    torch = _torch()
    if torch is not None:  # without it every case is skipped or fails with its reason
      torch.set_num_threads(threads)
    rows = run_case(name, CASES[name], official_dir, fixtures, reps, chunk)
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    rows = [{"case": name, "label": CASES[name].label, "error": f"{type(e).__name__}: {e}".splitlines()[0]}]
  return [{**r, "pid": os.getpid()} for r in rows]


def _case_in_child(name: str, *args) -> list[dict]:
  """`_case_here` in a new interpreter (spawned, so nothing of this process's heap or threads carries over); the
  last of `args` is the allocator mode the child sets first (`_child_main`)."""
  context = multiprocessing.get_context("spawn")
  receive, send = context.Pipe(duplex=False)
  child = context.Process(target=_child_main, args=(send, name, *args), name=f"benchmark_official {name}")
  child.start()
  send.close()  # the child holds the only sending end: its exit ends `recv` with EOFError
  try:
    rows = receive.recv()
  except EOFError:
    rows = None
  child.join()
  if rows is None:
    return [{"case": name, "label": CASES[name].label,
             "error": f"the case's process ended (exit status {child.exitcode}) before returning its rows"}]
  return rows


def _child_main(send, name: str, official_dir: pathlib.Path, fixtures: pathlib.Path, reps: int, chunk: int,
                threads: int, allocator_mode: str) -> None:
  """The entry point of a case's process: the allocator and the compilation cache as the parent's, then the case."""
  if allocator_mode == "reuse_freed_memory":
    allocator.reuse_freed_memory()  # before either side allocates, as the parent's flag did for it
  from experiments import configs  # pylint: disable=g-import-not-at-top
  configs.compilation_cache()  # the same folder as the parent's (read from the same environment)
  send.send(_case_here(name, official_dir, fixtures, reps, chunk, threads))
  send.close()


def markdown(header: dict, rows: list[dict]) -> str:
  """The run as Markdown: a line of context, then one table row per case."""
  lines = [f"{header['date']}, {header['machine']}; torch {header['torch']} ({header['torch_threads']} threads), "
           f"jax {header['jax']} ({header['jax_device']}); load average (1/5/15 min) {header['load_start']} at "
           f"start, {header.get('load_end', '?')} at end; allocator: {header.get('allocator', '?')}; processes: "
           f"{header.get('processes', '?')}. Command: "
           f"`{header['command']}`", "",
           "| case | official | inrsr | inrsr speed / official | max abs diff | first call official | "
           "first call inrsr |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    if "skipped" in r or "error" in r:
      lines.append(f"| {r['label']} | {'skipped: ' + r['skipped'] if 'skipped' in r else 'error: ' + r['error']} "
                   "| | | | | |")
      continue
    bar = "" if r["within_bar"] else f" (over the {BAR:g} bar)"
    lines.append(f"| {r['label']} | {_fmt(r['official'], r['unit'])} | {_fmt(r['inrsr'], r['unit'])} | "
                 f"{r['ratio']:.2f} | {r['max_abs_diff']:.2g}{bar} | {r['official_first_s']:.1f} s | "
                 f"{r['inrsr_first_s']:.1f} s |")
  return "\n".join(lines)
