"""The evaluator registry: an evaluator kind -> the module under inrsr/evaluators that scores and renders it.

Kinds (`EVALUATORS`):
  * `frames` (`frames.py`): a run's images or frames under each evaluation protocol (fit, heldout, internal) at
    each scale and metric rule, next to bicubic; results.json, results.md and psnr_vs_scale.png.
  * `blind` (`blind.py`): a whole-clip model's run on clips degraded by its test recipe (BVSR-IK's scoring),
    next to bicubic and other runs' frame models; results.json and results.md.
  * `zero_shot` (`zero_shot.py`): a model fitted on each test image's LR alone (`experiments.evaluate_zeroshot`).
Every evaluator module has `KIND`, `markdown_table(results)` (its Markdown), `figures(results, workdir)` (the
files it writes beside results.md; none for some kinds) and `compare_cells(results, protocol, metric, source)`
(its row of `compare`); a run evaluator (frames, blind) also has `evaluate_run(workdir, model, params, config,
step, **options)`. Results carry `kind` (`schema`), and `markdown` renders any results dict by it.

Which evaluator scores a run (`for_model`): the one its model's kind maps to, by the batch keys the model takes
(`BY_BATCH_KEYS`: a whole-clip model, batch ("lrs",), is `blind`), else `frames`. Imports are lazy, so scoring
frames does not import the blind evaluator. The report part: `compare` (several results side by side: one table,
one figure) and `plots` (figures to files).
"""

from __future__ import annotations

import importlib
import json
import pathlib
from types import ModuleType

from inrsr import models
from inrsr.evaluators import schema
from inrsr.evaluators.schema import PREDICTIONS, RESULTS_JSON, RESULTS_MD, RESULTS_PNG  # noqa: F401 (re-exported)
from inrsr.train import checkpoints

# kind -> module path; the module has KIND, markdown_table, figures and compare_cells.
EVALUATORS = {
    "frames": "inrsr.evaluators.frames",
    "blind": "inrsr.evaluators.blind",
    "zero_shot": "inrsr.evaluators.zero_shot",
}
BY_BATCH_KEYS = {("lrs",): "blind"}  # a model's batch keys -> the evaluator of its runs
DEFAULT = "frames"  # every other model: queried per frame


def get(kind: str) -> ModuleType:
  """The evaluator module of a kind.

  Args:
    kind: a key of `EVALUATORS`.

  Returns:
    The module.

  Raises:
    ValueError: an unknown kind, naming the known ones.
  """
  if kind not in EVALUATORS:
    raise ValueError(f"evaluator {kind!r} is not registered; expected one of {sorted(EVALUATORS)}")
  return importlib.import_module(EVALUATORS[kind])


def for_model(model) -> str:
  """The evaluator kind of a model's runs: `BY_BATCH_KEYS` of its batch keys, else `DEFAULT`."""
  return BY_BATCH_KEYS.get(models.hook(model, "batch_keys"), DEFAULT)


def markdown(results: dict) -> str:
  """The Markdown of any results dict, by its kind (`schema.kind_of`)."""
  return get(schema.kind_of(results)).markdown_table(results)


def write(workdir, results: dict) -> None:
  """Write results.json, results.md and the kind's figures into `workdir`."""
  workdir = pathlib.Path(workdir)
  (workdir / RESULTS_JSON).write_text(json.dumps(results, indent=1))
  (workdir / RESULTS_MD).write_text(markdown(results))
  get(schema.kind_of(results)).figures(results, workdir)


def evaluate_run(workdir, *, scales=None, progress: bool = True, compare=(), clip_methods=None,
                 blind_overrides=None, cell_scale: float | None = None, save_predictions: bool = False) -> dict:
  """Evaluate the latest checkpoint of a run with the evaluator its model needs (`for_model`) and write the results.

  Args:
    workdir: the training run's folder.
    scales: frame models: scales to evaluate (default: the config's eval.scales); a whole-clip model refuses them.
    progress: progress bars.
    compare: with a whole-clip model, folders of frame-model runs scored on the same degraded input.
    clip_methods: with a whole-clip model, more whole-clip restorers scored on the same input
      (`blind.evaluate`; e.g. zero-shot VR-INR, `inrsr.infer.zero_shot.clip_restorer`).
    blind_overrides: with a whole-clip model, `eval.blind` fields that replace the run's (e.g. a central crop).
    cell_scale: generalising models' query cell factor: None, the model's test-time rule (HIIF's official
      clipping), which `upscale` applies too; 1.0, the plain cell 2 / size. Recorded as results["cell_rule"].
    save_predictions: frame models: also write each scored prediction (8 bits) and its LR under
      WORKDIR/predictions/<protocol>/x<scale>/ (`frames.evaluate_images`' `save_to`).

  Returns:
    The results dict written to results.json (results.md and the kind's figures beside it).

  Raises:
    ValueError: an option the run's evaluator does not take (e.g. --compare for a frame model), before any work.
  """
  workdir = pathlib.Path(workdir)
  model, params, config, step = checkpoints.restore_model(workdir)
  results = get(for_model(model)).evaluate_run(
      workdir, model, params, config, step, scales=scales, progress=progress, compare=compare,
      clip_methods=clip_methods, blind_overrides=blind_overrides, cell_scale=cell_scale,
      save_predictions=save_predictions)
  write(workdir, results)
  return results
