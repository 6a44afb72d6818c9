"""What every data protocol shares: the training data it returns, its schedule in steps, the scale checks."""

from __future__ import annotations

import math
from typing import NamedTuple

import grain
import ml_collections
import numpy as np


class TrainingData(NamedTuple):
  """A protocol's `training_data(config)`: the dataset and the run's schedule.

  Attributes:
    dataset: infinite, batched Grain dataset; its iterator is checkpointable (`get_state` / `set_state`).
    total_steps: steps the run trains (`train.steps`, else `train.epochs` epochs).
    steps_per_epoch: steps of one epoch (the optimizer's step schedule counts in them).
    pixels_per_step: HR pixels a step trains on (the pixels/s of the metrics).
  """

  dataset: grain.IterDataset
  total_steps: int
  steps_per_epoch: int
  pixels_per_step: int


class BlankExample(NamedTuple):
  """A protocol's `blank_example(config)`: one training example of the config's shapes, made on blank frames by
  the protocol's own example maker, for compiling the train step without data (`tools/aot.py`).

  Attributes:
    example: name -> array without the batch axis (the static `scale` entry dropped).
    stage_scales: the static stage factors the step is compiled for (the cascade's largest set), else None.
    hr_pixels: HR pixels an example trains on.
    steps_per_epoch: steps of one epoch, as the run's schedule counts them.
    total_steps: steps the run trains.
  """

  example: dict
  stage_scales: tuple | None
  hr_pixels: int
  steps_per_epoch: int
  total_steps: int


def blank_frame(h: int, w: int) -> np.ndarray:
  """An (h, w, 3) float32 frame of zeros (the image a blank example is cut from)."""
  return np.zeros((h, w, 3), np.float32)


def blank_result(config: ml_collections.ConfigDict, example: dict, hr_pixels: int, stage_scales=None,
                 steps: tuple[int, int] | None = None) -> BlankExample:
  """A `BlankExample` of an example dict (arrays as NumPy, the `scale` entry dropped).

  Args:
    config: the training config.
    example: the protocol's example.
    hr_pixels: HR pixels it trains on.
    stage_scales: static stage factors, if any.
    steps: (total steps, steps per epoch); None counts one example an epoch (the crop protocols, whose epoch
      length needs the data set's size: `schedule(config, 1, 1)`).

  Returns:
    The `BlankExample`.
  """
  total, per_epoch = schedule(config, 1, 1) if steps is None else steps
  example = {k: np.asarray(v) for k, v in example.items() if k != "scale"}
  return BlankExample(example, stage_scales, int(hr_pixels), int(per_epoch), int(total))


def check_scale(field: str, value, minimum: float = 1.0) -> float:
  """`value` as a float, checked to be a finite SR scale >= `minimum`.

  Args:
    field: the config field, named in the error (e.g. "data.scale").
    value: its value.
    minimum: the smallest value allowed (1: the LR is never larger than the HR).

  Returns:
    float(value).

  Raises:
    ValueError: naming the field, when the value is not a finite number >= minimum.
  """
  try:
    v = float(value)
  except (TypeError, ValueError):
    v = math.nan
  if not math.isfinite(v) or v < minimum:
    raise ValueError(f"{field}={value!r} must be a finite number >= {minimum:g} (the SR scale: HR size / LR size)")
  return v


def check_scale_range(scale_min, scale_max, fields: tuple[str, str] = ("data.scale", "data.scale_max")
                      ) -> tuple[float, float]:
  """A range of SR scales checked: both finite, scale_min >= 1, scale_max >= scale_min.

  Args:
    scale_min: the smallest scale.
    scale_max: the largest scale.
    fields: the two config fields, named in the error.

  Returns:
    (scale_min, scale_max) as floats.

  Raises:
    ValueError: naming the field that is out of range.
  """
  lo = check_scale(fields[0], scale_min)
  return lo, check_scale(fields[1], scale_max, lo)


def check_length(config: ml_collections.ConfigDict) -> None:
  """Check that `train.steps` and `train.epochs` are whole numbers >= 0, not both 0.

  Raises:
    ValueError: naming the field and what was expected.
  """
  for field in ("steps", "epochs"):
    value = config.train.get(field, 0)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"train.{field}={value!r} must be a whole number > 0 (or 0: train.steps=0 trains "
                       "train.epochs epochs)")
  if not config.train.get("steps", 0) and not config.train.get("epochs", 0):
    raise ValueError("train.steps=0 and train.epochs=0 leave nothing to train: set train.steps (or train.epochs) > 0")


def schedule(config: ml_collections.ConfigDict, examples: int, per_step: int, *,
             partial_step: bool = False) -> tuple[int, int]:
  """(total steps, steps per epoch) of a run: `train.steps` if set, else `train.epochs` epochs.

  An epoch is `examples` examples taken `per_step` at a time: floor(examples / per_step) steps, or with
  `partial_step` ceil (a last, partial step counts); at least 1.

  Args:
    config: the training config (`train.steps`, `train.epochs`).
    examples: examples in one epoch (images times `data.repeat`, or HR pixels).
    per_step: examples one step takes (the batch size, or batch size x pixels per frame).
    partial_step: count a last, partial step.

  Returns:
    (total steps, steps per epoch).
  """
  examples, per_step = int(examples), int(per_step)
  per_epoch = max(1, -(-examples // per_step) if partial_step else examples // per_step)
  steps = config.train.steps if config.train.steps else config.train.epochs * per_epoch
  return int(steps), per_epoch
