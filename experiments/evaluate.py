r"""Evaluate a run: `python -m experiments.evaluate --workdir=DIR [--scales=2,4,7.5]`.

Writes results.json, results.md and psnr_vs_scale.png into the workdir (PSNR/SSIM per protocol, scale and
metric, next to bicubic).

A whole-clip model's run (BVSR-IK) is scored by the blind protocol of `inrsr/blind_evaluation.py` (Vid4 blurred
by the test recipe, Y PSNR/SSIM with a 4 px border, centre frames of 5-frame windows), next to bicubic and to
non-blind runs given with --compare on the same degraded frames:
  python -m experiments.evaluate --workdir=workdirs/bvsr291 --compare=workdirs/liif291
"""

from absl import app
from absl import flags

from inrsr import blind_evaluation, evaluation

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a training run.")
_SCALES = flags.DEFINE_list("scales", None, "Scales to evaluate (default: the run's eval.scales).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_COMPARE = flags.DEFINE_list("compare", [], "Whole-clip model runs: frame-model runs scored on the same blurred "
                             "input.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  scales = [float(s) for s in _SCALES.value] if _SCALES.value else None
  results = evaluation.evaluate_run(_WORKDIR.value, scales=scales, progress=_PROGRESS.value,
                                    compare=_COMPARE.value)
  table = (blind_evaluation.markdown_table(results) if results.get("protocol") == "blind"
           else evaluation.markdown_table(results))
  print(table)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
