r"""CPU inference throughput of inrsr's LIIF against the official PyTorch LIIF, side by side in one run.

  python -m experiments.benchmark_liif --official=/path/to/yinboc-liif [--checkpoint=FILE.pth] [--scale=4]

Needs torch (`pip install torch`) and a checkout of yinboc/liif for the official side; without --official it
times inrsr alone. The default checkpoint is the shared LIIF fixture (official format, seeded weights); the
input is a crop of a bundled photograph.
"""

import json
import pathlib

from absl import app
from absl import flags

from experiments import configs
from tools import benchmarking
from inrsr.data import images

_OFFICIAL = flags.DEFINE_string("official", None, "Checkout of yinboc/liif (omit to time inrsr alone).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", str(pathlib.Path(__file__).resolve().parents[1].parent / "shared/fixtures/liif/edsr_baseline_liif.pth"),
    "Official LIIF checkpoint.")
_SIZE = flags.DEFINE_integer("size", 128, "LR side (a central crop of the bundled astronaut photograph).")
_SCALE = flags.DEFINE_float("scale", 4.0, "Upscaling factor.")
_CHUNK = flags.DEFINE_integer("chunk", 30000, "Queries per call (official eval_bsize).")
_REPS = flags.DEFINE_integer("reps", 3, "Timed calls per implementation.")
_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads (0: torch's default).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  lr = images.center_crop(images.bundled_image("astronaut"), _SIZE.value)
  result = benchmarking.liif_inference_comparison(_CHECKPOINT.value, _OFFICIAL.value, lr, _SCALE.value,
                                                  chunk=_CHUNK.value, reps=_REPS.value,
                                                  torch_threads=_THREADS.value)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  configs.run(main, names=())
