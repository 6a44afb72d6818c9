"""SR-INR on Set14 at native size, trained at x32 (protocol `fit`), metric `benchmark` (Y, shave scale).

  python -m experiments.train --config=srinr_set14 --workdir=workdirs/set14
  python -m experiments.evaluate --workdir=workdirs/set14
Data: $INRSR_DATA_DIR/Set14 (default ../shared/data/Set14).
"""

from experiments.configs import common


def get_config(arg=None):
  c = common.base()
  c.data.update(source="folder", root="$INRSR_DATA_DIR/Set14", scale=32.0, batch_size=14)
  c.eval.update(metrics=("benchmark",))
  if arg == "small":
    common.shrink(c)
  elif arg:
    raise ValueError(f"srinr_set14: unknown argument {arg!r} (expected 'small' or none)")
  return c
