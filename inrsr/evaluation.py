"""Evaluation of a trained run: PSNR/SSIM per protocol and scale, next to bicubic; JSON, Markdown and a plot.

Protocol sets (DESIGN.md, Training protocols): `fit` evaluates the frames a `fit` run trained on, `internal`
evaluates the real HR frames of a run trained only on their LR, `heldout` evaluates frames the run never saw
(config `eval.heldout`). Each is reported under its own name. Metrics are named by `inrsr.metrics` protocol.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from inrsr import inference, metrics, resize
from inrsr.data import images
from inrsr.models import srinr
from inrsr import training

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "psnr_vs_scale.png"


def restore_model(workdir) -> tuple[srinr.SRINR, dict, ml_collections.ConfigDict, int]:
  """The model, its latest parameters, the run's config and the checkpoint step."""
  config = training.load_config(workdir)
  model = srinr.from_config(config.model)
  tx = training.make_optimizer(config, 1)  # Only the structure of the optimizer state matters here.
  dummy = {"lr": np.zeros((1, 16, 16, 3), np.float32), "coords": np.zeros((1, 4, 3), np.float32),
           "lr_size": np.full((1, 2), 16, np.int32)}
  abstract = jax.eval_shape(lambda: training.init_state(model, tx, dummy, 0))
  manager = training.checkpoint_manager(workdir)
  state, step = training.restore_latest(manager, abstract)
  manager.close()
  if state is None:
    raise ValueError(f"{workdir}: no checkpoint to evaluate (train first)")
  return model, state["params"], config, step


def evaluation_sets(config: ml_collections.ConfigDict) -> dict[str, list[tuple[str, np.ndarray]]]:
  """Named protocol -> list of (name, HR image) the run can be evaluated on."""
  d = config.data
  train_items = images.load_images(d.source, names=tuple(d.names), root=d.root, limit=d.limit,
                                   center_crop_size=d.center_crop, hr_size=d.hr_size, setting="data")
  sets = {d.protocol: train_items}
  h = config.eval.heldout
  if h.source:
    sets["heldout"] = images.load_images(h.source, names=tuple(h.names), root=h.root, limit=h.limit,
                                         center_crop_size=h.center_crop, hr_size=h.hr_size,
                                         setting="eval.heldout")
  return sets


def evaluate_images(model, params, items, scales, metric_names, *, chunk: int = 65536,
                    progress: bool = False) -> dict:
  """PSNR/SSIM of the model and of bicubic on `items` at each scale and metric protocol.

  Returns:
    {str(scale): {metric: {"model": {"psnr", "ssim"}, "bicubic": {...}, "per_image": {name: {...}}}}}
  """
  out = {}
  for scale in scales:
    per_scale = {m: {"per_image": {}} for m in metric_names}
    for name, hr in items:
      lr, hr_c = resize.downsample(hr, scale)
      pred = inference.upscale(model, params, lr, hr_c.shape[0], hr_c.shape[1], chunk=chunk, progress=progress)
      bic = np.clip(resize.resize(lr, hr_c.shape[0], hr_c.shape[1]), 0, 1)
      for m in metric_names:
        kw = metrics.protocol_kwargs(m, scale)
        per_scale[m]["per_image"][name] = {
            "model": {"psnr": metrics.psnr(pred, hr_c, **kw), "ssim": metrics.ssim(pred, hr_c, **kw)},
            "bicubic": {"psnr": metrics.psnr(bic, hr_c, **kw), "ssim": metrics.ssim(bic, hr_c, **kw)}}
    for m in metric_names:
      rows = per_scale[m]["per_image"].values()
      for method in ("model", "bicubic"):
        per_scale[m][method] = {k: float(np.mean([r[method][k] for r in rows])) for k in ("psnr", "ssim")}
    out[f"{scale:g}"] = per_scale
    logging.info("x%g: %s", scale, {m: per_scale[m]["model"] for m in metric_names})
  return out


def markdown_table(results: dict) -> str:
  """A Markdown table: one row per protocol, metric and method; PSNR / SSIM per scale."""
  lines = []
  for protocol, by_scale in results["protocols"].items():
    scales = list(by_scale)
    metric_names = list(next(iter(by_scale.values())))
    lines.append(f"### protocol `{protocol}` ({results['num_images'][protocol]} images, step {results['step']})\n")
    lines.append("| metric | method | " + " | ".join(f"x{s}" for s in scales) + " |")
    lines.append("|---|---|" + "---|" * len(scales))
    for m in metric_names:
      for method in ("model", "bicubic"):
        cells = [f"{by_scale[s][m][method]['psnr']:.2f} / {by_scale[s][m][method]['ssim']:.4f}" for s in scales]
        lines.append(f"| {m} | {'SR-INR' if method == 'model' else 'bicubic'} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines) + "\nCells: PSNR (dB) / SSIM.\n"


def plot_psnr(results: dict, path) -> None:
  """PSNR against scale for each protocol, with bicubic dashed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 4))
  for protocol, by_scale in results["protocols"].items():
    scales = sorted(by_scale, key=float)
    m = list(next(iter(by_scale.values())))[0]
    for method, style in (("model", "-o"), ("bicubic", "--s")):
      label = f"{'SR-INR' if method == 'model' else 'bicubic'} ({protocol}, {m})"
      ax.plot([float(s) for s in scales], [by_scale[s][m][method]["psnr"] for s in scales], style, label=label)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("scale")
  ax.set_ylabel("PSNR (dB)")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def evaluate_run(workdir, *, scales=None, progress: bool = True) -> dict:
  """Evaluate the latest checkpoint of a run; writes results.json, results.md and psnr_vs_scale.png.

  Args:
    workdir: the training run's folder.
    scales: scales to evaluate (default: the config's eval.scales).
    progress: progress bars.

  Returns:
    The results dict written to results.json.
  """
  workdir = pathlib.Path(workdir)
  model, params, config, step = restore_model(workdir)
  scales = tuple(float(s) for s in (scales or config.eval.scales))
  sets = evaluation_sets(config)
  results = {"step": step, "scales": list(scales), "metrics": list(config.eval.metrics),
             "num_images": {p: len(v) for p, v in sets.items()}, "protocols": {}}
  for protocol, items in sets.items():
    logging.info("evaluating protocol %s on %d images", protocol, len(items))
    results["protocols"][protocol] = evaluate_images(model, params, items, scales, tuple(config.eval.metrics),
                                                     chunk=config.eval.chunk, progress=progress)
  (workdir / RESULTS_JSON).write_text(json.dumps(results, indent=1))
  (workdir / RESULTS_MD).write_text(markdown_table(results))
  plot_psnr(results, workdir / RESULTS_PNG)
  return results
