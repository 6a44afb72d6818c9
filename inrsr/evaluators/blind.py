"""The `blind` evaluator: clips degraded by BVSR-IK's test recipe, scored the way its code scores them.

The evaluator (`../shared/bvsr_ik.md` section 3, from the official `utils.py` and `main_KCA.py`):
  * HR frames are cropped to a multiple of the scale (4), then blurred and subsampled by a named recipe of
    `inrsr.data.degradations` (default `gaussian_test`: sigma 1.2, 9x9, every frame; LR rounded to uint8).
  * A whole-clip model (BVSR-IK) restores frame t from the window of `window` (5) LR frames centred on t and
    keeps the centre output; the first and last window // 2 frames of each clip have no full window and are not
    scored (the official `image_border`).
  * Frame models (LIIF, HIIF, CLIT, SR-INR: non-blind, trained on bicubic LR) and bicubic upsampling restore
    each scored frame from its own LR, at the same size. Two bicubics: the usual centre-aligned one (`bicubic`,
    what "bicubic" means in the field) and `grid_bicubic`, aligned to the `[::4]` grid the recipe sampled
    (not in the paper; a reference that shows what alignment alone is worth).
  * Outputs are clipped and rounded to uint8; PSNR and SSIM (MATLAB style, 11x11 Gaussian window) on Y of
    BT.601 YCbCr (16-235 scale, not rounded) after a `border` (4) pixel crop, averaged over every scored frame
    of every clip pooled (not a mean of per-clip means). The temporal column is inrsr's frame-difference RMSE
    (`video.temporal_error`) over consecutive scored frames, not the paper's tOF (OpenCV Farneback flow, which
    inrsr does not depend on).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from inrsr import metrics, models, resize
from inrsr.data import degradations, sources, video
from inrsr.infer import inference
from inrsr.train import checkpoints

KIND = "blind"
# The label of `grid_bicubic` in results.
GRID_BICUBIC = "bicubic on the [::4] grid"

# Defaults of a config's `eval.blind` section (`settings`).
DEFAULTS = dict(root="$INRSR_DATA_DIR/Vid4/GT", clips=("calendar", "city", "foliage", "walk"),
                recipe="gaussian_test", seed=0, frames=0, crop=0, window=5, border=4)


@dataclasses.dataclass(frozen=True)
class BlindClip:
  """One evaluation clip: name, HR frames (T, H, W, 3) float32 and their degraded LR (T, H/s, W/s, 3)."""

  name: str
  hr: np.ndarray
  lr: np.ndarray


def settings(config: ml_collections.ConfigDict, overrides: Mapping | None = None) -> ml_collections.ConfigDict:
  """A run config's `eval.blind` section with `DEFAULTS` for the fields it lacks (converted runs have none).

  Args:
    config: the run's config.
    overrides: fields that replace the run's (e.g. {"crop": 256, "frames": 20} from `experiments.evaluate`'s
      --blind_crop / --blind_frames, to score a subset of Vid4).

  Returns:
    The settings, checked.
  """
  blind = ml_collections.ConfigDict(DEFAULTS)
  for where, given in (("eval.blind", config.get("eval", {}).get("blind", None)), ("overrides", overrides)):
    if given is not None:
      unknown = sorted(set(given) - set(DEFAULTS))
      if unknown:
        raise ValueError(f"{where} has unknown fields {unknown} (known: {sorted(DEFAULTS)})")
      blind.update(dict(given))
  for field in ("frames", "crop"):
    if int(blind[field]) < 0:
      raise ValueError(f"eval.blind.{field}={blind[field]} must be >= 0 (0: all)")
  if blind.recipe not in degradations.RECIPES:
    raise ValueError(f"eval.blind.recipe={blind.recipe!r} must be one of {sorted(degradations.RECIPES)}")
  if blind.window < 1 or blind.window % 2 == 0:
    raise ValueError(f"eval.blind.window={blind.window} must be an odd number >= 1")
  return blind


def scored_frames(num_frames: int, window: int) -> range:
  """The frames scored in a clip of `num_frames`: those with a full window centred on them."""
  half = window // 2
  if num_frames < window:
    raise ValueError(f"a clip of {num_frames} frames has no full window of eval.blind.window={window} frames")
  return range(half, num_frames - half)


def degraded_clips(blind: ml_collections.ConfigDict, scale: int = 4) -> list[BlindClip]:
  """Load the clips `blind` names (frame folders `root/<clip>`) and degrade them.

  Args:
    blind: an `eval.blind` section (`settings`): root, clips, frames (first N, 0 = all), crop (central HR crop,
      0 = whole frames), recipe, seed.
    scale: the subsampling factor.

  Returns:
    One `BlindClip` per clip, HR cropped to a multiple of `scale`; the recipe's draws come from one generator
    seeded with `seed` per clip, so a clip degrades the same way whatever the other clips are.
  """
  recipe = degradations.RECIPES[blind.recipe]
  out = []
  for name in blind.clips:
    section = ml_collections.ConfigDict(dict(source="frames", root=f"{blind.root}/{name}", names=(),
                                             limit=blind.frames, start_frame=0, center_crop=blind.crop, hr_size=0))
    frames = np.stack([f for _, f in sources.load_section(section, "eval.blind")])
    h, w = (frames.shape[1] // scale) * scale, (frames.shape[2] // scale) * scale
    hr = np.ascontiguousarray(frames[:, :h, :w])
    seed = [blind.seed, *name.encode()]
    lr, _ = degradations.degrade_clip(hr, np.random.default_rng(seed), recipe)
    out.append(BlindClip(name, hr, lr))
  return out


def centre_outputs(restore_window: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, window: int) -> dict:
  """Frame t restored from the window of LR frames centred on t (its centre output), for every scored t.

  Args:
    restore_window: (window, h, w, 3) LR -> (window, H, W, 3) restored frames.
    lr: (T, h, w, 3) the clip's LR.
    window: odd window length.

  Returns:
    {t: (H, W, 3)} for t in `scored_frames`.
  """
  half = window // 2
  return {t: restore_window(lr[t - half:t + half + 1])[half] for t in scored_frames(len(lr), window)}


def frame_outputs(restore_frame: Callable[[np.ndarray, int, int], np.ndarray], lr: np.ndarray,
                  hr_shape: Sequence[int], window: int) -> dict:
  """Every scored frame restored from its own LR frame: {t: restore_frame(lr[t], H, W)}."""
  return {t: restore_frame(lr[t], hr_shape[0], hr_shape[1]) for t in scored_frames(len(lr), window)}


def bicubic(lr: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bicubic upsampling of one LR frame (Pillow's kernel, `inrsr.resize`)."""
  return resize.resize(lr, height, width)


def grid_bicubic(lr: np.ndarray, height: int, width: int, scale: int = 4) -> np.ndarray:
  """Bicubic upsampling of one LR frame aligned to the `[::scale]` grid it was sampled on.

  The blind recipes keep HR pixel scale * j as LR pixel j, while the usual (centre-aligned) bicubic puts it at
  scale * j + (scale - 1) / 2, 1.5 HR px off at x4; here HR pixel y reads LR position y / scale
  (`resize.grid_matrix`). A reference no learned model should fall below: on blurred Vid4 (central 256 x 256,
  first 20 frames) it scores 23.76 dB Y where the usual bicubic scores 21.76.
  """
  return resize.resize_on_grid(lr, height, width, 1.0 / scale)


def score(outputs: Mapping[int, np.ndarray], hr: np.ndarray, border: int) -> dict:
  """Per-frame Y PSNR / SSIM of uint8-rounded outputs against the HR, and the temporal error.

  Args:
    outputs: {t: (H, W, 3) float} restored frames.
    hr: (T, H, W, 3) HR frames.
    border: pixels cropped from each side before measuring.

  Returns:
    dict with frames (the scored t), psnr and ssim (per frame, in that order) and temporal.
  """
  ts = sorted(outputs)
  preds = [np.round(np.clip(outputs[t], 0.0, 1.0) * 255.0) / 255.0 for t in ts]
  gts = [np.round(np.clip(hr[t], 0.0, 1.0) * 255.0) / 255.0 for t in ts]
  return {"frames": ts,
          "psnr": [metrics.psnr(p, g, shave=border, y_channel=True) for p, g in zip(preds, gts)],
          "ssim": [metrics.ssim(p, g, shave=border, y_channel=True) for p, g in zip(preds, gts)],
          "temporal": video.temporal_error(preds, gts)}


def clip_model_method(model, params) -> Callable:
  """A whole-clip model (`inference.is_clip_model`) as a window restorer."""
  return lambda lrs: inference.upscale_clip(model, params, list(lrs))


def frame_model_method(model, params, chunk: int = 65536) -> Callable:
  """A frame model (any registered model with the query API) as a frame restorer at t = 0."""
  return lambda lr, h, w: inference.upscale(model, params, lr, h, w, chunk=chunk)


def evaluate(clips: Sequence[BlindClip], window_methods: Mapping[str, Callable],
             frame_methods: Mapping[str, Callable], *, clip_methods: Mapping[str, Callable] | None = None,
             window: int = 5, border: int = 4) -> dict:
  """Score every method on every clip.

  Args:
    clips: `degraded_clips`.
    window_methods: label -> window restorer (whole-clip models).
    frame_methods: label -> frame restorer ((lr, H, W) -> (H, W, 3)); bicubic is one.
    clip_methods: label -> whole-clip restorer ((name, lr (T, h, w, 3), H, W) -> (T, H, W, 3)) that sees every
      LR frame of the clip at once (zero-shot VR-INR, fitted on the clip's own LR); scored on the same frames.
    window: window length of the whole-clip models (it also sets the scored frames of every method).
    border: the crop before measuring.

  Returns:
    {"clips": {clip: {label: score}}, "pooled": {label: {"psnr", "ssim", "temporal", "frames"}}} where pooled
    PSNR/SSIM average every scored frame of every clip and temporal averages the clips.
  """
  per_clip = {}
  for clip in clips:
    per_clip[clip.name] = {}
    for label, fn in window_methods.items():
      logging.info("blind evaluation: %s on %s", label, clip.name)
      per_clip[clip.name][label] = score(centre_outputs(fn, clip.lr, window), clip.hr, border)
    for label, fn in (clip_methods or {}).items():
      logging.info("blind evaluation: %s on %s", label, clip.name)
      restored = fn(clip.name, clip.lr, *clip.hr.shape[1:3])
      if restored.shape != clip.hr.shape:
        raise ValueError(f"{label} restored {clip.name} as {restored.shape}, expected {clip.hr.shape}")
      per_clip[clip.name][label] = score({t: restored[t] for t in scored_frames(len(clip.lr), window)}, clip.hr,
                                         border)
    for label, fn in frame_methods.items():
      logging.info("blind evaluation: %s on %s", label, clip.name)
      per_clip[clip.name][label] = score(frame_outputs(fn, clip.lr, clip.hr.shape[1:3], window), clip.hr, border)
  labels = list(window_methods) + list(clip_methods or {}) + list(frame_methods)
  pooled = {}
  for label in labels:
    cells = [per_clip[c.name][label] for c in clips]
    pooled[label] = {"psnr": float(np.mean([v for c in cells for v in c["psnr"]])),
                     "ssim": float(np.mean([v for c in cells for v in c["ssim"]])),
                     "temporal": float(np.mean([c["temporal"] for c in cells])),
                     "frames": sum(len(c["frames"]) for c in cells)}
  return {"clips": per_clip, "pooled": pooled}


def markdown_table(results: dict) -> str:
  """Rows: methods; columns: each clip's Y PSNR / SSIM, then all frames pooled and the temporal error."""
  clips = list(results["clips"])
  lines = ["| method | " + " | ".join(clips) + " | all frames (PSNR / SSIM) | temporal RMSE |",
           "|---|" + "---|" * (len(clips) + 2)]
  for label, pooled in results["pooled"].items():
    cells = []
    for c in clips:
      s = results["clips"][c][label]
      cells.append(f"{np.mean(s['psnr']):.2f} / {np.mean(s['ssim']):.4f}")
    lines.append(f"| {label} | " + " | ".join(cells) + f" | {pooled['psnr']:.2f} / {pooled['ssim']:.4f} | "
                 f"{pooled['temporal']:.4f} |")
  return "\n".join(lines) + "\n"


def figures(results: dict, workdir) -> None:
  """No figure: a blind evaluation writes results.json and results.md only."""
  del results, workdir


def compare_cells(results: dict, protocol: str, metric: str, source="") -> tuple[str, dict]:
  """Blind results are per clip and method, not per scale: `inrsr.evaluators.compare` refuses them."""
  del results, protocol, metric
  raise ValueError(f"{source}: blind results (clips degraded by a recipe, one scale) have no per-scale rows; "
                   "compare takes frames and zero_shot results")


def _frame_methods(compare: Sequence, chunk: int, scale: int) -> tuple[dict, dict]:
  """Frame restorers of the `compare` runs, then bicubic and grid bicubic; and each compared run's folder and step."""
  frame_methods, compared = {}, {}
  for other in compare:
    other_model, other_params, other_config, other_step = checkpoints.restore_model(other)
    if inference.is_clip_model(other_model):
      raise ValueError(f"--compare={other}: a whole-clip model; compare frame models (LIIF, HIIF, CLIT, SR-INR)")
    label = f"{other_config.model.get('name', 'srinr')} ({pathlib.Path(other).resolve().name}, step {other_step})"
    frame_methods[label] = frame_model_method(other_model, other_params, chunk)
    compared[label] = {"workdir": str(other), "step": other_step}
  frame_methods["bicubic"] = bicubic
  frame_methods[GRID_BICUBIC] = functools.partial(grid_bicubic, scale=scale)
  return frame_methods, compared


def evaluate_run(workdir, model, params, config: ml_collections.ConfigDict, step: int, *, compare: Sequence = (),
                 clip_methods: Mapping[str, Callable] | None = None, blind_overrides: Mapping | None = None,
                 scales=None, progress: bool = True, cell_scale: float | None = None,
                 save_predictions: bool = False) -> dict:
  """The blind evaluation of a whole-clip model's run, next to bicubic and other runs' frame models.

  Args:
    workdir: the run's folder (results are written by the caller, `inrsr.evaluators.write`).
    model: the run's whole-clip model (BVSR-IK), with its parameters `params`.
    params: its parameters.
    config: the run's config (its `eval.blind` section, `settings`).
    step: the checkpoint step.
    compare: folders of other runs (non-blind frame models) evaluated on the same degraded frames.
    clip_methods: more whole-clip restorers scored on the same frames (`evaluate`), e.g.
      `inrsr.infer.zero_shot.clip_restorer`.
    blind_overrides: `eval.blind` fields that replace the run's (`settings`).
    scales: refused: a whole-clip model upscales only at its own scale.
    progress, cell_scale, save_predictions: the frames evaluator's options; not used here.

  Returns:
    The results dict (`evaluate`'s, plus kind, model, step, the settings and each compared run's folder and step).
  """
  del workdir, progress, cell_scale, save_predictions
  if scales:
    raise ValueError(f"--scales={list(scales)}: a whole-clip model upscales only at its scale x{model.scale}")
  blind = settings(config, blind_overrides)
  scale = int(models.hook(model, "scale") or 4)
  clips = degraded_clips(blind, scale)
  name = config.model.get("name", "model")
  frame_methods, compared = _frame_methods(compare, config.eval.get("chunk", 65536), scale)
  results = evaluate(clips, {f"{name} (step {step})": clip_model_method(model, params)}, frame_methods,
                     clip_methods=clip_methods, window=blind.window, border=blind.border)
  results.update(model=name, step=step, protocol="blind", blind=blind.to_dict(), compared=compared, kind=KIND)
  return results
