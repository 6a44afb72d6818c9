"""HIIF (EDSR-baseline encoder) on train291 with liif_train291's protocol and CPU budget (90 minutes, 2 cores).

  python -m experiments.train --config=hiif_train291 --workdir=workdirs/hiif291
  python -m experiments.evaluate --workdir=workdirs/hiif291
Quick check: --config=hiif_train291:small. Evaluation clips the cell as the official test (x max(s / 4, 1)).
"""

from experiments.configs import common, liif_train291


def get_config(arg=None):
  c = liif_train291.get_config()
  c.model = common.generalising_base("hiif").model
  # The same 90-minute budget as LIIF: a HIIF step takes 1.8-2.1 s on 2 cores (LIIF 1.16 s), so the cosine
  # schedule is set to the 2400 steps that fit instead of being cut at about 60% by train.budget_s.
  c.train.steps = 2400
  flags, _ = common.parse_arg(arg, "hiif_train291", flags=("small",))  # CPU-sized: no `cpu`
  if "small" in flags:
    common.shrink_generalising(c)
  return c
