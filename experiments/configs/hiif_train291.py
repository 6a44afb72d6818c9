"""HIIF (EDSR-baseline encoder) on train291 with liif_train291's protocol and CPU budget (90 minutes, 2 cores).

  python -m experiments.train --config=hiif_train291 --workdir=workdirs/hiif291
  python -m experiments.evaluate --workdir=workdirs/hiif291
Quick check: --config=hiif_train291:small. Evaluation clips the cell as the official test (x max(s / 4, 1)).
"""

from experiments.configs import common, liif_train291


def get_config(arg=None):
  c = liif_train291.get_config()
  c.model = common.generalising_base("hiif").model
  flags, _ = common.parse_arg(arg, "hiif_train291", flags=("small",))  # CPU-sized: no `cpu`
  if "small" in flags:
    common.shrink_generalising(c)
  return c
