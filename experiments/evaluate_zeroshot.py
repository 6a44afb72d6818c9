r"""Zero-shot upscaling scored on benchmark images it never sees (protocol `internal`): per image, the LR (8-bit
bicubic of the HR) is the only input; the model is fitted on it alone and upscales it (`inrsr.infer.zero_shot`).

  python -m experiments.evaluate_zeroshot --sets=Set5,Set14 --scales=2,4 --budget=120s --workdir=workdirs/zs_liif
The model is `liif_zeroshot` (LIIF fitted on the LR alone, 8-fold self-ensemble); --config=srinr_zeroshot scores
SR-INR instead.
Writes WORKDIR/results.json (kind `zero_shot`, `inrsr.evaluators.zero_shot`; read by experiments.compare) and
WORKDIR/results.md (per image: PSNR/SSIM, bicubic, seconds), and per set WORKDIR/<set>/lr and .../sr (inputs and
outputs) and .../fits (each fitted run).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from inrsr import evaluators
from inrsr.evaluators import zero_shot

_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.")
_SETS = flags.DEFINE_list("sets", ["Set5", "Set14"], "Image folders under $INRSR_DATA_DIR.")
_SCALES = flags.DEFINE_list("scales", ["2", "4"], "SR scales.")
_BUDGET = flags.DEFINE_string("budget", "120s", "Fitting budget per image: steps (800) or seconds (240s).")
_LIMIT = flags.DEFINE_integer("limit", 0, "First N images of each set (0: all).")
_METRIC = flags.DEFINE_string("metric", "benchmark", "Metric rule of inrsr.metrics (div2k, benchmark, full).")
_CONFIG = config_flags.DEFINE_config_file("config", str(configs.CONFIG_DIR / "liif_zeroshot.py"),
                                          "Zero-shot model config.", lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  results = zero_shot.evaluate_sets(_CONFIG.value, _SETS.value, [float(s) for s in _SCALES.value], _WORKDIR.value,
                                    budget=_BUDGET.value, metric=_METRIC.value, limit=_LIMIT.value)
  print(evaluators.markdown(results))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  configs.run(main)
