"""Run folders: Orbax checkpoint managers, restoring the newest readable checkpoint, the stored config.

A run folder holds `config.json` and `checkpoints/<step>/` (Orbax, written atomically: a temporary folder
renamed when complete). `restore_model` gives the model and its parameters for evaluation, upscaling or a
notebook without building an optimizer: it restores only the `params` subtree of the saved train state.
"""

from __future__ import annotations

import json
import pathlib

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from inrsr import models

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


def checkpoint_manager(workdir, keep: int | None = None) -> ocp.CheckpointManager:
  """The Orbax manager of `workdir/checkpoints` (synchronous saves; `keep` newest kept, None keeps all)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR, options=options)


def _restore_newest(manager: ocp.CheckpointManager, make_args):
  steps = sorted(manager.all_steps(), reverse=True)
  errors = []
  for step in steps:
    try:
      return manager.restore(step, args=make_args()), step
    except Exception as e:  # Orbax/tensorstore raise many types for damaged files.
      logging.error("checkpoint step %d in %s cannot be read (%s: %s); trying the previous one", step,
                    manager.directory, type(e).__name__, e)
      errors.append(f"step {step}: {type(e).__name__}: {e}")
  if steps:
    raise RuntimeError(f"no readable checkpoint in {manager.directory} (tried steps {steps}); refusing to start "
                       f"from scratch over them. Move the folder away to start a new run. Errors: {errors}")
  return None, None


def restore_latest(manager: ocp.CheckpointManager, abstract_state, iterator=None):
  """Restore the newest readable train state (and, if given, the data iterator's state into `iterator`).

  Returns:
    (state, step), or (None, None) when the manager holds no checkpoint.

  Raises:
    RuntimeError: checkpoints exist but none can be read.
  """
  def make_args():
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    return ocp.args.Composite(**items)

  restored, step = _restore_newest(manager, make_args)
  return (None, None) if restored is None else (restored["state"], step)


def save_config(config: ml_collections.ConfigDict, workdir) -> None:
  """Write `workdir/config.json` atomically."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  tmp = path.with_suffix(".tmp")
  tmp.write_text(config.to_json_best_effort(indent=2))
  tmp.replace(path)


def load_config(workdir) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained (or converted) with."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise ValueError(f"{path} not found: --workdir must be the folder of a training run or a converted checkpoint")
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e})") from e


def abstract_params(model):
  """Shapes and dtypes of a model's parameters (no allocation)."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0), *models.example_inputs(model))["params"])


def restore_model(workdir):
  """The model of a run, its newest parameters, the run's config and the checkpoint step.

  Only the `params` subtree of the saved state is read (no optimizer is built), so converted checkpoints and
  training runs restore alike.

  Args:
    workdir: a training run's or converted checkpoint's folder.

  Returns:
    (model, params, config, step).

  Raises:
    ValueError: the folder has no config or no checkpoint.
  """
  config = load_config(workdir)
  model = models.from_config(config.model)
  target = {"params": abstract_params(model)}
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  manager = checkpoint_manager(workdir)
  try:
    restored, step = _restore_newest(manager, lambda: ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                     restore_args=jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), target))))
  finally:
    manager.close()
  if restored is None:
    raise ValueError(f"{workdir}: no checkpoint to restore (train or convert first)")
  return model, restored["state"]["params"], config, step


def save_params(workdir, config: ml_collections.ConfigDict, params, step: int = 0) -> None:
  """Write a run folder holding only parameters (a converted checkpoint): config.json and checkpoints/<step>."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  manager = checkpoint_manager(workdir)
  try:
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})), force=True)
    manager.wait_until_finished()
  finally:
    manager.close()
  save_config(config, workdir)
