"""Cumulative training (CLIT): the stages of a schedule in order, each starting from the previous one's parameters.

A schedule is a list of (stage name, training config), e.g. LIT, CLIT2, CLIT3 (`experiments/configs/
clit_train291.py`). Stage i trains in `workdir/<name>` through `training.train`; a stage after the first gets
`train.init_from = workdir/<previous name>`, so a new stage starts from the previous stage's newest parameters
where paths and shapes match (the official `pre_train`; its new modules keep their initialisation, the
optimizer starts fresh). Running a schedule again resumes it exactly: a stage whose newest checkpoint is at
its last step is skipped, a stage with an earlier checkpoint resumes from it (its `init_from` is then unused),
and a stage stopped by `train.budget_s` stops the schedule there (run again to go on). Stage configs name their
predecessor (`cumulative.previous`), so a schedule can be given by its last stage's config name alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import ml_collections
from absl import logging

from inrsr.train import checkpoints, training

Schedule = Sequence[tuple[str, ml_collections.ConfigDict]]


def _get_config_function(name: str) -> tuple[Callable, str]:
  """(get_config, argument) of a config `NAME[:ARG]` (experiments/configs/NAME.py) or `PATH.py[:ARG]`."""
  head, sep, arg = name.partition(".py:")
  if sep:
    path = head + ".py"
  else:
    path, _, arg = name.partition(":")
  if path.endswith(".py") or "/" in path:
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if spec is None or not pathlib.Path(path).is_file():
      raise ValueError(f"config {name!r}: no file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  else:
    module = importlib.import_module(f"experiments.configs.{path}")
  return module.get_config, arg


def load_schedule(config: str, overrides: Mapping[str, Any] | None = None) -> Schedule:
  """The stages up to a config's stage, following `cumulative.previous` back to the first.

  Args:
    config: `NAME[:ARG]` (experiments/configs/NAME.py) or `PATH.py[:ARG]`, whose config has a `cumulative`
      section (`stage`, `previous`); the predecessor's config is the same file's with the stage token of ARG
      replaced by `previous` (the other tokens, e.g. `small`, kept).
    overrides: flat {"train.steps": 3, ...} applied to every stage (`config_flags.get_override_values`).

  Returns:
    [(stage name, config), ...] from the first stage to the named one.

  Raises:
    ValueError: a config without `cumulative.stage`, or predecessors that loop.
  """
  get_config, arg = _get_config_function(config)
  tokens = [t for t in arg.split(",") if t]
  chain, stage_arg = [], arg
  while True:
    c = get_config(stage_arg or None)
    if "cumulative" not in c or not c.cumulative.get("stage"):
      raise ValueError(f"config {config!r} (argument {stage_arg!r}) has no cumulative.stage: not a stage of a "
                       "cumulative schedule")
    if overrides:
      with c.unlocked():
        c.update_from_flattened_dict(dict(overrides))
    stage, previous = c.cumulative.stage, c.cumulative.get("previous", "")
    if stage in [n for n, _ in chain]:
      raise ValueError(f"config {config!r}: cumulative.previous loops back to stage {stage!r}")
    chain.append((stage, c))
    if not previous:
      return chain[::-1]
    seen = {n for n, _ in chain}
    stage_arg = ",".join([previous] + [t for t in tokens if t not in seen])


def stage_steps(config: ml_collections.ConfigDict) -> int:
  """A stage's total steps: `train.steps`, else its epochs in steps (which loads the training images)."""
  if config.train.steps:
    return int(config.train.steps)
  return training.training_data(config).total_steps


def train_schedule(stages: str | Schedule, workdir, *, overrides: Mapping[str, Any] | None = None,
                   only: Sequence[str] | None = None, progress: bool = True) -> dict[str, int]:
  """Train a cumulative schedule in `workdir/<stage>`, each stage from the previous one; resumes where it stopped.

  Args:
    stages: the schedule, [(stage name, config), ...] in order, or the config name of its last stage
      (`load_schedule`).
    workdir: the schedule's folder (one subfolder per stage).
    overrides: with a config name, flat field overrides for every stage (`load_schedule`).
    only: train only these stages (the others are neither trained nor checked); a stage's predecessor must
      then be complete in `workdir` already.
    progress: show tqdm progress bars.

  Returns:
    {stage name: its newest step} for the stages run or skipped; the schedule stopped early (a stage's
    `train.budget_s` ran out) when the last entry is below that stage's total.

  Raises:
    ValueError: duplicate or unknown stage names, or a stage whose `cumulative.previous` is not the stage
      before it.
  """
  if isinstance(stages, str):
    stages = load_schedule(stages, overrides)
  elif overrides:
    raise ValueError("overrides apply to a schedule given by config name; edit the given configs instead")
  names = [n for n, _ in stages]
  if not names or len(set(names)) != len(names):
    raise ValueError(f"stage names {names} must be non-empty and distinct")
  unknown = sorted(set(only or ()) - set(names))
  if unknown:
    raise ValueError(f"stages {unknown} are not in the schedule {names}")
  workdir = pathlib.Path(workdir)
  done = {}
  for i, (name, config) in enumerate(stages):
    previous = names[i - 1] if i else ""
    named = config.get("cumulative", {}).get("previous", None)
    if named is not None and named != previous:
      place = f"follows {previous!r}" if previous else "comes first"
      raise ValueError(f"stage {name!r} has cumulative.previous={named!r} but {place} in the schedule {names}")
    if only and name not in only:
      continue
    config = ml_collections.ConfigDict(config.to_dict())  # a copy (unlocked) the runner may edit
    if previous:
      config.train.init_from = os.fspath((workdir / previous).absolute())
    stage_dir = workdir / name
    total, last = stage_steps(config), checkpoints.latest_step(stage_dir)
    if last is not None and last >= total:
      logging.info("stage %s: complete (step %d of %d in %s), skipped", name, last, total, stage_dir)
      done[name] = last
      continue
    logging.info("stage %s: %s in %s%s", name, "resuming" if last else "starting", stage_dir,
                 f" from {config.train.init_from}" if config.train.get("init_from") and not last else "")
    state = training.train(config, stage_dir, progress=progress)
    done[name] = int(state["step"])
    if done[name] < total:
      logging.warning("stage %s stopped at step %d of %d (train.budget_s); run the schedule again to go on",
                      name, done[name], total)
      break
  return done
