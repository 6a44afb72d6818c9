"""SR-INR on Set14 at native size, trained at x32 (protocol `fit`), metric `benchmark` (Y, shave scale).

Same settings and arguments as srinr_set5 (the papers' literal ones; `:robust` the scale-robust ones); Set14's
grayscale `bridge.png` is converted to RGB.

  python -m experiments.train --config=srinr_set14 --workdir=workdirs/set14
  python -m experiments.evaluate --workdir=workdirs/set14
Data: $INRSR_DATA_DIR/Set14 (default ../shared/data/Set14).
"""

from experiments.configs import srinr_set5


def get_config(arg=None):
  return srinr_set5.benchmark_set("srinr_set14", "Set14", 14, arg)
