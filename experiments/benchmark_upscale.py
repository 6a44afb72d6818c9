r"""Peak host memory and time of a streamed upscale: 512x512 -> 16384x16384 (x32) to a PNG, by default.

  python -m experiments.benchmark_upscale [--config=liif_train291:small] [--size=16384] [--chunk=16384] \
      [--output=big.png]

The model is `--config`'s with random parameters (`tools.benchmarking.varied_params`: the compute of a trained
model without training one): by default liif_train291:small's LIIF (a tiny encoder and MLP, so that the full size
finishes in minutes on a CPU); `--config=srinr_demo:small` is SR-INR (about 1e4 pixels/s on a 2-core CPU, so
use a smaller --size there). The input is a central crop of the bundled astronaut photograph (512x512). Prints
JSON: seconds, pixels/s, the PNG's size, peak RSS (the process's high-water mark, JAX and compilation included)
before and after the upscale, XLA's memory for one chunk (fitting models), and the size a whole float32 output
would have taken. The memory is set by --chunk, not --size.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from inrsr import models
from tools import benchmarking

_CONFIG = config_flags.DEFINE_config_file("config", f"{configs.CONFIG_DIR / 'liif_train291.py'}:small",
                                          "Config NAME[:ARG] whose model upscales.", lock_config=True)
_SIZE = flags.DEFINE_integer("size", 16384, "Output side (the output is size x size).")
_LR_SIZE = flags.DEFINE_integer("lr_size", 512, "LR side (a central crop of the 512x512 photograph).")
_CHUNK = flags.DEFINE_integer("chunk", 16384, "Query points per inference call.")
_OUTPUT = flags.DEFINE_string("output", None, "Keep the PNG here (default: a temporary file, deleted).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = benchmarking.upscale_memory(_CONFIG.value.model, height=_SIZE.value, width=_SIZE.value,
                                       lr_size=_LR_SIZE.value, chunk=_CHUNK.value, output=_OUTPUT.value)
  print(json.dumps({"model": models.model_name(_CONFIG.value.model), **result}, indent=1))


if __name__ == "__main__":
  configs.run(main)
