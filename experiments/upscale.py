r"""Upscale with a trained run: `python -m experiments.upscale --workdir=DIR --input=a.png --scale=7.5 --output=b.png`.

--size=WxH instead of --scale sets the output size; --input may be a folder (then --output is a folder).
Video: --input=clip.mp4 (or a GIF, or a frame folder with --clip) and --output=out.mp4 or a folder of frames;
frame k of T is queried at t = -1 + (2k + 1) / T, as in training.
A PNG is written band by band as inference produces its rows (--chunk query points at a time) and a clip one
frame at a time, so memory does not grow with the output size; an output its format cannot hold is refused.
Before any work: an output that is the input, two inputs with one output name (a.png and a.jpg in a folder) and
an unknown output suffix are refused; an existing output file is refused unless --overwrite.

Zero-shot, with no trained run and no dataset: without --workdir (or with --zero_shot) a model is fitted on the
input itself, then applied to it (`inrsr.infer.zero_shot`): LIIF for an image (`liif_zeroshot`, with the 8-fold
self-ensemble), VR-INR for a clip (`srinr_zeroshot`):
  python -m experiments.upscale --input=photo.png --scale=4 --output=big.png [--budget=120s] [--workdir=KEEP]
--budget is steps (800) or seconds (120s); --workdir keeps the fit (the same command again, with --overwrite as
its output exists, resumes it; with --workdir, --budget or --zero_shot asks for a fit, since a --workdir alone
names a trained run);
--config=NAME (and then --config.a.b=v) chooses another zero-shot model, e.g. --config=srinr_zeroshot for SR-INR.
--self_ensemble averages a trained generalising run's output over the input's 8 flips and transposes.
A generalising model queries with its test-time cell, as `experiments.evaluate` scores it (HIIF: the official
clipping, cell x max(s / 4, 1), s = sqrt(output pixels / input pixels)); --notest_cell_clip passes the plain cell.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from experiments.configs import liif_zeroshot, srinr_zeroshot
from inrsr.infer import upscaling, zero_shot

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a training run (or, zero-shot, where to keep the fit).")
_INPUT = flags.DEFINE_string("input", None, "Image file or folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file (or folder for a folder input).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace output files that exist (never the input).")
_SCALE = flags.DEFINE_float("scale", None, "Output size = input size x scale.")
_SIZE = flags.DEFINE_string("size", None, "Output size WIDTHxHEIGHT (instead of --scale).")
_CLIP = flags.DEFINE_bool("clip", False, "Treat an input folder as the frames of one clip.")
_CHUNK = flags.DEFINE_integer("chunk", 65536, "Query points per inference call (bounds memory).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_ZERO_SHOT = flags.DEFINE_bool("zero_shot", None, "Fit the model on the input itself (default: without --workdir, "
                               "with --budget, or when --workdir holds a zero-shot fit).")
_BUDGET = flags.DEFINE_string("budget", "", "Zero-shot fitting budget: steps (800) or seconds (120s); default: the "
                              "config's train.steps.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Zero-shot model config NAME (experiments/configs/NAME.py) "
                                          "or path (default: liif_zeroshot for an image, srinr_zeroshot for a "
                                          "clip).", lock_config=True)
_SELF_ENSEMBLE = flags.DEFINE_bool("self_ensemble", False, "Trained generalising runs, images: the mean over the "
                                   "input's 8 flips and transposes (8x the compute).")
_TEST_CELL_CLIP = flags.DEFINE_bool("test_cell_clip", True, "Generalising models: query with the model's test-time "
                                    "cell, as evaluate scores it (HIIF: the official clipping, cell x max(s / 4, 1) "
                                    "above x4); --notest_cell_clip passes the plain cell 2 / size.")


def _default_config(input_path, clip: bool):
  """liif_zeroshot for an image, srinr_zeroshot (VR-INR) for a clip: chosen by measurement (RESULTS.md, "Zero-shot
  upscaling")."""
  kind = zero_shot.input_kind(input_path, clip)
  return (liif_zeroshot if kind == "file" else srinr_zeroshot).get_config()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  fitting = _ZERO_SHOT.value
  if fitting is None:  # zero-shot unless --workdir names a trained run and no budget is given
    fitting = _WORKDIR.value is None or bool(_BUDGET.value) or zero_shot.holds_fit(_WORKDIR.value)
  if fitting and _SELF_ENSEMBLE.value:
    raise app.UsageError("--self_ensemble is for trained runs; a zero-shot config sets zero_shot.self_ensemble")
  if not fitting and _BUDGET.value:
    raise app.UsageError("--budget is for zero-shot fitting (no --workdir, or --zero_shot)")
  upscaling.check_paths(_INPUT.value, _OUTPUT.value, clip=_CLIP.value, overwrite=_OVERWRITE.value)  # before a fit
  if fitting:
    config = _CONFIG.value or _default_config(_INPUT.value, _CLIP.value)
    paths = zero_shot.upscale(config, _INPUT.value, _OUTPUT.value, scale=_SCALE.value, size=_SIZE.value,
                              clip=_CLIP.value, budget=_BUDGET.value, workdir=_WORKDIR.value, chunk=_CHUNK.value,
                              progress=_PROGRESS.value, cell_scale=None if _TEST_CELL_CLIP.value else 1.0)
  else:
    paths = upscaling.upscale_paths(_WORKDIR.value, _INPUT.value, _OUTPUT.value, scale=_SCALE.value,
                                    size=_SIZE.value, clip=_CLIP.value, chunk=_CHUNK.value, progress=_PROGRESS.value,
                                    self_ensemble=_SELF_ENSEMBLE.value,
                                    cell_scale=None if _TEST_CELL_CLIP.value else 1.0, overwrite=_OVERWRITE.value)
  for path in paths:
    print(path)


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "output"])
  configs.run(main)
