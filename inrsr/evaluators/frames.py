"""The `frames` evaluator: a run's images or frames scored per evaluation protocol, scale and metric, next to bicubic.

Evaluation protocols (DESIGN.md, Training protocols): `fit` evaluates the frames a `fit` run trained on,
`internal` evaluates the real HR frames of a run trained only on their LR, `heldout` evaluates frames the run never
saw (config `eval.heldout`). Each is reported under its own name. Metric rules are `inrsr.metrics`' (div2k,
benchmark, full: `config.eval.metrics`).

The LR of a fitting model (SR-INR / VR-INR) is made as its training made it: without the mod-crop
(`data.modcrop` False, the whole frame downsampled, so a pixel keeps its coordinate at every scale) or with it
(runs whose config predates the field); generalising models keep the literature's mod-crop. Generalising models
decode with their test-time query cell (`inrsr.infer.inference`'s default, HIIF's official clipping), as `upscale`
does, unless `cell_scale` says otherwise; results.json records which (`cell_rule`).
"""

from __future__ import annotations

import pathlib

import imageio.v3 as iio
import ml_collections
import numpy as np
from absl import logging

from inrsr import metrics, models, resize
from inrsr.data import protocols, sources, video
from inrsr.evaluators import plots, schema
from inrsr.infer import inference, upscaling
from inrsr.train import checkpoints

KIND = "frames"

HELDOUT_TIMES = ("zero", "trained")


def heldout_time(config: ml_collections.ConfigDict, num_train: int) -> float:
  """The t at which frames the run never trained on are queried (`eval.heldout_time`).

  "zero" (the default): t = 0, which under `data.image_time="index"` with an even number of training frames is
  a time no training sample touched. "trained": the training t nearest 0 (the first of two equally near), a t
  whose rows of the table were trained.

  Args:
    config: the run's config.
    num_train: K, the number of training frames.

  Returns:
    t.
  """
  mode = config.eval.get("heldout_time", "zero")
  if mode not in HELDOUT_TIMES:
    raise ValueError(f"eval.heldout_time={mode!r} must be one of {HELDOUT_TIMES}")
  if mode == "zero" or num_train == 0:
    return 0.0
  times = np.asarray(sources.image_times(config, num_train))
  return float(times[np.argmin(np.abs(times))])


def evaluation_sets(config: ml_collections.ConfigDict) -> dict[str, list[tuple[str, np.ndarray, float]]]:
  """Evaluation protocol -> list of (name, HR image, t) the run can be evaluated on.

  The frames of a `fit` or `internal` run keep the time coordinate they were trained at
  (`sources.image_times`); a `patches` run (the generalising models) has no such set. `heldout` images
  (`eval.heldout`) are at `heldout_time` (t = 0 by default); each named set of `eval.heldout_sets`
  ({name: section}) is reported as `heldout:<name>`.
  """
  sets = {}
  num_train = 0
  if protocols.get(config.data.protocol).WHOLE_FRAMES:  # fit / internal: their own frames are scored
    train_items = sources.load_section(config.data, "data")
    num_train = len(train_items)
    times = sources.image_times(config, len(train_items))
    sets[config.data.protocol] = [(n, im, t) for (n, im), t in zip(train_items, times)]
  t_new = heldout_time(config, num_train)
  if config.eval.heldout.source:
    sets["heldout"] = [(n, im, t_new) for n, im in sources.load_section(config.eval.heldout, "eval.heldout")]
  for name, section in (config.eval.get("heldout_sets") or {}).items():
    sets[f"heldout:{name}"] = [(n, im, t_new) for n, im in
                               sources.load_section(section, f"eval.heldout_sets.{name}")]
  if not sets:
    raise ValueError("nothing to evaluate: set eval.heldout or eval.heldout_sets")
  return sets


def score_against_bicubic(pred, bic, hr, metric: str, scale: float) -> dict:
  """{"model": {"psnr", "ssim"}, "bicubic": {...}} of a prediction and the bicubic upsampling against the HR, by the
  metric rule `metric` (`inrsr.metrics.protocol_kwargs`)."""
  kw = metrics.protocol_kwargs(metric, scale)
  return {"model": {"psnr": metrics.psnr(pred, hr, **kw), "ssim": metrics.ssim(pred, hr, **kw)},
          "bicubic": {"psnr": metrics.psnr(bic, hr, **kw), "ssim": metrics.ssim(bic, hr, **kw)}}


def evaluate_images(model, params, items, scales, metric_names, *, noise=None, temporal: bool = False,
                    chunk: int = 65536, progress: bool = False, seed: int = 0, quantize_lr: bool = False,
                    modcrop: bool = True, cell_scale: float | None = None, save_to=None) -> dict:
  """PSNR/SSIM of the model and of bicubic on `items` ((name, HR, t) triples) at each scale and metric.

  Args:
    model, params: the trained model.
    items: (name, HR frame, t) triples (the frames of a clip in order when `temporal`).
    scales: SR scales.
    metric_names: metric rules (`inrsr.metrics`: div2k, benchmark, full).
    noise: optional (kind, level) added to every LR input (`video.add_noise`), seeded per frame.
    temporal: also report `video.temporal_error` over the items as one clip.
    chunk: query points per inference call.
    progress: progress bars.
    seed: noise seed.
    quantize_lr: round the LR to 8 bits, as benchmark LR files are (the LIIF family's protocol).
    modcrop: mod-crop the HR to the scale before downsampling (the literature's protocol); False downsamples
      the whole frame (`resize.downsample`), the degradation SR-INR runs train with.
    cell_scale: generalising models' query cell factor, as `inference.upscale`'s: None, the model's test-time
      rule (HIIF's official clipping), as `upscale` applies it; a number, exactly that factor.
    save_to: optional folder: each scored prediction, rounded to 8 bits, is written to
      `save_to/x<scale>/<stem>.png` and the LR the model was given to `save_to/x<scale>/lr/<stem>.png` (exactly
      that LR when it is 8-bit, `quantize_lr` without noise), so `upscale` can be run on the same input (`<stem>`:
      the item's name without its suffix, or the whole name where two items share a stem).

  Returns:
    {str(scale): {metric: {"model": {"psnr", "ssim"}, "bicubic": {...}, "per_image": {name: {...}}},
                  ["temporal": {"model": rmse, "bicubic": rmse}]}}
  """
  out = {}
  file_names = _file_names(items) if save_to is not None else None
  for scale in scales:
    per_scale = {m: {"per_image": {}} for m in metric_names}
    preds, bics, gts = [], [], []
    for i, (name, hr, t) in enumerate(items):
      lr, hr_c = resize.downsample(hr, scale, modcrop=modcrop)
      if quantize_lr:
        lr = np.round(lr * 255.0) / 255.0
      if noise:
        lr = video.add_noise(lr, noise[0], noise[1], np.random.default_rng([seed, i]))
      pred = inference.upscale(model, params, lr, hr_c.shape[0], hr_c.shape[1], t=t, chunk=chunk,
                               progress=progress, cell_scale=cell_scale)
      if save_to is not None:
        _save_prediction(pathlib.Path(save_to) / f"x{scale:g}", file_names[i], pred, lr)
      bic = np.clip(resize.resize(lr, hr_c.shape[0], hr_c.shape[1]), 0, 1)
      for m in metric_names:
        per_scale[m]["per_image"][name] = score_against_bicubic(pred, bic, hr_c, m, scale)
      if temporal:
        preds.append(pred)
        bics.append(bic)
        gts.append(hr_c)
    for m in metric_names:
      rows = per_scale[m]["per_image"].values()
      for method in ("model", "bicubic"):
        per_scale[m][method] = {k: float(np.mean([r[method][k] for r in rows])) for k in ("psnr", "ssim")}
    if temporal:
      per_scale["temporal"] = {"model": video.temporal_error(preds, gts), "bicubic": video.temporal_error(bics, gts)}
    out[f"{scale:g}"] = per_scale
    logging.info("x%g%s: %s", scale, f" {noise}" if noise else "",
                 {m: per_scale[m]["model"] for m in metric_names})
  return out


def _file_names(items) -> list[str]:
  """A PNG name per item: its name's stem + .png, or the whole name + .png where two items share a stem."""
  stems = [pathlib.Path(str(name)).stem for name, _, _ in items]
  return [f"{stem if stems.count(stem) == 1 else name}.png" for stem, (name, _, _) in zip(stems, items)]


def _save_prediction(folder: pathlib.Path, file_name: str, pred: np.ndarray, lr: np.ndarray) -> None:
  """Write a scored prediction and its LR as 8-bit PNGs (`folder/<file_name>`, `folder/lr/<file_name>`)."""
  (folder / "lr").mkdir(parents=True, exist_ok=True)
  iio.imwrite(folder / file_name, upscaling.to_uint8(np.clip(pred, 0.0, 1.0)))
  iio.imwrite(folder / "lr" / file_name, upscaling.to_uint8(np.clip(lr, 0.0, 1.0)))


def cell_rule_name(cell_scale: float | None) -> str:
  """How results name a cell setting: "model" (the model's test-time rule), "none" (factor 1) or "x<factor>"."""
  if cell_scale is None:
    return "model"
  return "none" if cell_scale == 1.0 else f"x{cell_scale:g}"


def _metric_names(by_scale) -> list[str]:
  return [m for m in next(iter(by_scale.values())) if m != "temporal"]


def _method_name(method: str, model_name: str = models.DEFAULT_NAME) -> str:
  return models.label(model_name) if method == "model" else "bicubic"


def _score_rows(lines: list, by_scale: dict, scales: list, name) -> None:
  """Table rows "| metric | method | PSNR / SSIM per scale |" of one {scale: {metric: cell}} mapping."""
  for m in _metric_names(by_scale):
    for method in ("model", "bicubic"):
      cells = [f"{by_scale[s][m][method]['psnr']:.2f} / {by_scale[s][m][method]['ssim']:.4f}" for s in scales]
      lines.append(f"| {m} | {name(method)} | " + " | ".join(cells) + " |")


def markdown_table(results: dict) -> str:
  """Markdown tables: PSNR / SSIM per protocol, metric, method and scale (the shape of the papers' Table 1);
  temporal error for clips; zero-shot denoising cells (the shape of VR-INR's Tables 2 and 6)."""
  lines = []
  name = lambda method: _method_name(method, results.get("model", models.DEFAULT_NAME))
  for protocol, by_scale in results["protocols"].items():
    scales = list(by_scale)
    lines.append(f"### protocol `{protocol}` ({results['num_images'][protocol]} frames, step {results['step']})\n")
    lines.append("| metric | method | " + " | ".join(f"x{s}" for s in scales) + " |")
    lines.append("|---|---|" + "---|" * len(scales))
    _score_rows(lines, by_scale, scales, name)
    if "temporal" in by_scale[scales[0]]:
      for method in ("model", "bicubic"):
        cells = [f"{by_scale[s]['temporal'][method]:.4f}" for s in scales]
        lines.append(f"| temporal RMSE (lower is better) | {name(method)} | " + " | ".join(cells) + " |")
    lines.append("")
    noisy = results.get("noise", {}).get(protocol)
    if noisy:
      cols = [(n, s) for n, by in noisy.items() for s in by]
      lines.append(f"Zero-shot denoising, protocol `{protocol}` (noise added to the LR input only):\n")
      lines.append("| metric | method | " + " | ".join(f"{n} x{s}" for n, s in cols) + " |")
      lines.append("|---|---|" + "---|" * len(cols))
      for m in _metric_names(next(iter(noisy.values()))):
        for method in ("model", "bicubic"):
          cells = [f"{noisy[n][s][m][method]['psnr']:.2f} / {noisy[n][s][m][method]['ssim']:.4f}" for n, s in cols]
          lines.append(f"| {m} | {name(method)} | " + " | ".join(cells) + " |")
      lines.append("")
  rule = results.get("cell_rule", "model")
  if rule != "model":
    used = "2 / size, without the model's test-time rule" if rule == "none" else f"2 / size {rule}"
    lines.append(f"Query cells: {used}.")
  return "\n".join(lines) + "\nCells: PSNR (dB) / SSIM.\n"


def plot_psnr(results: dict, path) -> None:
  """PSNR against scale for each protocol, with bicubic dashed."""
  name = lambda method: _method_name(method, results.get("model", models.DEFAULT_NAME))
  fig, ax = plots.subplots()
  for i, (protocol, by_scale) in enumerate(results["protocols"].items()):
    scales = sorted(by_scale, key=float)
    m = _metric_names(by_scale)[0]
    for method, style in (("model", "-o"), ("bicubic", "--s")):
      label = f"{name(method)} ({protocol}, {m})"
      ax.plot([float(s) for s in scales], [by_scale[s][m][method]["psnr"] for s in scales], style, color=f"C{i}",
              label=label)
  plots.scale_axis(ax, sorted({float(s) for by_scale in results["protocols"].values() for s in by_scale}))
  plots.decorate(ax, "scale", "PSNR (dB)")
  plots.save(fig, path)


def figures(results: dict, workdir) -> None:
  """The figure written beside results.md: PSNR against scale (`schema.RESULTS_PNG`)."""
  plot_psnr(results, pathlib.Path(workdir) / schema.RESULTS_PNG)


def compare_cells(results: dict, protocol: str, metric: str, source="") -> tuple[str, dict]:
  """A run's row of `inrsr.evaluators.compare`: its label and {scale: cell} of one protocol and metric.

  Args:
    results: a frames results dict.
    protocol: the evaluation protocol, e.g. "heldout:Set14".
    metric: a metric rule of `inrsr.metrics`.
    source: where the results came from, for errors.

  Returns:
    ("LIIF (4000 steps)", {scale: {"model", "bicubic", ...}}); a cumulative schedule's label counts every stage
    ("CLIT (440 + 175 + 185 steps)", "? + 185" when the earlier stages' steps are unknown).
  """
  if protocol not in results["protocols"]:
    raise ValueError(f"{source}: no protocol {protocol!r} (has {list(results['protocols'])})")
  by_scale = results["protocols"][protocol]
  if any(metric not in cell for cell in by_scale.values()):
    raise ValueError(f"{source}: no metric {metric!r} at every scale of {protocol!r}")
  before = results.get("init_steps", ())  # a cumulative schedule's earlier stages; None: their steps unknown
  steps = [*(["?"] if before is None else before), results["step"]]
  label = f"{models.label(results.get('model', models.DEFAULT_NAME))} ({' + '.join(map(str, steps))} steps)"
  return label, {s: cell[metric] for s, cell in by_scale.items()}


def _noise_name(noise_kind: str, level: float) -> str:
  """How results name a noise setting: "gaussian sigma=30", "poisson", "poisson peak=10"."""
  if noise_kind == "gaussian":
    return f"{noise_kind} sigma={level:g}"
  return f"{noise_kind}" + (f" peak={level:g}" if level else "")


def evaluate_run(workdir, model, params, config: ml_collections.ConfigDict, step: int, *, scales=None,
                 progress: bool = True, cell_scale: float | None = None, save_predictions: bool = False,
                 compare=(), clip_methods=None, blind_overrides=None) -> dict:
  """Score a frame model's run on its evaluation sets (`evaluation_sets`) at each scale and metric rule.

  Args:
    workdir: the run's folder (results are written by the caller, `inrsr.evaluators.write`).
    model: the run's model, with its parameters `params`.
    params: its parameters.
    config: the run's config (`eval` section: scales, metrics, chunk, temporal, quantize_lr, noise, ...).
    step: the checkpoint step.
    scales: scales to evaluate (default: the config's eval.scales).
    progress: progress bars.
    cell_scale: generalising models' query cell factor: None, the model's test-time rule (HIIF's official
      clipping), which `upscale` applies too; 1.0, the plain cell 2 / size. Recorded as results["cell_rule"].
    save_predictions: also write each scored prediction (8 bits) and its LR under WORKDIR/predictions/
      <protocol>/x<scale>/ (`evaluate_images`' `save_to`; ':' in a protocol name becomes '_').
    compare, clip_methods, blind_overrides: the blind evaluator's options; refused here.

  Returns:
    The results dict (`schema`, kind `frames`).
  """
  workdir = pathlib.Path(workdir)
  if clip_methods or blind_overrides:
    raise ValueError(f"zero-shot clip methods and blind settings are for whole-clip model runs (BVSR-IK); {workdir} "
                     f"holds a {config.model.get('name', 'srinr')} model")
  if compare:
    raise ValueError(f"--compare is for whole-clip models (BVSR-IK); {workdir} holds a "
                     f"{config.model.get('name', 'srinr')} model")
  scales = tuple(float(s) for s in (scales or config.eval.scales))
  sets = evaluation_sets(config)
  e = config.eval
  modcrop = True if models.is_generalising(model) else bool(config.data.get("modcrop", True))
  results = {"kind": KIND, "model": models.results_key(config.model), "step": step, "scales": list(scales),
             "metrics": list(e.metrics), "num_images": {p: len(v) for p, v in sets.items()}, "protocols": {},
             "modcrop": modcrop, "cell_rule": cell_rule_name(cell_scale)}
  before = checkpoints.init_steps(workdir)
  if before != ():  # started from other runs (a cumulative schedule's stage): their steps, earliest first
    results["init_steps"] = None if before is None else list(before)  # None: those runs are gone
  options = dict(chunk=e.chunk, progress=progress, modcrop=modcrop, cell_scale=cell_scale)
  for protocol, items in sets.items():
    logging.info("evaluating protocol %s on %d frames", protocol, len(items))
    results["protocols"][protocol] = evaluate_images(
        model, params, items, scales, tuple(e.metrics), temporal=bool(e.get("temporal", False)),
        quantize_lr=bool(e.get("quantize_lr", False)), **options,
        save_to=workdir / schema.PREDICTIONS / protocol.replace(":", "_") if save_predictions else None)
    for noise_kind, level in e.get("noise", ()):
      results.setdefault("noise", {}).setdefault(protocol, {})[_noise_name(noise_kind, level)] = evaluate_images(
          model, params, items, tuple(float(s) for s in e.noise_scales), tuple(e.metrics), noise=(noise_kind, level),
          **options)
  return results
