r"""Inference throughput of every model family on one CPU input, side by side in one run.

  python -m experiments.benchmark_models [--size=96] [--scale=4] [--reps=3] [--models=srinr,liif,hiif,lit,clit]

The generalising models have their official sizes (EDSR-baseline encoder; `experiments/configs/common.py`,
GENERALISING_MODELS; LIT is CLIT's one stage, which the official code uses for every scale up to x4; `clit` is the
three-stage CLIT, which above x4 runs one stage per factor of `scale_base` 4, e.g. x12 as 4 then 3), SR-INR the
`srinr_demo` model; parameters are random (the compute does not depend on them). The input is a central crop
of the bundled astronaut photograph. Prints JSON with output pixels per second for each model and, for LIIF, LIT
and CLIT, the compiled memory of the call that inference repeats (`call_peak_mib`: one band or one chunk).

`lit` and `clit` decode whole rows (`CLIT.query_band`, the default of `inrsr.infer.inference`: a stage with at least
`CLIT.factor_min_queries` output pixels per feature pixel forms its first MLP layer's products once per feature
pixel); `lit_points` and `clit_points` are the same models queried point by point, as the official code does,
for the ratio (`--factor_min_queries=1` factors every stage, to find where it pays):
  python -m experiments.benchmark_models --size=48 --scale=4 --models=lit,lit_points
"""

import json

from absl import app
from absl import flags

from experiments import configs
from tools import benchmarking
from inrsr.data import images
from inrsr.models import clit

_SIZE = flags.DEFINE_integer("size", 96, "LR side (a central crop of the astronaut photograph).")
_SCALE = flags.DEFINE_float("scale", 4.0, "SR scale.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed repetitions per model (median), round-robin over the models.")
_CHUNK = flags.DEFINE_integer("chunk", 30000, "Query points per inference call (the official eval_bsize).")
_MODELS = flags.DEFINE_list("models", ["srinr", "liif", "hiif", "lit"],
                            "Models: srinr, liif, hiif, lit, clit, lit_points, clit_points.")
_FACTOR_MIN = flags.DEFINE_float("factor_min_queries", None, "Set CLIT.factor_min_queries for the run (the output "
                                 "pixels per feature pixel from which a stage is factored; 1: every stage).")
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  model_configs = {name: benchmarking.model_config(name) for name in _MODELS.value}
  lr = images.center_crop(images.bundled_image("astronaut"), _SIZE.value)
  if _FACTOR_MIN.value is not None:
    clit.CLIT.factor_min_queries = _FACTOR_MIN.value
  options = {name: {"band_decoding": False} for name in _MODELS.value if name in benchmarking.POINT_QUERIED}
  print(json.dumps(benchmarking.inference_throughput(model_configs, lr, _SCALE.value, chunk=_CHUNK.value,
                                                     reps=_REPS.value, options=options), indent=1))


if __name__ == "__main__":
  configs.run(main, names=())
