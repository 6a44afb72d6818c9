"""The SR-INR papers' ablations (SR-INR Tables 4-8, VR-INR Table 5) as one-field variations of a base config.

Each table varies one config field over the papers' values (those a CPU can run); the base config's own value is
the shared `base` run. Every run trains in its own folder under the ablation's workdir, is scored on its training
frames at the trained scale (protocol `fit`, the papers' ablation protocol) and is kept, so the same command
started again skips finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time

import jax
import ml_collections
import numpy as np

from inrsr import evaluators
from inrsr.evaluators import plots
from inrsr.train import training

# table -> (title, the field it varies, the values).
TABLES = {
    "weight_norm": ("Weight normalisation of the 64 neighbour weights (the papers: none)", "model.weight_norm",
                    ("none", "softmax", "multilinear")),
    "attention": ("Top-down attention (VR-INR Table 5)", "model.top_down_attention", (True, False)),
    "loss": ("Loss (VR-INR Table 5: PEA against per-pixel MSE)", "train.loss", ("pea", "mse")),
    "n_min": ("Initial grid resolution N_min (SR-INR Table 4)", "model.n_min", (2, 8, 16, 32)),
    "features": ("Features per level F (SR-INR Table 5)", "model.features", (2, 4)),
    "table_size": ("Hash table size log2 T (SR-INR Table 6; the capacity curve)", "model.log2_table_size",
                   (14, 16, 18, 20)),
    "levels": ("Levels L (SR-INR Table 7, 'res-layers')", "model.num_levels", (4, 8, 12)),
    "n_max": ("Finest grid resolution N_max (SR-INR Table 8)", "model.n_max", (64, 128)),
}
RESULTS_JSON = "ablation.json"
RESULTS_MD = "ablation.md"
CAPACITY_PNG = "capacity.png"
ROW_JSON = "ablation_row.json"


def _get(config: ml_collections.ConfigDict, field: str):
  section, name = field.split(".")
  return config[section][name]


def variant(config: ml_collections.ConfigDict, field: str, value) -> ml_collections.ConfigDict:
  """A copy of `config` with `field` ("section.name") set to `value`.

  Raises:
    ValueError: the config has no such field.
  """
  section, name = field.split(".")
  if section not in config or name not in config[section]:
    raise ValueError(f"ablation field {field!r}: the config has no {section}.{name}")
  c = copy.deepcopy(config)
  with c.unlocked():
    c[section][name] = value
  return c


def run_name(config: ml_collections.ConfigDict, field: str, value) -> str:
  """The run folder of a variation: `base` for the base config's own value, else `field=value`."""
  return "base" if _get(config, field) == value else f"{field}={value}"


def planned_runs(config: ml_collections.ConfigDict, tables) -> dict[str, list[tuple[str, object, str]]]:
  """table -> [(field, value, run folder name)] for the chosen tables.

  Raises:
    ValueError: an unknown table name (the known ones are listed).
  """
  unknown = [t for t in tables if t not in TABLES]
  if unknown:
    raise ValueError(f"unknown ablation table(s) {unknown}; known: {list(TABLES)}")
  plan = {}
  for table in tables:
    _, field, values = TABLES[table]
    values = list(values)
    if _get(config, field) not in values:  # The base run is in every table.
      values.append(_get(config, field))
    plan[table] = [(field, v, run_name(config, field, v)) for v in values]
  return plan


def _param_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def score_run(config: ml_collections.ConfigDict, run_dir, *, progress: bool = False) -> dict:
  """Train (or resume) one run and score it at its trained scale on its training frames.

  Args:
    config: the run's config.
    run_dir: its folder; a finished, scored run is read back without work.
    progress: progress bars.

  Returns:
    {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "params", "train_s", "step", "metric", "scale"}; train_s is
    the wall-clock training time of the process that finished the run (about 0 when it resumed a finished run).
  """
  run_dir = pathlib.Path(run_dir)
  row_file = run_dir / ROW_JSON
  if row_file.exists():
    return json.loads(row_file.read_text())
  tic = time.perf_counter()
  state = training.train(config, str(run_dir), progress=progress)
  train_s = time.perf_counter() - tic
  scale = float(config.data.scale)
  results = evaluators.evaluate_run(run_dir, scales=(scale,), progress=False)
  metric = results["metrics"][0]
  cell = results["protocols"]["fit"][f"{scale:g}"][metric]
  row = {"psnr": cell["model"]["psnr"], "ssim": cell["model"]["ssim"], "bicubic_psnr": cell["bicubic"]["psnr"],
         "bicubic_ssim": cell["bicubic"]["ssim"], "params": _param_count(state["params"]), "train_s": train_s,
         "step": results["step"],
         "metric": metric, "scale": scale}
  row_file.write_text(json.dumps(row, indent=1))
  return row


def run_ablation(config: ml_collections.ConfigDict, workdir, tables=tuple(TABLES), *, progress: bool = True) -> dict:
  """Every run of the chosen tables (shared runs once); writes ablation.json, ablation.md and capacity.png.

  Args:
    config: the base config (e.g. `srinr_celeba_ablation:cpu`).
    workdir: the ablation's folder (one subfolder per run).
    tables: names from `TABLES`.
    progress: progress bars.

  Returns:
    {"tables": {table: [{"field", "value", "run", **score_run}]}, "base": {field: value}}.
  """
  workdir = pathlib.Path(workdir)
  plan = planned_runs(config, tables)  # Unknown names fail before any training.
  if config.data.protocol != "fit":
    raise ValueError(f"data.protocol={config.data.protocol!r}: the ablations score protocol `fit`")
  workdir.mkdir(parents=True, exist_ok=True)
  rows = {}
  results = {"tables": {}, "base": {TABLES[t][1]: _get(config, TABLES[t][1]) for t in plan}}
  for table, runs in plan.items():
    results["tables"][table] = []
    for field, value, name in runs:
      if name not in rows:
        rows[name] = score_run(variant(config, field, value), workdir / name, progress=progress)
      results["tables"][table].append({"field": field, "value": value, "run": name, **rows[name]})
    (workdir / RESULTS_JSON).write_text(json.dumps(results, indent=1))
    (workdir / RESULTS_MD).write_text(markdown_table(results))
  if "table_size" in results["tables"]:
    plot_capacity(results["tables"]["table_size"], workdir / CAPACITY_PNG)
  return results


def markdown_table(results: dict) -> str:
  """One Markdown table per ablation table: value, PSNR / SSIM (fit), bicubic, parameters, training seconds."""
  lines = []
  for table, rows in results["tables"].items():
    title, field, _ = TABLES[table]
    lines.append(f"### {title}: `{field}`\n")
    lines.append("| value | PSNR / SSIM | bicubic | parameters | train s |")
    lines.append("|---|---|---|---|---|")
    best = max(r["psnr"] for r in rows)
    for r in sorted(rows, key=lambda r: str(r["value"]) if isinstance(r["value"], str) else float(r["value"])):
      cell = f"{r['psnr']:.2f} / {r['ssim']:.4f}"
      cell = f"**{cell}**" if r["psnr"] == best else cell
      base = " (base)" if r["run"] == "base" else ""
      lines.append(f"| {r['value']}{base} | {cell} | {r['bicubic_psnr']:.2f} / {r['bicubic_ssim']:.4f} | "
                   f"{r['params']:,} | {r['train_s']:.0f} |")
    lines.append("")
  return "\n".join(lines) + f"\nProtocol `fit`, metric `{_first(results, 'metric')}`, x{_first(results, 'scale'):g}.\n"


def _first(results: dict, key: str):
  return next(iter(results["tables"].values()))[0][key]


def extrapolate(log2_sizes, psnrs, target: float, last: int = 3) -> float:
  """PSNR at log2 T = `target` on the straight line (least squares) through the `last` largest measured tables.

  A labelled guess, not a measurement: the papers' Table 6 rises more slowly toward 2^26 than a line does.
  """
  order = np.argsort(log2_sizes)[-last:]
  x = np.asarray(log2_sizes, float)[order]
  y = np.asarray(psnrs, float)[order]
  if len(x) < 2:
    raise ValueError(f"extrapolation needs at least 2 table sizes, got {len(x)}")
  slope, intercept = np.polyfit(x, y, 1)
  return float(slope * target + intercept)


def plot_capacity(rows, path, target: float = 24.0) -> None:
  """Fit PSNR against log2 T (measured, solid) with the line of `extrapolate` to `target` (dashed, labelled)."""
  rows = sorted(rows, key=lambda r: r["value"])
  x = [float(r["value"]) for r in rows]
  y = [r["psnr"] for r in rows]
  fig, ax = plots.subplots()
  ax.plot(x, y, "-o", label=f"SR-INR, fit, measured (step {rows[0]['step']})")
  ax.plot(x, [r["bicubic_psnr"] for r in rows], "--", color="gray", label="bicubic")
  if len(x) >= 2 and target > max(x):
    end = extrapolate(x, y, target)
    ax.plot([max(x), target], [extrapolate(x, y, max(x)), end], ":", color="C0",
            label=f"extrapolation (line through the last 3), not measured: {end:.1f} dB at 2^{target:g}")
  plots.decorate(ax, "log2 T (hash table rows per level)",
                 f"PSNR (dB), {rows[0]['metric']}, x{rows[0]['scale']:g}", legend_size=7)
  plots.save(fig, path)
