"""Data protocols by name: `data.protocol` -> the module that checks a config and makes its training data.

Every protocol module exports `validate(config)` (the checks it adds, before anything is loaded),
`training_data(config)` (-> `common.TrainingData`: dataset, total steps, steps per epoch, HR pixels per step),
`blank_example(config)` (-> `common.BlankExample`: one example of the run's shapes made on blank frames, to
compile the train step without data), `WHOLE_FRAMES` (it trains on whole frames, `load_frames`, which its
evaluation scores) and `SCALE_SAMPLINGS` (the `data.scale_sampling` values it reads). This registry is the one
place that names the protocols; a new protocol is a module and a line here.

  * `fit`, `internal` (`fitting`): SR-INR / VR-INR, whole frames, B x P random HR pixels per step.
  * `patches` (`patches`): the generalising models, one random LR crop per image.
  * `clips` (`clips`): BVSR-IK, pseudo-videos cut from images.
  * `cascade` (`cascade`): CLIT's cumulative training, one scale set per batch.
"""

from __future__ import annotations

import types

import ml_collections
import numpy as np

from inrsr.data import cascade, clips, common, fitting, patches

PROTOCOLS: dict[str, types.ModuleType] = {
    "fit": fitting,
    "internal": fitting,
    "patches": patches,
    "clips": clips,
    "cascade": cascade,
}

TrainingData = common.TrainingData


def _names(names) -> str:
  names = [repr(n) for n in names]
  return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def get(name: str) -> types.ModuleType:
  """The module of protocol `name`.

  Raises:
    ValueError: an unknown name, listing every protocol.
  """
  if name not in PROTOCOLS:
    raise ValueError(f"data.protocol={name!r} must be one of {', '.join(repr(n) for n in PROTOCOLS)}")
  return PROTOCOLS[name]


def validate(config: ml_collections.ConfigDict) -> None:
  """Check a training config before any image is loaded or anything compiled.

  Every protocol needs `train.steps` and `train.epochs` whole numbers >= 0, not both 0 (`common.check_length`),
  `data.scale` >= 1 (finite) and, when set (non-zero), `data.scale_max` >= `data.scale`
  (`common.check_scale_range`), and a `data.scale_sampling` it reads; then the protocol's own `validate`.

  Args:
    config: a training config.

  Raises:
    ValueError: naming the field and what was expected.
  """
  common.check_length(config)
  d = config.data
  name = d.protocol
  module = get(name)
  common.check_scale_range(d.scale, d.scale_max if d.get("scale_max", 0) else d.scale)
  sampling = d.get("scale_sampling", "uniform")
  if sampling not in module.SCALE_SAMPLINGS:
    readers = [n for n, m in PROTOCOLS.items() if len(m.SCALE_SAMPLINGS) > 1]
    raise ValueError(f"data.scale_sampling={sampling!r} is read by the protocols {_names(readers)} only; protocol "
                     f"{name!r} draws its scales uniformly (set data.scale_sampling='uniform')"
                     if module.SCALE_SAMPLINGS == ("uniform",) else
                     f"data.scale_sampling={sampling!r} must be one of {module.SCALE_SAMPLINGS}")
  module.validate(config)


def training_data(config: ml_collections.ConfigDict) -> common.TrainingData:
  """The training dataset a config asks for and its schedule, after `validate`.

  Args:
    config: a training config; `data.protocol` picks the module.

  Returns:
    `common.TrainingData` (dataset, total_steps, steps_per_epoch, pixels_per_step), a named tuple.
  """
  validate(config)
  return get(config.data.protocol).training_data(config)


def blank_example(config: ml_collections.ConfigDict) -> common.BlankExample:
  """One training example of a config's shapes, made by its protocol's own example maker on blank frames.

  Nothing is decoded but image headers (`fit`/`internal`: the largest frame's size); `tools/aot.py` compiles the
  train step from it ahead of time.

  Args:
    config: a training config; checked first (`validate`).

  Returns:
    `common.BlankExample` (example, static stage scales, HR pixels per example, steps per epoch, total steps).
  """
  validate(config)
  return get(config.data.protocol).blank_example(config)


def load_frames(config: ml_collections.ConfigDict) -> tuple[list[np.ndarray], list[float], list[str]]:
  """The whole frames a run of a whole-frame protocol (`WHOLE_FRAMES`) trains on, their t, and their names.

  Raises:
    ValueError: the protocol trains on crops, naming the protocols that train on whole frames.
  """
  module = get(config.data.protocol)
  if not module.WHOLE_FRAMES:
    whole = [n for n, m in PROTOCOLS.items() if m.WHOLE_FRAMES]
    raise ValueError(f"data.protocol={config.data.protocol!r} trains on crops, not whole frames (those of "
                     f"{_names(whole)})")
  return module.load_frames(config)
