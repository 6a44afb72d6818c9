"""Official PyTorch checkpoints -> inrsr runs: `pth.load` reads .pth without torch, one converter per model.

A converter module has `convert(checkpoint) -> (model_config dict with "name", flax params)`. The official
LIIF, HIIF and CLIT files are `{'model': {'name', 'args', 'sd'}, ...}` and name their model; BVSR-IK's is a bare
state_dict, so its model must be named (`model="bvsr_ik"`).
"""

from __future__ import annotations

import importlib

import ml_collections

from inrsr import checkpoints
from inrsr.convert import pth

CONVERTERS = {
    "liif": "inrsr.convert.liif",
    "hiif": "inrsr.convert.hiif",
    "clit": "inrsr.convert.clit",
    "bvsr_ik": "inrsr.convert.bvsr_ik",
}


def read_checkpoint(path, model: str | None = None) -> tuple[str, dict, dict]:
  """Read and convert an official checkpoint file.

  Args:
    path: the .pth file.
    model: the model name when the file does not say it (bare state_dicts); checked against the file otherwise.

  Returns:
    (model name, model config dict, params).

  Raises:
    ValueError: unreadable file, unknown or mismatched model, or a layout the converter does not recognise.
  """
  obj = pth.load(path)
  named = None
  if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "name" in obj["model"]:
    named = obj["model"]["name"]
  name = model or named
  if name is None:
    raise ValueError(f"{path}: the file does not name its model (a bare state_dict); pass the model name, one "
                     f"of {sorted(CONVERTERS)}")
  if named is not None and model is not None and named != model:
    raise ValueError(f"{path}: the file holds a {named!r} model, not {model!r}")
  if name not in CONVERTERS:
    raise ValueError(f"{path}: model {name!r} has no converter; expected one of {sorted(CONVERTERS)}")
  try:
    model_config, params = importlib.import_module(CONVERTERS[name]).convert(obj)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
  return name, model_config, params


def convert_to_run(path, workdir, base_config: ml_collections.ConfigDict, model: str | None = None):
  """Write an inrsr run folder from an official checkpoint, for `evaluate` and `upscale` to use as they are.

  Args:
    path: the .pth file.
    workdir: the run folder to write (config.json and checkpoints/0 with the parameters).
    base_config: the run's config (protocols, evaluation sets); its `model` section is replaced by the
      converted model's.
    model: the model name for files that do not name it.

  Returns:
    The config written.
  """
  name, model_config, params = read_checkpoint(path, model)
  config = ml_collections.ConfigDict(base_config.to_dict())
  config.model = ml_collections.ConfigDict({**model_config, "name": name})
  config.converted_from = str(path)
  checkpoints.save_params(workdir, config, params)
  return config
