"""Run folders: Orbax checkpoint managers, restoring the newest readable checkpoint, the stored config.

A run folder holds `config.json` and `checkpoints/<step>/` (Orbax, written atomically: a temporary folder
renamed when complete). `restore_model` gives the model and its parameters for evaluation, upscaling or a
notebook without building an optimizer: it restores only the `params` subtree of the saved train state. A
checkpoint that cannot be read is passed over for the previous one, with one log line that names the step used;
training renames it `<step>.corrupt-<n>` (`restore_latest`), so the steps it retrains replace it.
`check_resume` refuses a restart whose `model.*` fields differ from the stored config, naming them. Orbax's
INFO log lines are dropped (warnings and errors kept) unless INRSR_VERBOSE_ORBAX=1.
"""

from __future__ import annotations

import json
import logging as py_logging
import os
import pathlib
import sys

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from inrsr import models

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"
# Config sections whose fields set the train state's structure or shapes (a restart must keep them), and the
# fields of those sections that do not (the kernel implementation computes the same function).
STATE_SECTIONS = ("model",)
# Model fields a resumed run may change: how a kernel runs, and how a new run draws its first parameters.
STATELESS_FIELDS = ("model.kernel_impl", "model.param_init")
VERBOSE_ORBAX_ENV = "INRSR_VERBOSE_ORBAX"
# Orbax's package folder, as imported and with links resolved (log records carry the source file's path).
_ORBAX_DIRS = tuple({str(pathlib.Path(ocp.__file__).parents[1]) + os.sep,
                     str(pathlib.Path(ocp.__file__).resolve().parents[1]) + os.sep})


class _QuietOrbax(py_logging.Filter):
  """Drops log records below WARNING that come from Orbax's own source files."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or not record.pathname.startswith(_ORBAX_DIRS)


_QUIET_ORBAX = _QuietOrbax()


def set_orbax_verbose(verbose: bool) -> None:
  """Show (True) or hide (False, the default unless INRSR_VERBOSE_ORBAX=1) Orbax's INFO/DEBUG log lines.

  Orbax logs through absl, i.e. the python logger "absl" that inrsr's own messages use too, so its records
  are told apart by their source file rather than by logger name.

  Args:
    verbose: keep Orbax's records below WARNING.
  """
  logger = logging.get_absl_logger()
  if verbose:
    logger.removeFilter(_QUIET_ORBAX)
  else:
    logger.addFilter(_QUIET_ORBAX)  # A no-op when already there.


set_orbax_verbose(os.environ.get(VERBOSE_ORBAX_ENV, "") not in ("", "0"))


def _flatten(tree, prefix: str = "") -> dict:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def _plain(config) -> dict:
  """A config as plain JSON values (tuples become lists), so stored and new configs compare alike."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(config, default=str))


def check_compatible(stored, new) -> list[str]:
  """Compare a run's stored config with the config it is restarted with.

  Args:
    stored: the config the run was started with (`load_config`).
    new: the config of the restart.

  Returns:
    The sorted names of the changed fields that leave the train state's structure alone (train.steps,
    train.learning_rate, data.*, eval.*, ...): the restart may change them.

  Raises:
    ValueError: a field of `STATE_SECTIONS` (model.*, except `STATELESS_FIELDS`) differs, is added or is
      removed; the message names each with its stored and new value.
  """
  old, cur = _flatten(_plain(stored)), _flatten(_plain(new))
  missing = "<absent>"
  same = lambda k: json.dumps(old.get(k, missing)) == json.dumps(cur.get(k, missing))  # NaN equals NaN.
  changed = sorted(k for k in old.keys() | cur.keys() if not same(k))
  state = [k for k in changed if k.split(".")[0] in STATE_SECTIONS and k not in STATELESS_FIELDS]
  if state:
    diffs = "; ".join(f"{k}: stored {old.get(k, missing)!r}, now {cur.get(k, missing)!r}" for k in state)
    raise ValueError(f"the config differs from the run's stored {CONFIG_FILE} in fields that change the train "
                     f"state: {diffs}. Restart with the stored values (e.g. --config.{state[0]}=...) or use a new "
                     "--workdir")
  return changed


def check_resume(workdir, config: ml_collections.ConfigDict) -> list[str]:
  """`check_compatible` of a workdir's stored config with `config`, when the workdir holds checkpoints.

  Changed fields that are allowed are logged.

  Args:
    workdir: the run folder.
    config: the config of the restart.

  Returns:
    The allowed changed fields (empty for a new run).

  Raises:
    ValueError: see `check_compatible`.
  """
  workdir = pathlib.Path(workdir)
  ckpt = workdir / CHECKPOINT_DIR
  if not (workdir / CONFIG_FILE).exists() or not ckpt.is_dir() or not any(p.name.isdigit() for p in ckpt.iterdir()):
    return []
  changed = check_compatible(load_config(workdir), config)
  if changed:
    logging.warning("resuming %s with a config that differs from its stored %s in %s (allowed: the train state's "
                    "structure does not depend on them)", workdir, CONFIG_FILE, ", ".join(changed))
  return changed


def checkpoint_manager(workdir, keep: int | None = None) -> ocp.CheckpointManager:
  """The Orbax manager of `workdir/checkpoints` (synchronous saves; `keep` newest kept, None keeps all)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / CHECKPOINT_DIR, options=options)


class CheckpointError(RuntimeError):
  """A run folder's checkpoints exist but none can be read."""


def _first_line(e: Exception, limit: int = 160) -> str:
  """`Type: first line of the message`, cut at `limit` characters (TensorStore errors run to dozens of lines)."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  text = text if len(text) <= limit else text[:limit - 3] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _drop_closed_loop_callbacks() -> None:
  """Silence the echo of a failed restore: TensorStore reads still in flight call back into Orbax's event loop,
  closed by then, and each would print a traceback ('Event loop is closed') through `sys.unraisablehook`. Those,
  and only those, are dropped from now on."""
  previous = sys.unraisablehook
  if getattr(previous, "inrsr_drops_closed_loop", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.inrsr_drops_closed_loop = True
  sys.unraisablehook = hook


def _set_aside(directory: pathlib.Path, step: int) -> pathlib.Path:
  """Rename `directory/<step>` to `<step>.corrupt-<n>` (n from 1, the first free), a name Orbax does not read."""
  n = 1
  while (directory / f"{step}.corrupt-{n}").exists():
    n += 1
  target = directory / f"{step}.corrupt-{n}"
  (directory / str(step)).rename(target)
  return target


def _restore_newest(manager: ocp.CheckpointManager, make_args, only_step: int | None = None,
                    set_aside: bool = False):
  """The newest checkpoint that reads, and its step; with `set_aside`, the newer ones that do not are renamed
  `<step>.corrupt-<n>` (and the manager reloaded) so that the steps retrained after them replace them."""
  steps = sorted(manager.all_steps(), reverse=True)
  if only_step is not None:
    if only_step not in steps:
      raise ValueError(f"{manager.directory} has no checkpoint of step {only_step} (it has {sorted(steps)})")
    steps = [only_step]
  errors = []
  for step in steps:
    try:
      restored = manager.restore(step, args=make_args())
    except Exception as e:  # Orbax/tensorstore raise many types for damaged files.  pylint: disable=broad-except
      _drop_closed_loop_callbacks()
      errors.append((step, _first_line(e)))
      continue
    if errors:
      why = "; ".join(f"step {s}: {m}" for s, m in errors)
      if set_aside and jax.process_index() == 0:
        moved = ", ".join(_set_aside(pathlib.Path(manager.directory), s).name for s, _ in errors)
        logging.warning("%s: using checkpoint step %d; the newer ones cannot be read and are moved aside to %s, so "
                        "the steps retrained replace them (%s)", manager.directory, step, moved, why)
      else:
        logging.warning("%s: using checkpoint step %d; the newer ones cannot be read (%s)", manager.directory, step,
                        why)
      if set_aside:
        if jax.process_count() > 1:
          from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
          multihost_utils.sync_global_devices("inrsr_checkpoints_set_aside")
        manager.reload()
    return restored, step
  if steps:
    raise CheckpointError(f"no readable checkpoint in {manager.directory} (tried steps {steps}: "
                          f"{'; '.join(f'step {s}: {m}' for s, m in errors)}); refusing to start from scratch over "
                          "them. Move the folder away to start a new run")
  return None, None


def restore_latest(manager: ocp.CheckpointManager, abstract_state, iterator=None):
  """Restore the newest readable train state (and, if given, the data iterator's state into `iterator`).

  Newer checkpoints that cannot be read are renamed `<step>.corrupt-<n>` in the checkpoint folder (kept for a
  look, ignored by Orbax), so the run retrains those steps and saves them again.

  Returns:
    (state, step), or (None, None) when the manager holds no checkpoint.

  Raises:
    CheckpointError: checkpoints exist but none can be read.
  """
  def make_args():
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    return ocp.args.Composite(**items)

  restored, step = _restore_newest(manager, make_args, set_aside=True)
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


def restore_model(workdir, step: int | None = None):
  """The model of a run, its newest parameters (or those of `step`), the run's config and the checkpoint step.

  Only the `params` subtree of the saved state is read (no optimizer is built), so converted checkpoints and
  training runs restore alike.

  Args:
    workdir: a training run's or converted checkpoint's folder.
    step: the checkpoint to read (None: the newest readable one).

  Returns:
    (model, params, config, step).

  Raises:
    ValueError: the folder has no config or no checkpoint (of `step`).
    CheckpointError: checkpoints exist but none can be read.
  """
  config = load_config(workdir)
  model = models.from_config(config.model)
  target = {"params": abstract_params(model)}
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  manager = checkpoint_manager(workdir)
  try:
    restored, step = _restore_newest(manager, lambda: ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                     restore_args=jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), target))),
        only_step=step)
  finally:
    manager.close()
  if restored is None:
    raise ValueError(f"{workdir}: no checkpoint to restore (train or convert first)")
  return model, restored["state"]["params"], config, step


def latest_step(workdir) -> int | None:
  """The newest checkpoint step in a run folder, or None (no folder, no checkpoint)."""
  folder = pathlib.Path(workdir) / CHECKPOINT_DIR
  steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
  return max(steps) if steps else None


def init_steps(workdir) -> tuple[int, ...] | None:
  """Newest checkpoint steps of the runs `workdir` was started from through `train.init_from`, earliest first.

  A cumulative schedule (LIT -> CLIT2 -> CLIT3) trains each stage from the previous stage's newest checkpoint,
  so these steps and the run's own step together are the schedule's training.

  Args:
    workdir: a run folder.

  Returns:
    () for a run started from scratch, or None when a run of the chain is gone or holds no checkpoint (its
    steps are then unknown).

  Raises:
    ValueError: the chain of `init_from` folders loops.
  """
  steps, seen = [], {pathlib.Path(workdir).resolve()}
  init_from = lambda run: load_config(run).get("train", {}).get("init_from", "")
  source = init_from(workdir)
  while source:
    path = pathlib.Path(source)
    if path.resolve() in seen:
      raise ValueError(f"{workdir}: train.init_from loops back to {source}")
    seen.add(path.resolve())
    step = latest_step(path) if (path / CONFIG_FILE).is_file() else None
    if step is None:
      logging.warning("%s: train.init_from=%s is gone or holds no checkpoint, so its steps are unknown", workdir,
                      source)
      return None
    steps.append(step)
    source = init_from(path)
  return tuple(reversed(steps))


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
