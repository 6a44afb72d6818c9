r"""Peak host memory and time of a streamed upscale, one model (in this process) or a table of models and sizes.

One case (in this process), 512x512 -> 16384x16384 (x32) to a PNG by default:
  python -m experiments.benchmark_upscale [--config=liif_train291:small] [--size=16384] [--chunk=16384] \
      [--output=big.png] [--frames=20]
Peak RSS against output size for every model, one process per (model, size):
  python -m experiments.benchmark_upscale --models=srinr,liif,hiif,clit,bvsr_ik --sizes=1024,4096 \
      [--lr_size=512] [--chunk=65536] [--frames=1,5,20] [--model_size=small|full] [--json=FILE]

The model is `--config`'s with random parameters (`tools.benchmarking.varied_params`: the compute of a trained
model without training one): by default liif_train291:small's LIIF (a tiny encoder and MLP, so that the full size
finishes in minutes on a CPU); `--config=srinr_demo:small` is SR-INR (about 1e4 pixels/s on a 2-core CPU, so
use a smaller --size there). The input is a central crop of the bundled astronaut photograph (512x512); a
whole-clip model (BVSR-IK) upscales --frames shifted crops x4 to --size (its LR is --size / 4). Prints JSON:
seconds, pixels/s, the PNG's size, peak RSS (the process's high-water mark, JAX and compilation included)
before and after the upscale, XLA's memory for one chunk (fitting models), and the size a whole float32 output
would have taken. The memory is set by --chunk, not --size. With --models, each case runs in its own process
(`benchmarking.upscale_memory_table`; BVSR-IK as a clip of each --frames length) and prints one JSON line per case
(and all of them into --json).
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
_FRAMES = flags.DEFINE_list("frames", "20", "Clip length for a whole-clip model (BVSR-IK); with --models, the "
                             "lengths of its rows (e.g. 1,5,20).")
_MODELS = flags.DEFINE_list("models", None, "A table instead of one case: some of srinr, liif, hiif, clit, "
                            "bvsr_ik, one process per (model, size).")
_SIZES = flags.DEFINE_list("sizes", "1024,4096", "With --models: the output sides.")
_MODEL_SIZE = flags.DEFINE_enum("model_size", "small", ["small", "full"], "With --models: the configs' "
                                ":small models or their full ones (benchmarking.UPSCALE_CONFIGS).")
_JSON = flags.DEFINE_string("json", None, "With --models: also write the rows here.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  frames = [int(t) for t in _FRAMES.value]
  if _MODELS.value:
    rows = benchmarking.upscale_memory_table(_MODELS.value, [int(s) for s in _SIZES.value], lr_size=_LR_SIZE.value,
                                             chunk=_CHUNK.value, frames=frames, model_size=_MODEL_SIZE.value)
    if _JSON.value:
      with open(_JSON.value, "w") as f:
        json.dump({"load": benchmarking.load_average(), "rows": rows}, f, indent=1)
    return
  if len(frames) != 1:
    raise app.UsageError(f"--frames={','.join(_FRAMES.value)}: one clip length without --models")
  result = benchmarking.upscale_memory(_CONFIG.value.model, height=_SIZE.value, width=_SIZE.value,
                                       lr_size=_LR_SIZE.value, chunk=_CHUNK.value, output=_OUTPUT.value,
                                       frames=frames[0])
  print(json.dumps({"model": models.model_name(_CONFIG.value.model), **result}, indent=1))


if __name__ == "__main__":
  configs.run(main)
