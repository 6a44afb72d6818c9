"""The results schema every evaluator writes: file names, the `kind` field, and the model name results carry.

A results dict (a run's results.json) holds `kind`, the evaluator that wrote it, with that kind's fields:
  * `frames`: model, step, scales, metrics (the metric rules of `inrsr.metrics`: div2k, benchmark, full),
    num_images and protocols ({evaluation protocol (fit, heldout, internal, heldout:<set>): {scale: {metric:
    cell}}}), modcrop, cell_rule; init_steps (a cumulative schedule's earlier stages) and noise where they apply.
  * `blind`: clips, pooled, model, step, blind (the settings), compared; and `protocol: "blind"`, the name files
    written before `kind` carry for it (kept, so old and new files read alike).
  * `zero_shot`: model, metric (one metric rule per file), budget and sets ({set: {scale: cell}}).
A cell is {"model": {"psnr", "ssim"}, "bicubic": {...}, "per_image": {name: {...}}}. Files written before
`kind` existed are read by `kind_of`. Keys keep their first names, so every kept file (results/runs/) loads.
"""

from __future__ import annotations

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "psnr_vs_scale.png"
PREDICTIONS = "predictions"  # frames.evaluate_images(save_to=...) under the run: the scored outputs


def kind_of(results: dict) -> str:
  """The evaluator kind of a results dict: its `kind`, or for older files `blind` where `protocol` says so,
  else `frames`."""
  if "kind" in results:
    return results["kind"]
  return "blind" if results.get("protocol") == "blind" else "frames"


