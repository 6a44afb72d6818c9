r"""Inference throughput of every model family on one CPU input, side by side in one run.

  python -m experiments.benchmark_models [--size=96] [--scale=4] [--reps=3] [--models=srinr,liif,hiif,lit,clit]

The generalising models have their official sizes (EDSR-baseline encoder; `experiments/configs/common.py`,
GENERALISING_MODELS; LIT is CLIT's one stage, which the official code uses for every scale up to x4; `clit` is the
three-stage CLIT, which above x4 runs one stage per factor of `scale_base` 4, e.g. x12 as 4 then 3), SR-INR the
`srinr_demo` model; parameters are random (the compute does not depend on them). The input is a central crop
of the bundled astronaut photograph. Prints JSON with output pixels per second for each model.
"""

import json

from absl import app
from absl import flags
import ml_collections

from experiments.configs import clit_train291, common, srinr_demo
from inrsr import benchmarking
from inrsr.data import images

_SIZE = flags.DEFINE_integer("size", 96, "LR side (a central crop of the astronaut photograph).")
_SCALE = flags.DEFINE_float("scale", 4.0, "SR scale.")
_REPS = flags.DEFINE_integer("reps", 3, "Timed repetitions per model (median), round-robin over the models.")
_CHUNK = flags.DEFINE_integer("chunk", 30000, "Query points per inference call (the official eval_bsize).")
_MODELS = flags.DEFINE_list("models", ["srinr", "liif", "hiif", "lit"], "Models: srinr, liif, hiif, lit, clit.")


def model_config(name: str) -> ml_collections.ConfigDict:
  """The `model` section benchmarked for a name."""
  if name == "srinr":
    return srinr_demo.get_config().model
  key = {"liif": "liif", "hiif": "hiif", "lit": "clit", "clit": "clit"}.get(name)
  if key is None:
    raise ValueError(f"--models: unknown model {name!r}; expected srinr, liif, hiif, lit or clit")
  config = ml_collections.ConfigDict(common.GENERALISING_MODELS[key])
  if name == "clit":
    config.num_stages = len(clit_train291.STAGES["clit3"][0])  # CLIT3, the end of the cumulative schedule
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  configs = {name: model_config(name) for name in _MODELS.value}
  lr = images.center_crop(images.bundled_image("astronaut"), _SIZE.value)
  print(json.dumps(benchmarking.inference_throughput(configs, lr, _SCALE.value, chunk=_CHUNK.value,
                                                     reps=_REPS.value), indent=1))


if __name__ == "__main__":
  app.run(main)
