"""SR-INR on Set5 at native size, trained at x32 (protocol `fit`), metric `benchmark` (Y, shave scale).

The papers' literal settings as srinr_celeba (no bicubic residual, x32 only); `:robust` adds the scale-robust
settings (srinr_celeba's docstring), and `--config.model.bicubic_residual=True` gives the default before 2026-12-06.

  python -m experiments.train --config=srinr_set5 --workdir=workdirs/set5
  python -m experiments.evaluate --workdir=workdirs/set5
Data: $INRSR_DATA_DIR/Set5 (default ../shared/data/Set5).
"""

from experiments.configs import common
from experiments.configs import srinr_celeba


def benchmark_set(name: str, folder: str, batch_size: int, arg=None):
  """A classic SR test set at native size, x32, `fit`, metric `benchmark`."""
  c = common.base()
  c.data.update(source="folder", root=f"$INRSR_DATA_DIR/{folder}", scale=32.0, batch_size=batch_size)
  c.eval.update(metrics=("benchmark",))
  return srinr_celeba.finish(c, arg, name)


def get_config(arg=None):
  return benchmark_set("srinr_set5", "Set5", 5, arg)
