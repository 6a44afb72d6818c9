r"""Evaluate a run: `python -m experiments.evaluate --workdir=DIR [--scales=2,4,7.5]`.

Writes results.json, results.md and psnr_vs_scale.png into the workdir (PSNR/SSIM per protocol, scale and
metric, next to bicubic).
"""

from absl import app
from absl import flags

from inrsr import evaluation

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a training run.")
_SCALES = flags.DEFINE_list("scales", None, "Scales to evaluate (default: the run's eval.scales).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  scales = [float(s) for s in _SCALES.value] if _SCALES.value else None
  results = evaluation.evaluate_run(_WORKDIR.value, scales=scales, progress=_PROGRESS.value)
  print(evaluation.markdown_table(results))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
