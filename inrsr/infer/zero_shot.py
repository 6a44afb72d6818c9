"""Zero-shot upscaling: a model fitted on the input itself (no dataset, no HR), then applied to it.

The one way inrsr serves a user who has one photograph or one clip and nothing else. The input plays the HR of
the training pairs, and each pair's scale is drawn around the requested s: s' ~ U(s / spread, s * spread), at
least 1. `training.train` fits on these pairs with the input as its only data, so checkpoints, exact resume,
the time budget and the progress bar are the training loop's own. With respect to the unknown HR this is
protocol `internal` (DESIGN.md): no HR pixel is ever seen. The config's `data.protocol` picks the pairs:
  * `fit` (SR-INR / VR-INR, `srinr_zeroshot`): the whole input downscaled by s' (antialiased bicubic), random
    pixels as queries; a clip is fitted over its frames.
  * `patches` (LIIF, `liif_zeroshot`, images only): ZSSR's internal learning. Random crops of the input are
    downscaled by s', with flips and transposes, and the LR crop side is lowered so that its HR at the largest
    s' still fits in the input. `zero_shot.self_ensemble` averages the output over the input's 8 flips and
    transposes.
Then the fitted model upscales the input by s.

A run kept in a workdir records its input (`data.root`); the same command again resumes it (or, when it is
finished, only upscales), and a workdir that holds another input's fit or a trained run is refused. Zero-shot
upscaling scored on benchmark images is the `zero_shot` evaluator (`inrsr.evaluators.zero_shot`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pathlib
import re
import tempfile

import imageio.v3 as iio
import ml_collections
import numpy as np

from inrsr.data import fitting, images, protocols, video
from inrsr.infer import upscaling
from inrsr.train import checkpoints, training


def parse_budget(budget: str) -> tuple[int, float]:
  """A fitting budget: "800" (steps) or "90s" (seconds of training).

  Args:
    budget: the text of `--budget`.

  Returns:
    (steps, seconds): one of them > 0, the other 0.

  Raises:
    ValueError: not a positive whole number of steps or a positive number of seconds followed by "s".
  """
  text = str(budget).strip().lower()
  match = re.fullmatch(r"(\d+)|(\d+(?:\.\d*)?|\.\d+)\s*s", text)
  value = float(match.group(1) or match.group(2)) if match else 0.0
  if not match or not math.isfinite(value) or value <= 0:
    raise ValueError(f"--budget={budget!r} must be a number of steps (e.g. 800) or of seconds (e.g. 90s), > 0")
  return (int(value), 0.0) if match.group(1) else (0, value)


def input_kind(input_path, clip: bool) -> str:
  """The data source of a zero-shot input: "file" (an image), "frames" or "video" (a clip); or an error naming it."""
  src = pathlib.Path(input_path)
  if not src.exists():
    raise ValueError(f"--input={src} does not exist")
  if src.is_file() and src.suffix.lower() in video.VIDEO_EXTENSIONS:
    return "video"
  if src.is_dir():
    if not clip:
      raise ValueError(f"--input={src} is a folder: zero-shot fitting takes one image, or one clip (a video file, "
                       "or a frame folder with --clip); for a folder of images give --workdir of a trained run")
    return "frames"
  if clip:
    raise ValueError(f"--input={src}: --clip needs a frame folder or a video file, not an image")
  return "file"


def prepare_config(config: ml_collections.ConfigDict, input_path, scale: float, *, clip: bool = False,
                   budget: str = "", input_shape=None) -> ml_collections.ConfigDict:
  """The zero-shot training config for an input: `config` (`srinr_zeroshot`, `liif_zeroshot`) with the input in.

  Args:
    config: a zero-shot config (a `zero_shot` section with scale_spread, min_lr_side, max_steps).
    input_path: an image file, a video file, or (with `clip`) a frame folder.
    scale: the requested SR scale (> 1).
    clip: the input is a clip (VR-INR: frame k of T at t = -1 + (2k + 1) / T).
    budget: `parse_budget` text; "" keeps the config's `train.steps`.
    input_shape: (H, W, ...) of the input (of its frames); read from the file when None.

  Returns:
    A new config: data.source/root set to the input, data.scale / scale_max the training scale range,
    train.steps / budget_s from the budget; a `patches` config also gets data.lr_size (and data.queries)
    lowered to what the input holds at the largest scale.

  Raises:
    ValueError: a scale <= 1 or not finite, an input too small for the scale range, a clip for a `patches`
      config, a bad budget.
  """
  if "zero_shot" not in config:
    raise ValueError("the zero-shot config needs a `zero_shot` section (see experiments/configs/srinr_zeroshot.py)")
  if not np.isfinite(scale) or scale <= 1.0:
    raise ValueError(f"{scale=} must be a finite number > 1 for zero-shot upscaling")
  kind = input_kind(input_path, clip)
  c = ml_collections.ConfigDict(config.to_dict())
  z = c.zero_shot
  lo, hi = max(1.0, scale / z.scale_spread), scale * z.scale_spread
  if input_shape is None:
    input_shape = _shape_of(input_path, kind)
  h, w = input_shape[:2]
  if min(h, w) / hi < z.min_lr_side:
    raise ValueError(f"--input={input_path}: {w}x{h} is too small to fit at x{hi:g} (the largest training scale, "
                     f"{scale:g} x zero_shot.scale_spread={z.scale_spread:g}): the input downscaled by it must keep "
                     f"zero_shot.min_lr_side={z.min_lr_side} pixels a side")
  if not protocols.get(c.data.protocol).WHOLE_FRAMES:  # a generalising model: LR/HR crops of the input
    if kind != "file":
      raise ValueError(f"--input={input_path}: a `patches` zero-shot config (e.g. liif_zeroshot) fits one image, "
                       "not a clip; use srinr_zeroshot for clips")
    # LR crops of at most lr_size whose HR (lr_size * hi) still fits in the input.
    lr_size = min(int(c.data.lr_size), int(min(h, w) // hi))
    c.data.update(source=kind, root=str(pathlib.Path(input_path).resolve()), scale=lo, scale_max=hi,
                  limit=0, lr_size=lr_size, queries=min(int(c.data.queries), lr_size ** 2))
  else:
    c.data.update(source=kind, root=str(pathlib.Path(input_path).resolve()), protocol=fitting.FIT, scale=lo,
                  scale_max=hi if hi > lo else 0.0, crop=0, limit=0, center_crop=0, hr_size=0,
                  image_time="index" if kind != "file" else "zero",
                  pixels_per_frame=min(int(c.data.pixels_per_frame), h * w))
  if budget:
    steps, seconds = parse_budget(budget)
    c.train.update(steps=steps or int(z.max_steps), budget_s=seconds)
  c.zero_shot.scale = float(scale)
  return c


def _shape_of(input_path, kind: str) -> tuple[int, ...]:
  if kind == "file":
    return upscaling.image_shape(input_path)
  frames, _ = (video.load_video_file(input_path, num_frames=1) if kind == "video"
               else video.load_frame_folder(input_path, num_frames=1, setting="--input"))
  return frames[0].shape


_INPUT_FIELDS = ("source", "root", "scale", "scale_max")


def holds_fit(workdir) -> bool:
  """Whether `workdir` holds a zero-shot fit (its config has a `zero_shot` section)."""
  path = pathlib.Path(workdir) / checkpoints.CONFIG_FILE
  return path.exists() and "zero_shot" in checkpoints.load_config(workdir)


def check_workdir(workdir, config: ml_collections.ConfigDict) -> None:
  """Refuse a workdir that holds a trained run, or the zero-shot fit of another input or scale range.

  Raises:
    ValueError: naming the workdir and what it holds.
  """
  if not (pathlib.Path(workdir) / checkpoints.CONFIG_FILE).exists():
    return
  stored = checkpoints.load_config(workdir)
  if "zero_shot" not in stored:
    raise ValueError(f"--workdir={workdir} holds a trained run, not a zero-shot fit: drop --zero_shot to upscale "
                     "with it, or give a new folder to keep the fit in")
  changed = [f"data.{k}: {stored.data.get(k)!r} -> {config.data.get(k)!r}" for k in _INPUT_FIELDS
             if stored.data.get(k) != config.data.get(k)]
  if changed:
    raise ValueError(f"--workdir={workdir} holds the zero-shot fit of another input or scale ({'; '.join(changed)}): "
                     "give a new folder, or the same input and scale to resume it")


def fit(config: ml_collections.ConfigDict, workdir, *, progress: bool = True) -> None:
  """Fit (or resume fitting) the zero-shot model of a `prepare_config` config in `workdir`."""
  check_workdir(workdir, config)
  training.train(config, workdir, progress=progress)


def upscale(config: ml_collections.ConfigDict, input_path, output_path, *, scale: float | None = None,
            size: str | None = None, clip: bool = False, budget: str = "", workdir=None, chunk: int = 65536,
            progress: bool = True, cell_scale: float | None = None) -> list[str]:
  """Fit the model on the input itself, then upscale the input with it (`upscaling.upscale_paths`).

  Args:
    config: the zero-shot config (`experiments/configs/srinr_zeroshot.py`).
    input_path: an image file, a video file, or (with `clip`) a frame folder.
    output_path: the output file (or, for a clip, a video file or a frame folder).
    scale: output = round(input size * scale); or
    size: 'WxH' output size (the fitted scale is then the larger of the two axes' ratios).
    clip: treat a folder as the frames of one clip.
    budget: `parse_budget` text ("" keeps the config's steps).
    workdir: keep the fitted run here (resumed if it holds this input's fit); None fits in a temporary folder.
    chunk: query points per inference call.
    progress: progress bars.
    cell_scale: generalising models' query cell factor (`inference.upscale`'s; None: the model's test-time rule).

  Returns:
    The paths written.
  """
  kind = input_kind(input_path, clip)
  shape = _shape_of(input_path, kind)
  out_h, out_w = upscaling.output_size(shape, scale, size)
  upscaling.check_output(upscaling.first_output(output_path, frames=kind != "file"), out_h, out_w)
  fit_scale = scale if scale is not None else max(out_h / shape[0], out_w / shape[1])
  c = prepare_config(config, input_path, fit_scale, clip=clip, budget=budget, input_shape=shape)
  with contextlib.ExitStack() as stack:
    if workdir is None:
      workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="inrsr_zero_shot_"))
    fit(c, workdir, progress=progress)
    return upscaling.upscale_paths(workdir, input_path, output_path, scale=scale, size=size, clip=clip,
                                   chunk=chunk, progress=progress, cell_scale=cell_scale,
                                   self_ensemble=bool(c.zero_shot.get("self_ensemble", False)))


def clip_restorer(config: ml_collections.ConfigDict, workdir, *, budget: str = "", progress: bool = False):
  """Zero-shot VR-INR as a whole-clip restorer for `inrsr.evaluators.blind.evaluate` (its `clip_methods`).

  Each clip's LR frames (already 8-bit) are written as PNGs to `workdir/NAME-DIGEST/lr` (DIGEST: 8 hex digits
  of the SHA-1 of the 8-bit frames, so another subset or degradation of the clip gets its own folder); `upscale`
  fits the model on them alone (`clip=True`: VR-INR over the clip's frames) and writes `.../sr`; the fit is kept
  in `.../fit`, so the same call on the same frames resumes or reuses it.

  Args:
    config: the zero-shot config (`srinr_zeroshot`).
    workdir: the folder that keeps inputs, outputs and fits.
    budget: `parse_budget` text per clip ("" keeps the config's steps).
    progress: progress bars.

  Returns:
    (name, lr (T, h, w, 3) in [0, 1], H, W) -> (T, H, W, 3) float32 restored frames.
  """
  def restore(name: str, lr: np.ndarray, height: int, width: int) -> np.ndarray:
    frames = [upscaling.to_uint8(frame) for frame in lr]
    digest = hashlib.sha1(np.stack(frames).tobytes() + str(np.shape(lr)).encode()).hexdigest()[:8]
    root = pathlib.Path(workdir) / f"{name}-{digest}"
    (root / "lr").mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
      iio.imwrite(root / "lr" / f"{k:08d}.png", frame)
    upscale(config, root / "lr", root / "sr", size=f"{width}x{height}", clip=True, budget=budget,
            workdir=root / "fit", progress=progress)
    return np.stack([images.load_image(upscaling.frame_path(root / "sr", k)) for k in range(len(lr))])
  return restore

