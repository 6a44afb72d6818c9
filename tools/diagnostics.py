"""Why an SR-INR fit changes off its trained scale: per-level code shifts and trained-row coverage."""

from __future__ import annotations

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from inrsr import coords, models, resize
from inrsr.evaluators import frames, plots
from inrsr.models import encoding
from inrsr.models import srinr
from inrsr.train import checkpoints
from kernels import hashgrid


def hash_points(model: srinr.SRINR, params, lr: np.ndarray, xyt: np.ndarray) -> np.ndarray:
  """The points SR-INR reads its hash tables at: (x, y, t, code) per level, as `HashEncoding` receives them.

  Args:
    model: an SR-INR / VR-INR module.
    params: its parameters.
    lr: (h, w, C) LR frame in [0, 1].
    xyt: (Q, 3) query (x, y, t) in [-1, 1].

  Returns:
    (Q, L, 3 + code_dim) float32 points.
  """
  captured = {}

  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, encoding.HashEncoding) and context.method_name == "__call__":
      captured["points"] = args[0]
    return next_fun(*args, **kwargs)

  def points(p, lr_, xyt_):
    with nn.intercept_methods(interceptor):
      model.apply({"params": p}, lr_[None], xyt_[None])
    return captured["points"]

  return np.asarray(jax.jit(points)(params, jnp.asarray(lr, jnp.float32), jnp.asarray(xyt, jnp.float32)))


def touched_rows(tables: np.ndarray, init_tables: np.ndarray) -> np.ndarray:
  """Rows of the hash tables that training changed (any feature differs from its initial value).

  Args:
    tables: (L, T, F) trained tables.
    init_tables: (L, T, F) the same run's initial tables.

  Returns:
    (L, T) bool.
  """
  tables, init_tables = np.asarray(tables), np.asarray(init_tables)
  if tables.shape != init_tables.shape:
    raise ValueError(f"tables {tables.shape} and init_tables {init_tables.shape} differ in shape")
  return np.any(tables != init_tables, axis=-1)


def level_stats(points: np.ndarray, ref_points: np.ndarray | None, touched: np.ndarray,
                resolutions) -> dict[str, list[float]]:
  """Per level: how far the codes moved from a reference, and how many corners read trained rows.

  Args:
    points: (Q, L, D) hash points of some input (`hash_points`).
    ref_points: (Q, L, D) hash points of the same HR queries from the reference input, or None.
    touched: (L, T) rows training changed (`touched_rows`).
    resolutions: N_l of each level.

  Returns:
    {"trained_corners": share of the 2^D corners whose row training changed}, plus with a reference
    {"code_shift": mean |delta u| over queries and code axes, in lattice cells of the level,
     "cell_changed": share of queries whose lattice cell (all D axes) differs from the reference's}.
  """
  points = np.asarray(points, np.float32)
  num_levels, table_size = touched.shape
  if points.ndim != 3 or points.shape[1] != num_levels or len(resolutions) != num_levels:
    raise ValueError(f"points {points.shape}, touched {touched.shape} and {len(resolutions)} resolutions "
                     "disagree on the number of levels")
  out = {"trained_corners": []}
  if ref_points is not None:
    out.update(code_shift=[], cell_changed=[])
  for level, res in enumerate(resolutions):
    rows = np.asarray(hashgrid.corner_indices(jnp.asarray(points[:, level]), int(res), table_size))
    out["trained_corners"].append(float(touched[level][rows].mean()))
    if ref_points is not None:
      u = (np.clip(points[:, level], -1, 1) + 1) * 0.5 * res
      u_ref = (np.clip(np.asarray(ref_points, np.float32)[:, level], -1, 1) + 1) * 0.5 * res
      out["code_shift"].append(float(np.abs(u[:, 3:] - u_ref[:, 3:]).mean()))
      out["cell_changed"].append(float(np.any(np.floor(u) != np.floor(u_ref), axis=-1).mean()))
  return out


def _queries(hr_shapes, num: int, rng) -> tuple[np.ndarray, np.ndarray]:
  """Random HR pixels inside every shape of `hr_shapes` (the smallest crop), as (rows, cols)."""
  h = min(s[0] for s in hr_shapes)
  w = min(s[1] for s in hr_shapes)
  flat = rng.choice(h * w, size=min(num, h * w), replace=False)
  return flat // w, flat % w


def diagnose_run(workdir, *, scales=(2.0, 4.0, 8.0), ref_scale: float = 4.0, queries: int = 4096,
                 seed: int = 0) -> dict:
  """Code shifts, trained-row coverage and PSNR of an SR-INR run at several scales; writes diagnostics.json.

  For each `fit` (or `internal`) image, the same random HR pixels are queried with the LR made at every scale
  (the degradation `evaluate` uses); their hash points are compared level by level with those from the LR at
  `ref_scale`. For each `heldout` image (never trained on) only the trained-row share is reported.

  Args:
    workdir: an SR-INR or VR-INR run.
    scales: SR scales to diagnose.
    ref_scale: the scale the codes are compared with (the trained one for a single-scale run).
    queries: HR pixels per image.
    seed: picks the pixels.

  Returns:
    {"resolutions", "scales", "ref_scale", "touched_share" (per level), "sets": {protocol: {scale: `level_stats`
     averaged over the images, plus "psnr" and "bicubic_psnr" (benchmark metric, mean over images)}}}.
  """
  workdir = pathlib.Path(workdir)
  model, params, config, step = checkpoints.restore_model(workdir)
  if not isinstance(model, srinr.SRINR):
    raise ValueError(f"{workdir}: diagnostics are for SR-INR / VR-INR runs, this one holds "
                     f"{config.model.get('name', 'srinr')}")
  scales = sorted({float(s) for s in scales} | {float(ref_scale)})
  init = models.init_params(model, jax.random.key(config.train.seed))
  touched = touched_rows(params["hash"]["tables"], init["hash"]["tables"])
  resolutions = model.resolutions
  modcrop = bool(config.data.get("modcrop", True))
  sets = frames.evaluation_sets(config)
  rng = np.random.default_rng(seed)
  result = {"workdir": str(workdir), "step": step, "resolutions": list(resolutions), "scales": scales,
            "ref_scale": float(ref_scale), "modcrop": modcrop,
            "touched_share": [float(t.mean()) for t in touched]}
  result["sets"] = {}
  for protocol, items in sets.items():
    trained = not protocol.startswith("heldout")
    per_scale = {f"{s:g}": [] for s in scales}
    for _, hr, t in items:
      pairs = {s: resize.downsample(hr, s, modcrop=modcrop) for s in scales}
      rows, cols = _queries([p[1].shape for p in pairs.values()], queries, rng)
      points = {}
      for s, (lr, hr_c) in pairs.items():
        xyt = coords.pixel_coords(rows, cols, hr_c.shape[0], hr_c.shape[1], t)
        points[s] = hash_points(model, params, lr, xyt)
      for s in scales:
        ref = points[float(ref_scale)] if trained else None
        per_scale[f"{s:g}"].append(level_stats(points[s], ref, touched, resolutions))
    psnr = frames.evaluate_images(model, params, items, scales, ("benchmark",), modcrop=modcrop)
    averaged = {}
    for s, rows_ in per_scale.items():
      averaged[s] = {k: np.mean([r[k] for r in rows_], axis=0).tolist() for k in rows_[0]}
      averaged[s]["psnr"] = psnr[s]["benchmark"]["model"]["psnr"]
      averaged[s]["bicubic_psnr"] = psnr[s]["benchmark"]["bicubic"]["psnr"]
    result["sets"][protocol] = averaged
  (workdir / "diagnostics.json").write_text(json.dumps(result, indent=1))
  return result


def plot(result: dict, path) -> None:
  """Three panels: code shift per level, trained-corner share per level, PSNR vs scale (heldout dashed)."""
  levels = np.arange(len(result["resolutions"]))
  fig, axes = plots.subplots(1, 3, figsize=(15, 4))
  for name, by_scale in result["sets"].items():
    style = "--" if name.startswith("heldout") else "-"
    for sc, st in by_scale.items():
      if "code_shift" in st:
        axes[0].plot(levels, st["code_shift"], marker="o", label=f"{name} x{sc}")
      axes[1].plot(levels, st["trained_corners"], marker="o", linestyle=style, label=f"{name} x{sc}")
  axes[0].set(xlabel="level", ylabel="mean |code shift| (lattice cells)",
              title=f"codes against x{result['ref_scale']:g}")
  axes[1].set(xlabel="level", ylabel="share of corners on trained rows", ylim=(0, 1.05), title="trained rows")
  for name, by_scale in result["sets"].items():
    style = "--" if name.startswith("heldout") else "-"
    xs = sorted(by_scale, key=float)
    axes[2].plot([float(x) for x in xs], [by_scale[x]["psnr"] for x in xs], marker="o", linestyle=style,
                 label=f"SR-INR {name}")
    axes[2].plot([float(x) for x in xs], [by_scale[x]["bicubic_psnr"] for x in xs], marker=".", linestyle=style,
                 color="gray", label=f"bicubic {name}")
  axes[2].set(xscale="log", xlabel="scale", ylabel="PSNR (dB, Y, shave = scale)", title="PSNR vs scale")
  for ax in axes:
    ax.legend(fontsize=7)
  plots.save(fig, path, dpi=100)


def markdown(result: dict) -> str:
  """The diagnostics as a Markdown table: one row per (set, scale, quantity), one column per level."""
  levels = len(result["resolutions"])
  head = "| set | scale | quantity | " + " | ".join(f"L{l} (N={n})" for l, n in
                                                      enumerate(result["resolutions"])) + " | PSNR / bicubic |"
  lines = [head, "|" + "---|" * (levels + 4)]
  for name, by_scale in result["sets"].items():
    for sc, st in by_scale.items():
      for q in ("code_shift", "cell_changed", "trained_corners"):
        if q in st:
          cells = " | ".join(f"{v:.3f}" for v in st[q])
          lines.append(f"| {name} | x{sc} | {q} | {cells} | {st['psnr']:.2f} / {st['bicubic_psnr']:.2f} |")
  lines.append("| rows | - | touched_share | " + " | ".join(f"{v:.3f}" for v in result["touched_share"]) + " | |")
  return "\n".join(lines) + "\n"
