"""LIT (CLIT's one-stage model, EDSR-baseline encoder) on train291 with liif_train291's protocol and CPU budget.

  python -m experiments.train --config=lit_train291 --workdir=workdirs/lit291
  python -m experiments.evaluate --workdir=workdirs/lit291
Quick check: --config=lit_train291:small. A one-stage model is queried in one stage at every scale (the
cascade above x4 needs CLIT's cumulative training, which this config does not run).
"""

from experiments.configs import common, liif_train291


def get_config(arg=None):
  c = liif_train291.get_config()
  c.model = common.generalising_base("clit").model
  c.eval.chunk = 8192  # 49 neighbours x base_dim values per query
  # The same 90-minute budget as LIIF: a LIT step takes 3.5 s on 2 unloaded cores (LIIF 1.16 s), so the cosine
  # schedule is set to the 1500 steps that fit instead of being cut at 40% by train.budget_s.
  c.train.steps = 1500
  flags, _ = common.parse_arg(arg, "lit_train291", flags=("small",))  # CPU-sized: no `cpu`
  if "small" in flags:
    common.shrink_generalising(c)
  return c
