"""Protocols `fit` and `internal` (SR-INR / VR-INR): whole frames, B x P random HR pixels per step.

`fit` trains on the frames of `data` themselves; `internal` replaces each frame by its LR at `data.internal_scale`
first, so no HR pixel is ever seen (`pipeline.internal_frames`, DESIGN.md, Training protocols). Examples are
`pipeline.make_example`'s; an epoch is one pass over the frames' HR pixels.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging

from inrsr import coords
from inrsr.data import common, pipeline, sources

FIT = "fit"  # the frames themselves
INTERNAL = "internal"  # their LR at data.internal_scale

WHOLE_FRAMES = True  # trains on whole frames (`load_frames`), the frames its evaluation scores
SCALE_SAMPLINGS = pipeline.SCALE_SAMPLINGS


def validate(config: ml_collections.ConfigDict) -> None:
  """Check what this protocol adds to the common checks: `data.internal_scale` >= 1 for `internal`.

  Raises:
    ValueError: naming the field and what was expected.
  """
  if config.data.protocol == INTERNAL:
    common.check_scale("data.internal_scale", config.data.internal_scale)


def load_frames(config: ml_collections.ConfigDict) -> tuple[list[np.ndarray], list[float], list[str]]:
  """The frames a run trains on (for `internal` their LR), their t, and their names.

  Args:
    config: a training config of protocol `fit` or `internal`.

  Returns:
    (frames (H_i, W_i, 3) float32, t per frame, name per frame).
  """
  d = config.data
  items = sources.load_section(d, "data")
  names = [n for n, _ in items]
  frames = [im for _, im in items]
  if d.protocol == INTERNAL:
    frames = pipeline.internal_frames(frames, d.internal_scale, modcrop=bool(d.get("modcrop", False)))
  return frames, sources.image_times(config, len(frames)), names


def example_spec(config: ml_collections.ConfigDict, frames) -> pipeline.ExampleSpec:
  """The `pipeline.ExampleSpec` of a config's `data` section for these training frames (their LR padding)."""
  d = config.data
  scale_max = d.scale_max if d.scale_max else d.scale
  return pipeline.ExampleSpec(scale_min=float(d.scale), scale_max=float(scale_max), pixels=d.pixels_per_frame,
                              crop=d.crop, modcrop=bool(d.get("modcrop", False)), augment=d.augment,
                              lr_pad=pipeline.lr_pad_shape(frames, float(d.scale), d.crop),
                              scale_sampling=d.get("scale_sampling", "uniform"))


def schedule(config: ml_collections.ConfigDict, frames) -> tuple[int, int]:
  """(total steps, steps per epoch): an epoch is one pass over the frames' HR pixels (a crop counts crop**2).

  The models train on B x P random pixels per step, so an epoch is ceil(pixels / (B * P)) steps
  (`common.schedule`).
  """
  d = config.data
  pixels = sum((d.crop * d.crop) if d.crop else f.shape[0] * f.shape[1] for f in frames)
  return common.schedule(config, pixels, d.batch_size * d.pixels_per_frame, partial_step=True)


def training_data(config: ml_collections.ConfigDict) -> common.TrainingData:
  """The run's dataset (`pipeline.training_dataset` over `load_frames`) and schedule (`schedule`).

  Args:
    config: a training config of protocol `fit` or `internal`, checked (`protocols.validate`).

  Returns:
    `common.TrainingData`; a step trains on B x P HR pixels.
  """
  d = config.data
  frames, times, names = load_frames(config)
  logging.info("training on %d frames (%s), protocol %s", len(frames), ", ".join(names[:8]), d.protocol)
  spec = example_spec(config, frames)
  steps, per_epoch = schedule(config, frames)
  dataset = pipeline.training_dataset(frames, spec, batch_size=d.batch_size, seed=config.train.seed,
                                      times=times, num_workers=d.num_workers)
  return common.TrainingData(dataset, steps, per_epoch, d.batch_size * d.pixels_per_frame)


def blank_example(config: ml_collections.ConfigDict) -> common.BlankExample:
  """One example of the run's shapes on a blank copy of its largest frame (`sources.frame_sizes`: headers only).

  For `internal` the frames are each frame's LR at `data.internal_scale`, as `load_frames` makes them.

  Args:
    config: a training config of protocol `fit` or `internal`, checked (`protocols.validate`).

  Returns:
    `common.BlankExample`, with the run's schedule (`schedule`).
  """
  d = config.data
  sizes = sources.frame_sizes(d, "data")
  if d.protocol == INTERNAL:
    sizes = [coords.scaled_size(h, w, float(d.internal_scale))[:2] for h, w in sizes]
  frames = [np.broadcast_to(np.float32(0), (h, w, 3)) for h, w in sizes]
  h, w = max(sizes, key=lambda s: s[0] * s[1])
  example = pipeline.make_example(common.blank_frame(h, w), 0.0, example_spec(config, frames),
                                  np.random.default_rng(0))
  return common.blank_result(config, example, d.pixels_per_frame, steps=schedule(config, frames))
