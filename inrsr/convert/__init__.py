"""Official PyTorch checkpoints -> inrsr runs: `pth.load` reads .pth without torch, one converter per model.

A converter module has `convert(checkpoint) -> (model_config dict with "name", flax params)`. The official
LIIF, HIIF and CLIT files are `{'model': {'name', 'args', 'sd'}, ...}` and name their model; BVSR-IK's is a bare
state_dict, so its model must be named (`model="bvsr_ik"`). A conversion writes only into a new or empty
folder, or with `overwrite` over an earlier conversion: never over a trained run (`check_workdir`).
"""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil

import ml_collections

from inrsr.convert import pth
from inrsr.train import checkpoints

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


def check_workdir(workdir, overwrite: bool = False) -> bool:
  """Whether `convert_to_run` may write into `workdir`, before any work.

  A missing or empty folder is written; with `overwrite`, so is a folder that holds only an earlier conversion
  (config.json with `converted_from` and checkpoint step 0, perhaps evaluation outputs), whose config.json and
  checkpoints are then replaced. Anything else (a trained run, a zero-shot fit, other files) is never written.

  Args:
    workdir: the run folder to write.
    overwrite: replace an earlier conversion.

  Returns:
    True when an earlier conversion is to be replaced.

  Raises:
    FileExistsError: naming the folder and what it holds.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.exists():
    return False
  if not workdir.is_dir():
    raise FileExistsError(f"--workdir={workdir} is a file, not a folder for the converted run")
  entries = sorted(p.name for p in workdir.iterdir())
  if not entries:
    return False
  config_path = workdir / checkpoints.CONFIG_FILE
  try:
    stored = json.loads(config_path.read_text()) if config_path.is_file() else None
  except (OSError, ValueError):
    stored = None
  ckpt = workdir / checkpoints.CHECKPOINT_DIR
  steps = sorted(p.name for p in ckpt.iterdir()) if ckpt.is_dir() else []
  converted = (isinstance(stored, dict) and "converted_from" in stored and steps in ([], ["0"])
               and not {"metrics.jsonl", "tensorboard"} & set(entries))  # what training writes
  if not converted:
    listed = ", ".join(entries[:4]) + (" ..." if len(entries) > 4 else "")
    what = "a trained run" if isinstance(stored, dict) else f"files that are not an inrsr run ({listed})"
    raise FileExistsError(f"--workdir={workdir} holds {what}: a conversion never writes over it; give a new or "
                          "empty folder")
  if not overwrite:
    raise FileExistsError(f"--workdir={workdir} holds a run converted from {stored['converted_from']}: give a new "
                          "folder, or --overwrite to replace it")
  return True


def convert_to_run(path, workdir, base_config: ml_collections.ConfigDict, model: str | None = None,
                   overwrite: bool = False):
  """Write an inrsr run folder from an official checkpoint, for `evaluate` and `upscale` to use as they are.

  Args:
    path: the .pth file.
    workdir: the run folder to write (config.json and checkpoints/0 with the parameters): a new or empty
      folder, or (with `overwrite`) an earlier conversion (`check_workdir`).
    base_config: the run's config (protocols, evaluation sets); its `model` section is replaced by the
      converted model's.
    model: the model name for files that do not name it.
    overwrite: replace an earlier conversion in `workdir`; a trained run is never written over.

  Returns:
    The config written.

  Raises:
    FileExistsError: `workdir` holds a trained run or other files, or an earlier conversion without `overwrite`.
    ValueError: see `read_checkpoint`.
  """
  replace = check_workdir(workdir, overwrite)  # before the file is read
  name, model_config, params = read_checkpoint(path, model)
  config = ml_collections.ConfigDict(base_config.to_dict())
  config.model = ml_collections.ConfigDict({**model_config, "name": name})
  config.converted_from = str(path)
  if replace:  # the new parameters are in hand: drop the earlier conversion's
    shutil.rmtree(pathlib.Path(workdir) / checkpoints.CHECKPOINT_DIR, ignore_errors=True)
    (pathlib.Path(workdir) / checkpoints.CONFIG_FILE).unlink(missing_ok=True)
  checkpoints.save_params(workdir, config, params)
  return config
