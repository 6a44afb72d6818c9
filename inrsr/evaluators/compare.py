"""Several models' evaluated results side by side: one PSNR- (or SSIM-) versus-scale figure and one Markdown table.

A source is a run folder holding `results.json` (from `inrsr.evaluators.evaluate_run`), such a file itself (results
kept in `results/runs/` outlive the run folders), or the `results.json` of `experiments.evaluate_zeroshot`
(kind `zero_shot`: SR-INR fitted on each test image alone). Each source's row comes from its kind's evaluator
(`compare_cells`). Rows are labelled with the model and its budget, a cumulative schedule's by every stage's steps
("CLIT (440 + 175 + 185 steps)"; "? + 185" when the earlier stages' folders were gone at evaluation); bicubic is
taken from the first source that has each scale. A scale a source was not evaluated at is `-`. A group of sources
(one run evaluated at some scales, then at others) makes one row; two rows with one label are an error.
`quantity` picks the mean PSNR (dB, the default) or the mean SSIM of each cell.
"""

from __future__ import annotations

import json
import pathlib

from inrsr import evaluators
from inrsr.evaluators import plots, schema

QUANTITIES = {"psnr": ("PSNR (dB)", "{:.2f}"), "ssim": ("SSIM", "{:.4f}")}  # name: (axis label, table format)


def load_results(source) -> dict:
  """The results dict of a run folder (its results.json) or of a results JSON file."""
  path = pathlib.Path(source)
  path = path / schema.RESULTS_JSON if path.is_dir() else path
  if not path.is_file():
    raise FileNotFoundError(f"{source}: expected a run folder holding {schema.RESULTS_JSON} or a results JSON file")
  return json.loads(path.read_text())


def _check_quantity(quantity: str) -> None:
  if quantity not in QUANTITIES:
    raise ValueError(f"{quantity=} is not one of {sorted(QUANTITIES)}")


def row(results: dict, protocol: str, metric: str, source="", quantity: str = "psnr") -> tuple[str, dict, dict]:
  """One source's row.

  Args:
    results: a results dict (`schema`) of a kind with per-scale cells (frames, zero_shot).
    protocol: the evaluation protocol, e.g. "heldout:Set14" (a zero-shot result is looked up by the set after the
      colon).
    metric: a metric rule of `inrsr.metrics`.
    source: where the results came from, for errors.
    quantity: "psnr" or "ssim": which mean of each cell the row holds.

  Returns:
    (label, {scale: model quantity}, {scale: bicubic quantity}), scales as strings ("2", "2.5").
  """
  _check_quantity(quantity)
  label, cells = evaluators.get(schema.kind_of(results)).compare_cells(results, protocol, metric, source)
  missing = sorted((s for s, c in cells.items() if any(quantity not in c[m] for m in ("model", "bicubic"))), key=float)
  if missing:
    raise ValueError(f"{source}: no {quantity!r} at scales {missing} of {protocol!r}")
  pick = lambda method: {f"{float(s):g}": c[method][quantity] for s, c in cells.items()}
  return label, pick("model"), pick("bicubic")


def _rows(sources, protocol: str, metric: str, quantity: str) -> tuple[dict, dict]:
  """{label: {scale: value}} of every source or group of sources, and bicubic's {scale: value}."""
  rows, bicubic = {}, {}
  for group in sources:
    label, model = None, {}
    for source in group if isinstance(group, (list, tuple)) else [group]:
      part_label, part, bic = row(load_results(source), protocol, metric, source, quantity)
      if label is not None and part_label != label:
        raise ValueError(f"{source}: labelled {part_label!r}, but its group is one run labelled {label!r}")
      repeated = sorted(set(model) & set(part), key=float)
      if repeated:
        raise ValueError(f"{source}: scales {repeated} are already in its group's row {label!r}")
      label = part_label
      model.update(part)
      for s, v in bic.items():
        bicubic.setdefault(s, v)
    if label in rows:
      raise ValueError(f"{group}: a second row labelled {label!r}")
    rows[label] = model
  return rows, bicubic


def compare(sources, path, *, protocol: str, metric: str = "benchmark", quantity: str = "psnr") -> str:
  """Write one PSNR- (or SSIM-) versus-scale figure of several results and return their Markdown table.

  Args:
    sources: run folders or results JSON files (see the module docstring); an item that is a list or tuple of
      them is one run evaluated in several goes, merged into one row (same label, no scale twice).
    path: the PNG to write.
    protocol: the evaluation protocol to compare (e.g. "heldout:Set14").
    metric: the metric rule to compare.
    quantity: "psnr" (mean PSNR in dB, 2 decimals) or "ssim" (mean SSIM, 4 decimals).

  Returns:
    The Markdown table: bicubic, then one row per source in order; a column per scale any source has.
  """
  _check_quantity(quantity)
  axis_label, fmt = QUANTITIES[quantity]
  rows, bicubic = _rows(sources, protocol, metric, quantity)
  rows = {"bicubic": bicubic, **rows}
  scales = sorted(bicubic, key=float)
  fig, ax = plots.subplots()
  for i, (label, values) in enumerate(rows.items()):
    xs = [s for s in scales if s in values]
    ax.plot([float(s) for s in xs], [values[s] for s in xs], "--s" if label == "bicubic" else "-o", color=f"C{i}",
            label=label)
  plots.scale_axis(ax, scales)
  plots.decorate(ax, "scale", f"{axis_label}, {metric}, {protocol}")
  plots.save(fig, path)
  lines = ["| method | " + " | ".join(f"x{s}" for s in scales) + " |", "|---|" + "---|" * len(scales)]
  for label, values in rows.items():
    lines.append(f"| {label} | " + " | ".join(fmt.format(values[s]) if s in values else "-" for s in scales) + " |")
  return "\n".join(lines) + "\n"
