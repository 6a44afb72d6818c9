"""CLIT's cumulative training on train291 (EDSR-baseline): LIT, then CLIT2, then CLIT3, each from the last.

One config per stage, `clit_train291:STAGE` with STAGE lit, clit2 or clit3 (default clit3, the whole schedule);
each names its predecessor (`cumulative.previous`). The schedule runs every stage up to the one named, each in
its own folder and starting from the previous stage's parameters (`train.init_from`, set by the runner):
  python -m experiments.train_cumulative --config=clit_train291:clit3 --workdir=workdirs/clit291
  python -m experiments.evaluate --workdir=workdirs/clit291/clit3
Quick check: --config=clit_train291:clit3,small. Started again, the schedule resumes where it stopped.
Each stage with lit_train291's budget (CLIT3 1.5 times it; 3.5 times liif_train291's in all): add `full`.

Budget: the whole schedule gets liif_train291's 90 minutes on 2 unloaded CPU cores, the budget of every other
row of RESULTS.md's comparison, split as the official epochs are (LIT 1000, CLIT2 1000, CLIT3 1500:
2 / 7, 2 / 7 and 3 / 7 of it). The step counts (`equal_budget_steps`) are those minutes divided by an estimated
step time: LIT 3.5 s (lit_train291's measured 1500 steps in 88 minutes); a two-stage step about 3.9 LIT steps
(measured on busy cores below: 31 s against 8 s) and a three-stage step about 6 (an estimate: each stage before
the last decodes its whole intermediate grid), so a CLIT2 batch (cycling 2, 1 stages) about 2.5 and a CLIT3
batch (3, 1, 2) about 3.6 LIT steps on average. Measured alone on the 2 cores (2026-12-05/06, RESULTS.md):
LIT 3.8-5.3 s a step (about 35 minutes), CLIT2 8.2 s (23.9 minutes), CLIT3 11.9 s (36.6 minutes), so about 95
minutes of steps in all; LIT's step was slower than in lit_train291's run, the cascade's close to the estimate.
`full` is the per-stage budget (each stage lit_train291's 1500 steps, CLIT3 2250): about 13 hours of steps at
the step times above.

Protocol `cascade` (`inrsr.data.cascade`): the official one scale set per batch, s ~ U(1, 4) (LIT), [U(1, 4),
U(1, 4)] with batches alternating 2, 1 stages (CLIT2), [U(1, 4), U(1, 4), U(1, 2)] cycling 3, 1, 2 (CLIT3), L1
on the final stage, 48x48 LR crops, 2304 queries. Optimiser of lit_train291 per stage (batch 4, cosine from
5e-4 over the stage's steps, `train.budget_s` of 90 minutes per invocation).

Departure: `data.scale_ladder=1` rounds every factor to a power of 2 (`inrsr.data.cascade`), because each
distinct scale set traces and compiles its own train step. Over 1400 batches (seed 0, batch 4) the official
continuous draw (`--config.data.scale_ladder=0`) gives 1217 / 1330 / 1367 distinct scale sets (LIT / CLIT2 /
CLIT3), i.e. a compile nearly every batch, of 1 / 149 / 589 distinct stage-grid shapes; the ladder gives 3 / 12 /
28 sets of 1 / 6 / 17 shapes, all but two seen within the first 700 batches. Measured on 2 busy CPU cores
(full model): a LIT step takes about 8 s, a batch with a new scale set 20-24 s (13-14 s when JAX's persistent
cache already holds its shape); a CLIT2 step 16 s (one stage) to 31 s (two), its first batch of a new two-stage
shape 90-120 s. The cost: the mean total scale drops from 2.41 / 3.11 / 3.43 to 2.22 / 2.49 / 2.61 (the s_1
rescale of train291's small images rounds down to a power of 2), and the first stage, the only one used up to
x4, trains at x1, x2 and x4 only, never at x3; `scale_ladder=2` keeps 2.34 / 2.86 / 3.09 for 5 / 30 / 92 sets
(1 / 9 / 40 shapes) and adds x1.41 and x2.83.
"""

import ml_collections

from experiments.configs import common, lit_train291

# stage -> (factor ranges, predecessor, official epochs relative to LIT's).
STAGES = {
    "lit": (((1.0, 4.0),), "", 1.0),
    "clit2": (((1.0, 4.0), (1.0, 4.0)), "lit", 1.0),
    "clit3": (((1.0, 4.0), (1.0, 4.0), (1.0, 2.0)), "clit2", 1.5),
}
# The whole schedule in liif_train291's 90 minutes (docstring): a LIT step's seconds on 2 unloaded cores, and
# each stage's mean batch cost in LIT steps.
LIT_STEP_S = 3.5
BATCH_COST = {"lit": 1.0, "clit2": 2.5, "clit3": 3.6}


def equal_budget_steps(stage: str, budget_s: float) -> int:
  """Steps of `stage` when the schedule's budget is split as the official epochs, rounded to a multiple of 5."""
  share = STAGES[stage][2] / sum(s[2] for s in STAGES.values())
  return int(5 * round(budget_s * share / (LIT_STEP_S * BATCH_COST[stage]) / 5))


def get_config(arg=None):
  flags, stage = common.parse_arg(arg, "clit_train291", choices=tuple(STAGES), flags=("small", "full"))
  stage = stage or "clit3"
  ranges, previous, share = STAGES[stage]
  c = lit_train291.get_config()
  c.model.num_stages = len(ranges)
  c.data.protocol = "cascade"
  c.data.stage_ranges = ranges
  c.data.alternate = True  # batches cycle K, 1, ..., K - 1 stages (the official counter)
  c.data.scale_ladder = 1  # 0: the official continuous factors (a compiled step per batch)
  if "full" in flags:  # each stage lit_train291's budget, CLIT3 1.5 times it
    c.train.update(steps=int(round(c.train.steps * share)), budget_s=c.train.budget_s * share)
  else:  # the whole schedule in lit_train291's (= liif_train291's) budget
    c.train.steps = equal_budget_steps(stage, c.train.budget_s)  # 440, 175, 185
  c.cumulative = ml_collections.ConfigDict(dict(stage=stage, previous=previous))
  if "small" in flags:
    common.shrink_generalising(c)
    c.data.update(lr_size=8, queries=32)
    c.train.update(steps={"lit": 4, "clit2": 6, "clit3": 3}[stage], checkpoint_every=3)
  return c
