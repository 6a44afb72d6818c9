"""Protocol `patches` (the generalising models, LIIF's `sr-implicit-downsampled`): one random LR crop per image.

Each sample is `pipeline.make_patch_example` of one image (`pipeline.PatchSpec`: an LR crop of `data.lr_size`,
one scale uniform in [`data.scale`, `data.scale_max`], `data.queries` HR pixels); an epoch is one pass over the
images, `data.repeat` times (the official `repeat`).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np
from absl import logging

from inrsr.data import common, pipeline, sources

WHOLE_FRAMES = False
SCALE_SAMPLINGS = ("uniform",)


def patch_spec(config: ml_collections.ConfigDict) -> pipeline.PatchSpec:
  """The `pipeline.PatchSpec` of a config's `data` section."""
  d = config.data
  return pipeline.PatchSpec(lr_size=d.lr_size, scale_min=float(d.scale), scale_max=float(d.scale_max or d.scale),
                            queries=d.queries, augment=d.augment, quantize_lr=d.quantize_lr)


def validate(config: ml_collections.ConfigDict) -> None:
  """Check the crop settings (`data.lr_size`, `data.queries`, the scales) before any image is loaded.

  Raises:
    ValueError: naming the field and what was expected.
  """
  patch_spec(config)


def training_data(config: ml_collections.ConfigDict) -> common.TrainingData:
  """The run's dataset (`pipeline.patches_dataset` over the images of `data`) and schedule.

  Args:
    config: a training config of protocol `patches`, checked (`protocols.validate`).

  Returns:
    `common.TrainingData`; a step trains on B x `data.queries` HR pixels.
  """
  d = config.data
  items = sources.load_section(d, "data")
  logging.info("training on %d images (%s ...), protocol %s", len(items), ", ".join(n for n, _ in items[:4]),
               d.protocol)
  spec = patch_spec(config)
  steps, per_epoch = common.schedule(config, len(items) * d.get("repeat", 1), d.batch_size)
  dataset = pipeline.patches_dataset([im for _, im in items], spec, batch_size=d.batch_size,
                                     seed=config.train.seed, num_workers=d.num_workers)
  return common.TrainingData(dataset, steps, per_epoch, d.batch_size * spec.queries)


def blank_example(config: ml_collections.ConfigDict) -> common.BlankExample:
  """One example of the run's shapes, cut from a blank image just large enough for the crop at the top scale.

  Args:
    config: a training config of protocol `patches`, checked (`protocols.validate`).

  Returns:
    `common.BlankExample` (the schedule counts one image an epoch: the data set is not read).
  """
  spec = patch_spec(config)
  side = max(spec.lr_size, math.ceil(spec.lr_size * spec.scale_max))
  example = pipeline.make_patch_example(common.blank_frame(side, side), spec, np.random.default_rng(0))
  return common.blank_result(config, example, spec.queries)
