"""SR-INR on Set5 at native size, trained at x32 (protocol `fit`), metric `benchmark` (Y, shave scale).

  python -m experiments.train --config=srinr_set5 --workdir=workdirs/set5
  python -m experiments.evaluate --workdir=workdirs/set5
Data: $INRSR_DATA_DIR/Set5 (default ../shared/data/Set5).
"""

from experiments.configs import common


def get_config(arg=None):
  c = common.base()
  c.data.update(source="folder", root="$INRSR_DATA_DIR/Set5", scale=32.0, batch_size=5)
  c.eval.update(metrics=("benchmark",))
  if arg == "small":
    common.shrink(c)
  elif arg:
    raise ValueError(f"srinr_set5: unknown argument {arg!r} (expected 'small' or none)")
  return c
