"""The `zero_shot` evaluator: a model fitted on each test image's LR alone, scored against the HR it never sees.

Evaluation protocol `internal` (DESIGN.md): per image and scale, the LR (the HR mod-cropped, downscaled by
antialiased bicubic and rounded to 8 bits) is the only input; `inrsr.infer.zero_shot.upscale` fits the model on it and
upscales it to the HR's size, and the output is scored next to bicubic by one metric rule. The results
(`schema`, kind `zero_shot`) are {"kind", "model", "metric", "budget", "sets": {set: `evaluate` result}}.
"""

from __future__ import annotations

import json
import pathlib
import time

import imageio.v3 as iio
import ml_collections
import numpy as np

from inrsr import models, resize
from inrsr.data import images, sources
from inrsr.evaluators import frames, schema
from inrsr.infer import upscaling, zero_shot
from inrsr.train import checkpoints

KIND = "zero_shot"


def evaluate(config: ml_collections.ConfigDict, items, scales, workdir, *, budget: str = "",
             metric: str = "benchmark", progress: bool = False) -> dict:
  """Zero-shot upscaling scored against HR images it never sees (evaluation protocol `internal`).

  For each HR image and scale: the LR is the HR mod-cropped and downscaled by antialiased bicubic and rounded
  to 8 bits, written as a PNG; `inrsr.infer.zero_shot.upscale` fits the model on that file alone and upscales it to the
  HR's size; the output PNG is scored against the HR next to bicubic. Each fit is kept in `workdir/fits/NAME_xS`.

  Args:
    config: the zero-shot config.
    items: (name, HR image) pairs.
    scales: SR scales.
    workdir: output folder (LR inputs, outputs, fits).
    budget: the fitting budget of each image (`inrsr.infer.zero_shot.parse_budget` text).
    metric: a metric rule of `inrsr.metrics`.
    progress: progress bars.

  Returns:
    {str(scale): {"per_image": {name: {"model", "bicubic", "seconds", "steps"}}, "model": mean PSNR/SSIM,
     "bicubic": mean}}.
  """
  root = pathlib.Path(workdir)
  out = {}
  for s in scales:
    per_image = {}
    for name, hr in items:
      stem = f"{pathlib.Path(name).stem}_x{s:g}"
      lr, hr_c = resize.downsample(hr, s, modcrop=True)
      lr8 = upscaling.to_uint8(lr)
      (root / "lr").mkdir(parents=True, exist_ok=True)
      lr_path, out_path = root / "lr" / f"{stem}.png", root / "sr" / f"{stem}.png"
      out_path.parent.mkdir(parents=True, exist_ok=True)
      iio.imwrite(lr_path, lr8)
      tic = time.perf_counter()
      zero_shot.upscale(config, lr_path, out_path, size=f"{hr_c.shape[1]}x{hr_c.shape[0]}", budget=budget,
                        workdir=root / "fits" / stem, progress=progress)
      seconds = time.perf_counter() - tic
      steps = checkpoints.latest_step(root / "fits" / stem)
      pred = images.load_image(out_path)
      bic = np.clip(resize.resize(lr8.astype(np.float32) / 255.0, hr_c.shape[0], hr_c.shape[1]), 0, 1)
      per_image[name] = {**frames.score_against_bicubic(pred, bic, hr_c, metric, s), "seconds": seconds,
                         "steps": steps}
    cell = {"per_image": per_image}
    for m in ("model", "bicubic"):
      cell[m] = {k: float(np.mean([r[m][k] for r in per_image.values()])) for k in ("psnr", "ssim")}
    out[f"{s:g}"] = cell
  return out


def results(sets: dict, *, metric: str, budget: str, model: str = models.DEFAULT_NAME) -> dict:
  """The results dict of zero-shot evaluations: {set: `evaluate` result} with the model, metric rule and budget."""
  return {"kind": KIND, "model": model, "metric": metric, "budget": budget, "sets": sets}


def evaluate_sets(config: ml_collections.ConfigDict, set_names, scales, workdir, *, budget: str = "",
                  metric: str = "benchmark", limit: int = 0, progress: bool = False) -> dict:
  """`evaluate` on benchmark image folders; results.json and results.md in `workdir`, rewritten after each set.

  Args:
    config: the zero-shot config (`liif_zeroshot`, `srinr_zeroshot`).
    set_names: image folders under $INRSR_DATA_DIR (e.g. "Set5").
    scales: SR scales.
    workdir: output folder: results.json, results.md and, per set, `evaluate`'s files under WORKDIR/<set>.
    budget: the fitting budget of each image.
    metric: a metric rule of `inrsr.metrics`.
    limit: the first N images of each set (0: all).
    progress: progress bars.

  Returns:
    The results dict (`results`).
  """
  root = pathlib.Path(workdir)
  by_set = {}
  kept = results(by_set, metric=metric, budget=budget, model=models.model_name(config.model))
  for name in set_names:
    items = sources.load_images("folder", root=f"$INRSR_DATA_DIR/{name}", limit=limit, setting=name)
    by_set[name] = evaluate(config, items, scales, root / name, budget=budget, metric=metric, progress=progress)
    root.mkdir(parents=True, exist_ok=True)
    (root / schema.RESULTS_JSON).write_text(json.dumps(kept, indent=2))
    (root / schema.RESULTS_MD).write_text(markdown_table(kept))
  return kept


def markdown_table(results: dict) -> str:
  """Per-image PSNR / SSIM of zero-shot upscaling and bicubic, with the gain, seconds and steps, per set and scale."""
  lines = [f"Zero-shot upscaling (protocol `internal`), `{results['metric']}` PSNR (dB) / SSIM, seconds per image",
           "", "| set | image | scale | zero-shot | bicubic | gain (dB) | seconds | steps |",
           "|---|---|---|---|---|---|---|---|"]
  for set_name, by_scale in results["sets"].items():
    for s, cell in by_scale.items():
      rows = list(cell["per_image"].items()) + [("**mean**", cell)]
      for name, r in rows:
        seconds = f"{r['seconds']:.0f}" if "seconds" in r else ""
        lines.append(f"| {set_name} | {name} | x{s} | {r['model']['psnr']:.2f} / {r['model']['ssim']:.4f} | "
                     f"{r['bicubic']['psnr']:.2f} / {r['bicubic']['ssim']:.4f} | "
                     f"{r['model']['psnr'] - r['bicubic']['psnr']:+.2f} | {seconds} | {r.get('steps', '')} |")
  return "\n".join(lines) + "\n"


def figures(results: dict, workdir) -> None:
  """No figure: `experiments.compare` draws zero-shot results next to trained runs."""
  del results, workdir


def compare_cells(results: dict, protocol: str, metric: str, source="") -> tuple[str, dict]:
  """Zero-shot results' row of `inrsr.evaluators.compare`: looked up by the set after the protocol's colon.

  Args:
    results: a zero_shot results dict.
    protocol: e.g. "heldout:Set14" (the set "Set14").
    metric: the metric rule; the file's must be it (one per file).
    source: where the results came from, for errors.

  Returns:
    ("SR-INR zero-shot (300 steps per image)", {scale: cell}).
  """
  set_name = protocol.split(":")[-1]
  if set_name not in results["sets"]:
    raise ValueError(f"{source}: no set {set_name!r} in the zero-shot results (has {list(results['sets'])})")
  if results["metric"] != metric:
    raise ValueError(f"{source}: zero-shot results scored with metric {results['metric']!r}, not {metric!r}")
  budget = str(results["budget"])
  budget = budget if budget.endswith("s") else f"{budget} steps"  # zero_shot.parse_budget: "240s" or "800"
  return f"{models.label(results['model'])} zero-shot ({budget} per image)", results["sets"][set_name]
