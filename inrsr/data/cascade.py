"""CLIT's cumulative-training batches (protocol `cascade`): one scale set per batch, stage counts cycling by batch.

The official `sr-implicit-downsampled-cascaded` wrapper (`../shared/baselines.md` §5.3, CLIT
`datasets/cascaded_wrappers.py`) as a Grain pipeline. Batch k of a run with K factor ranges uses n stages, n
following the cycle (K, 1, 2, ..., K - 1) by batch index (the official counter: CLIT2 alternates 2, 1; CLIT3
cycles 3, 1, 2); its n factors s_i ~ U(lo_i, hi_i) come from the first n ranges and are shared by every row.
If lr * prod(s) exceeds the smallest side m of the batch's images, s_1 is lowered so that lr * prod(s) = m
(the official rescale; s_1 may fall below 1). Every row is then `pipeline.make_patch_example` at the total scale
prod(s): an HR crop of side round(lr * prod(s)) (`clit.stage_sizes`, the model's final grid) at a random
position, flips and transposes, its antialiased bicubic downsampling to lr (8-bit), and `queries` HR pixels
without replacement with their final HR cell. The batch adds `stage_scales` (B, n) float32, equal rows: the
training loop passes them to the model as its static `scales`.

Departure, the scale ladder (`data.scale_ladder`, levels per octave; 0 = the official continuous draw).
XLA compiles one train step per distinct static `scales` tuple (the stage grids round(lr * prod(s[:i])) are
array shapes), so the official draw compiles a new step for every batch: tens of seconds each on 2 CPU cores,
more than the step itself (notes in `experiments/configs/clit_train291.py`). With a ladder of q levels, each
factor is its official draw rounded (in log2) to the nearest power of 2^(1/q) within its range, and the s_1
rescale lowers prod(s) to the largest power of 2^(1/q) <= m / lr (s_1 then a power of 2^(1/q) as well, possibly
below 1). Every factor thus lies on the ladder 2^(j/q) and a run compiles a bounded set of steps: with q = 1
(factors 1, 2, 4; 1, 2 for U(1, 2)) at most 3 one-stage tuples, and multi-stage tuples bounded by the few s_1
rungs the image sizes allow times the rungs of the other factors (over 1400 train291 batches: 3 / 12 / 28
tuples for LIT / CLIT2 / CLIT3 instead of 1217 / 1330 / 1367; `experiments/configs/clit_train291.py`). The
ladder keeps the official rounding of every grid and the crop/LR/query rules; the factors become discrete (a
rung takes the official probability of the interval that rounds to it) and the rescale rounds down, which
lowers the mean total scale on train291 (2.49 instead of 3.11 for CLIT2). Only the stage grids reach the
compiled program (the last factor only sets the crop and the cells, which are data), so JAX's persistent
compilation cache compiles once per distinct grid shape and only retraces for another tuple of that shape.

Determinism: the image order is Grain's seeded shuffle (reshuffled every epoch); batch k's scale set and the
rows' crops come from the generator Grain's `random_map` derives from the seed and k, so the stream is a
function of the seed, and the iterator's state (`get_state` / `set_state`, saved in every checkpoint) is its
position. In a run of N processes each builds only its rows p, p + N, ... of the global batch, with the scale
set (and the smallest side) of the whole global batch, so every process compiles the same step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import grain
import ml_collections
import numpy as np
from absl import logging

from inrsr.data import common, pipeline, sources
from inrsr.models import clit

PROTOCOL = "cascade"

WHOLE_FRAMES = False
SCALE_SAMPLINGS = ("uniform",)


@dataclasses.dataclass(frozen=True)
class CascadeSpec:
  """The `cascade` protocol's settings (CLIT's cumulative training).

  Attributes:
    ranges: (lo, hi) of each stage's factor, e.g. ((1, 4), (1, 4), (1, 2)) for CLIT3; lo >= 1.
    lr_size: LR crop side (48).
    queries: HR pixels sampled per crop, without replacement (2304 = 48^2); at most lr_size^2.
    augment: random flips and transposes of each crop.
    quantize_lr: round the LR to 8 bits (the official code resizes uint8 images with Pillow).
    alternate: cycle the number of stages by batch (K, 1, ..., K - 1) as the official counter; False uses all
      K stages in every batch.
    ladder: levels per octave of the factor ladder (see the module docstring); 0 draws the factors
      continuously, as the official code (one compiled step per batch).
  """

  ranges: tuple[tuple[float, float], ...] = ((1.0, 4.0),)
  lr_size: int = 48
  queries: int = 2304
  augment: bool = True
  quantize_lr: bool = True
  alternate: bool = True
  ladder: int = 0

  def __post_init__(self):
    ranges = tuple((float(lo), float(hi)) for lo, hi in self.ranges)
    object.__setattr__(self, "ranges", ranges)
    if not ranges:
      raise ValueError("data.stage_ranges is empty: give one (lo, hi) factor range per stage")
    for i, (lo, hi) in enumerate(ranges):
      if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 1 or hi < lo:
        raise ValueError(f"data.stage_ranges[{i}]=({lo:g}, {hi:g}) must satisfy 1 <= lo <= hi (finite)")
    pipeline.PatchSpec(lr_size=self.lr_size, queries=self.queries)  # Its lr_size and queries checks.
    if int(self.ladder) != self.ladder or self.ladder < 0:
      raise ValueError(f"data.scale_ladder={self.ladder!r} must be an integer >= 0 (0: continuous factors)")
    if self.ladder:
      for i, (lo, hi) in enumerate(ranges):
        if not rungs(lo, hi, int(self.ladder)):
          raise ValueError(f"data.stage_ranges[{i}]=({lo:g}, {hi:g}) holds no power of 2^(1/{self.ladder}) "
                           f"(data.scale_ladder={self.ladder}): widen the range or raise the ladder")

  @property
  def cycle(self) -> tuple[int, ...]:
    """Stages per batch, by batch index modulo its length."""
    return stage_cycle(len(self.ranges), self.alternate)


def stage_cycle(num_ranges: int, alternate: bool = True) -> tuple[int, ...]:
  """The official counter's cycle: (K, 1, 2, ..., K - 1) stages for K ranges; (K,) without alternation.

  Args:
    num_ranges: K, the number of factor ranges (stages of the model).
    alternate: cycle as the official training does.

  Returns:
    Stages of batch k, for k modulo the length: (1,), (2, 1), (3, 1, 2), ...
  """
  return (num_ranges,) + (tuple(range(1, num_ranges)) if alternate else ())


def rungs(lo: float, hi: float, ladder: int) -> tuple[int, ...]:
  """Exponents j with lo <= 2^(j / ladder) <= hi (within 1e-9 in log2)."""
  first = math.ceil(ladder * math.log2(lo) - 1e-9)
  last = math.floor(ladder * math.log2(hi) + 1e-9)
  return tuple(range(first, last + 1))


def _f32(v: float) -> float:
  return float(np.float32(v))


def total_scale(scales: Sequence[float]) -> float:
  """prod(scales) multiplied in order in float64, as `clit.stage_sizes` does for the final grid."""
  prod = 1.0
  for s in scales:
    prod = prod * float(s)
  return prod


def hr_side(lr_size: int, scales: Sequence[float]) -> int:
  """The HR crop side round(lr_size * prod(scales)): the model's final grid (`clit.stage_sizes`)."""
  return clit.stage_sizes((lr_size, lr_size), scales)[-1][0]


def draw_scales(spec: CascadeSpec, num_stages: int, min_side: int, rng: np.random.Generator) -> tuple[float, ...]:
  """One batch's stage factors: draws from the first `num_stages` ranges, then the s_1 rescale.

  Args:
    spec: the CascadeSpec.
    num_stages: n, at most len(spec.ranges).
    min_side: the smallest side of the batch's HR images (>= spec.lr_size).
    rng: the batch's generator.

  Returns:
    n factors, each a float32 value (as a Python float), with hr_side(lr_size, factors) <= min_side and
    prod(factors) >= 1. With a ladder every factor is a power of 2^(1/ladder).
  """
  lr, q = spec.lr_size, int(spec.ladder)
  draws = [rng.uniform(lo, hi) for lo, hi in spec.ranges[:num_stages]]
  if q:
    exps = []
    for (lo, hi), s in zip(spec.ranges, draws):
      allowed = rungs(lo, hi, q)
      exps.append(min(max(math.floor(q * math.log2(s) + 0.5), allowed[0]), allowed[-1]))
    if lr * 2.0 ** (sum(exps) / q) > min_side:  # the s_1 rescale, onto the ladder
      top = math.floor(q * math.log2(min_side / lr) + 1e-9)
      while hr_side(lr, [_f32(2.0 ** (j / q)) for j in [top - sum(exps[1:])] + exps[1:]]) > min_side:
        top -= 1  # float32 rounding of the rungs pushed the crop past the image (never seen; kept safe)
      exps[0] = top - sum(exps[1:])
    scales = [_f32(2.0 ** (j / q)) for j in exps]
  else:
    if lr * total_scale(draws) > min_side:  # the official rescale of s_1
      draws[0] = draws[0] * (min_side / (total_scale(draws) * lr))
    scales = [_f32(s) for s in draws]
    while hr_side(lr, scales) > min_side:  # float32 rounding at a .5 boundary (never seen; kept safe)
      scales[0] = float(np.nextafter(np.float32(scales[0]), np.float32(0)))
  return tuple(scales)


def make_batch(item, rng: np.random.Generator, *, images: Sequence[np.ndarray], spec: CascadeSpec,
               rows: Sequence[int]) -> dict:
  """One cumulative-training batch from (batch index, image indices) and the batch's generator.

  Args:
    item: (k, (B,) image indices) of global batch k.
    rng: the batch's generator (Grain's, from the seed and k).
    images: the training images.
    spec: the CascadeSpec.
    rows: the rows of the global batch this process builds.

  Returns:
    dict with lr (R, lr, lr, 3), coords (R, Q, 2) (x, y), cells (R, Q, 2), rgb (R, Q, 3), scale (R,) (the total
    scale side / lr), stage_scales (R, n) float32 with equal rows, for the R = len(rows) rows.
  """
  k, ids = item
  ids = [int(i) for i in np.asarray(ids).reshape(-1)]
  cycle = spec.cycle
  n = cycle[int(k) % len(cycle)]
  min_side = min(min(images[i].shape[:2]) for i in ids)
  scales = draw_scales(spec, n, min_side, rng)
  row_seeds = rng.integers(0, 2 ** 63, size=len(ids))
  total = max(total_scale(scales), 1.0)  # >= 1 but for float32 rounding when m == lr (same crop side)
  patch = pipeline.PatchSpec(lr_size=spec.lr_size, scale_min=total, scale_max=total, queries=spec.queries,
                             augment=spec.augment, quantize_lr=spec.quantize_lr)
  examples = [pipeline.make_patch_example(images[ids[r]], patch, np.random.default_rng(row_seeds[r])) for r in rows]
  batch = {key: np.stack([e[key] for e in examples]) for key in examples[0]}
  batch["stage_scales"] = np.tile(np.asarray(scales, np.float32), (len(rows), 1))
  return batch


def _with_index(k, ids):
  return k, ids


def cascade_dataset(images: Sequence[np.ndarray], spec: CascadeSpec, *, batch_size: int, seed: int,
                    num_workers: int = 0, shard: tuple[int, int] | None = None) -> grain.IterDataset:
  """Infinite Grain dataset of cumulative-training batches, deterministic for a seed.

  Images are batched first (a seeded shuffle, repeated), then a batch-level random map draws the batch's scale
  set and cuts every crop (`make_batch`).

  Args:
    images: HR images (H_i, W_i, 3) float32 in [0, 1], each side >= spec.lr_size.
    spec: the CascadeSpec.
    batch_size: crops per global batch (over all processes).
    seed: shuffling and sampling seed.
    num_workers: Grain worker processes (0 = in-process).
    shard: (process index, process count); None reads them from the JAX runtime (`pipeline.process_shard`).

  Returns:
    IterDataset of batch dicts (`make_batch`) with batch_size / process count rows; its iterator is
    checkpointable (`get_state` / `set_state`).
  """
  small = [i for i, im in enumerate(images) if min(im.shape[:2]) < spec.lr_size]
  if small:
    raise ValueError(f"{len(small)} training images are smaller than data.lr_size={spec.lr_size} "
                     f"(first: index {small[0]}, {images[small[0]].shape[:2]})")
  index, count = pipeline.process_shard() if shard is None else shard
  if batch_size <= 0 or batch_size % count:
    raise ValueError(f"data.batch_size={batch_size} must be > 0 and a multiple of the {count} processes")
  make = functools.partial(make_batch, images=list(images), spec=spec, rows=tuple(range(index, batch_size, count)))
  ds = (grain.MapDataset.range(len(images)).seed(seed).shuffle().repeat()
        .batch(batch_size, drop_remainder=True)
        .map_with_index(_with_index)
        .random_map(make))
  it = ds.to_iter_dataset(pipeline.READ_OPTIONS)
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return it


def cascade_spec(config: ml_collections.ConfigDict) -> CascadeSpec:
  """The `cascade` protocol's settings from a config's `data` section.

  Fields: `stage_ranges` (one (lo, hi) per stage), `lr_size`, `queries`, `augment`, `quantize_lr`,
  `alternate` (default True), `scale_ladder` (default 0: continuous).
  """
  d = config.data
  if "stage_ranges" not in d:
    raise ValueError(f"data.protocol={PROTOCOL!r} needs data.stage_ranges (one (lo, hi) factor range per stage)")
  return CascadeSpec(ranges=tuple(tuple(r) for r in d.stage_ranges), lr_size=d.lr_size, queries=d.queries,
                     augment=d.augment, quantize_lr=d.quantize_lr, alternate=bool(d.get("alternate", True)),
                     ladder=d.get("scale_ladder", 0))


def validate(config: ml_collections.ConfigDict) -> None:
  """Check the cascade's settings (`cascade_spec`) and that `model.num_stages` has a stage for every range.

  Raises:
    ValueError: naming the field and what was expected.
  """
  spec = cascade_spec(config)
  stages = config.model.get("num_stages", 1)
  if len(spec.ranges) > stages:
    raise ValueError(f"data.stage_ranges has {len(spec.ranges)} ranges but model.num_stages={stages}")


def training_data(config: ml_collections.ConfigDict) -> common.TrainingData:
  """The run's dataset (`cascade_dataset` over the images of `data`) and schedule.

  An epoch is the images `data.repeat` times over in batches, as `patches` (`common.schedule`).

  Args:
    config: a training config of protocol `cascade`, checked (`protocols.validate`).

  Returns:
    `common.TrainingData`; a step trains on B x `data.queries` HR pixels.
  """
  d = config.data
  spec = cascade_spec(config)
  items = sources.load_section(d, "data")
  logging.info("training on %d images (%s ...), protocol %s: ranges %s, stages per batch %s, ladder %d",
               len(items), ", ".join(n for n, _ in items[:4]), PROTOCOL, spec.ranges, spec.cycle, spec.ladder)
  steps, per_epoch = common.schedule(config, len(items) * d.get("repeat", 1), d.batch_size)
  dataset = cascade_dataset([im for _, im in items], spec, batch_size=d.batch_size, seed=config.train.seed,
                            num_workers=d.num_workers)
  return common.TrainingData(dataset, steps, per_epoch, d.batch_size * spec.queries)


def largest_scales(spec: CascadeSpec) -> tuple[float, ...]:
  """The cascade's largest scale set: every stage, each factor at the top of its range (or of its ladder)."""
  if spec.ladder:
    return tuple(_f32(2.0 ** (rungs(lo, hi, spec.ladder)[-1] / spec.ladder)) for lo, hi in spec.ranges)
  return tuple(_f32(hi) for _, hi in spec.ranges)


def blank_example(config: ml_collections.ConfigDict) -> common.BlankExample:
  """One example at the cascade's largest scale set (`largest_scales`, static in the compiled step), cut from a
  blank image just large enough for it.

  Args:
    config: a training config of protocol `cascade`, checked (`protocols.validate`).

  Returns:
    `common.BlankExample` with those stage scales (the schedule counts one image an epoch).
  """
  spec = cascade_spec(config)
  scales = largest_scales(spec)
  side = hr_side(spec.lr_size, scales)
  top = max(total_scale(scales), 1.0)
  patch = pipeline.PatchSpec(lr_size=spec.lr_size, scale_min=top, scale_max=top, queries=spec.queries,
                             augment=spec.augment, quantize_lr=spec.quantize_lr)
  example = pipeline.make_patch_example(common.blank_frame(side, side), patch, np.random.default_rng(0))
  return common.blank_result(config, example, spec.queries, stage_scales=scales)
