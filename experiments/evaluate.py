r"""Evaluate a run: `python -m experiments.evaluate --workdir=DIR [--scales=2,4,7.5]`.

Writes results.json, results.md and psnr_vs_scale.png into the workdir (PSNR/SSIM per protocol, scale and
metric, next to bicubic). A generalising model decodes with its test-time query cell as `experiments.upscale`
does (HIIF: the official clipping, cell x max(s / 4, 1)); --notest_cell_clip passes the plain cell 2 / size.
--save_predictions also writes each scored output (8 bits) and its LR under WORKDIR/predictions/.

The run's model picks its evaluator (`inrsr.evaluators.for_model`). A whole-clip model's run (BVSR-IK) is scored
by the `blind` evaluator, `inrsr/evaluators/blind.py` (Vid4 blurred by the test recipe, Y PSNR/SSIM with a 4 px
border, centre frames of 5-frame windows), next to bicubic and to non-blind runs given with --compare on the same
degraded frames:
  python -m experiments.evaluate --workdir=workdirs/bvsr291 --compare=workdirs/liif291
--blind_crop=256 --blind_frames=20 score the central 256x256 of the first 20 frames of each clip (a cheaper
subset); --zero_shot_budget=300 adds zero-shot VR-INR (`srinr_zeroshot`, or --zero_shot_config), fitted on each
degraded clip's own LR frames for that budget (`inrsr.infer.zero_shot.clip_restorer`; fits kept in WORKDIR/zero_shot).
"""

import pathlib

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from inrsr import evaluators
from inrsr.infer import zero_shot

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a training run.")
_SCALES = flags.DEFINE_list("scales", None, "Scales to evaluate (default: the run's eval.scales).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_COMPARE = flags.DEFINE_list("compare", [], "Whole-clip model runs: frame-model runs scored on the same blurred "
                             "input.")
_BLIND_CROP = flags.DEFINE_integer("blind_crop", None, "Whole-clip model runs: score the central HRxHR crop of "
                                   "every frame (0: whole frames; default: the run's eval.blind.crop).")
_BLIND_FRAMES = flags.DEFINE_integer("blind_frames", None, "Whole-clip model runs: the first N frames of each clip "
                                     "(0: all; default: the run's eval.blind.frames).")
_ZS_BUDGET = flags.DEFINE_string("zero_shot_budget", "", "Whole-clip model runs: add zero-shot VR-INR fitted on "
                                 "each degraded clip for this budget, steps (300) or seconds (120s); '' for none.")
_TEST_CELL_CLIP = flags.DEFINE_bool("test_cell_clip", True, "Generalising models: query with the model's test-time "
                                    "cell (HIIF: the official clipping, cell x max(s / 4, 1) above x4), as upscale "
                                    "does; --notest_cell_clip passes the plain cell 2 / size. Recorded in "
                                    "results.json as cell_rule.")
_SAVE_PREDICTIONS = flags.DEFINE_bool("save_predictions", False, "Also write each scored prediction (8 bits) and "
                                      "the LR it was made from under WORKDIR/predictions/<protocol>/x<scale>/.")
_ZS_CONFIG = config_flags.DEFINE_config_file("zero_shot_config", str(configs.CONFIG_DIR / "srinr_zeroshot.py"),
                                             "Zero-shot model config (with --zero_shot_budget).", lock_config=True)
_REUSE = configs.reuse_freed_memory_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  configs.apply_reuse_freed_memory(_REUSE)  # before JAX's backend starts
  scales = [float(s) for s in _SCALES.value] if _SCALES.value else None
  overrides = {k: f.value for k, f in (("crop", _BLIND_CROP), ("frames", _BLIND_FRAMES)) if f.value is not None}
  clip_methods = None
  if _ZS_BUDGET.value:
    zero_shot.parse_budget(_ZS_BUDGET.value)  # a bad budget is refused before any work
    restore = zero_shot.clip_restorer(_ZS_CONFIG.value, pathlib.Path(_WORKDIR.value) / "zero_shot",
                                      budget=_ZS_BUDGET.value, progress=_PROGRESS.value)
    clip_methods = {f"VR-INR zero-shot ({_ZS_BUDGET.value} per clip)": restore}
  results = evaluators.evaluate_run(_WORKDIR.value, scales=scales, progress=_PROGRESS.value,
                                     compare=_COMPARE.value, clip_methods=clip_methods,
                                     blind_overrides=overrides or None,
                                     cell_scale=None if _TEST_CELL_CLIP.value else 1.0,
                                     save_predictions=_SAVE_PREDICTIONS.value)
  print(evaluators.markdown(results))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  configs.run(main, names=("zero_shot_config",))
