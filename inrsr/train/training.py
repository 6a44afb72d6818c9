"""Training: state, sharded train step, the loop, Orbax checkpoints that resume exactly, metrics files.

The train state is a plain dict {"step", "params", "opt_state"}. The step is `jax.jit`-compiled with
`NamedSharding` over a ("data", "model") mesh (`inrsr.train.sharding`): the batch sharded over `data`, the state
replicated except SR-INR's hash tables and their Adam moments, which `train.table_sharding` ("rows" or
"levels") shards over the `train.model_axis` devices of the `model` axis; the state is donated.
Orbax's CheckpointManager saves the state and the Grain iterator state together (atomically: a checkpoint is
written to a temporary folder and renamed), so a run started again in the same workdir resumes where it
stopped and reaches the same parameters as an uninterrupted run. A checkpoint that cannot be read is renamed
`<step>.corrupt-<n>` and the run resumes from the previous one (one line in the log), so the steps it retrains
replace it; if none can be read the run stops rather than starting over.
A restart whose `model.*` fields differ from the stored config.json is refused, naming them
(`checkpoints.check_resume`); the config is checked before any image is loaded (`validate_config`).
The training data comes from the module `inrsr.data.protocols` maps `data.protocol` to (`training_data`).
A non-finite loss, gradient or update stops the run before anything non-finite is saved.

Model hooks (generic, found on the model or its module): a model module's `init_params(model, key)` makes new
parameters instead of `model.init` (`models.init_params`); a model with a `training_loss(outputs, batch)` method
trains on it (`train.loss="model"`), which returns (loss, the prediction the batch PSNR is computed on).
A batch that carries `stage_scales` (CLIT's per-batch stage factors) passes them to the model as a static
`scales=` (one compiled step per distinct set). `train.init_from` starts a new run from another run's newest
parameters where paths and shapes match (`params_from`, the official CLIT `pre_train`).

Several processes (`inrsr.train.distributed`): every process runs `train` with the same config and workdir, reads
B / N examples of each global batch of B (`inrsr.data.pipeline.batched_dataset`), and the global batch is assembled with
`jax.make_array_from_process_local_data`; Orbax writes one checkpoint (plus each process's iterator state),
process 0 alone writes config.json and metrics; a time budget stops every process at process 0's step.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from inrsr import losses, models
from inrsr.data import protocols
from inrsr.train import checkpoints, sharding

METRICS_FILE = "metrics.jsonl"


class NonFiniteLossError(FloatingPointError):
  """Raised when the loss or gradient becomes NaN/inf; the last good checkpoint is kept."""


def make_mesh(model: int = 1) -> jax.sharding.Mesh:
  """A ("data", "model") mesh over all devices (even one), `model` devices on the model axis (`sharding`)."""
  return sharding.make_mesh(model)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Check a training config before any image is loaded or anything compiled (`data.protocols.validate`).

  Args:
    config: a training config.

  Raises:
    ValueError: naming the field and what was expected.
  """
  protocols.validate(config)


def load_training_frames(config: ml_collections.ConfigDict) -> tuple[list[np.ndarray], list[float], list[str]]:
  """HR frames a whole-frame protocol's run trains on (after its transformation), their t, and their names.

  `data.protocols.load_frames`: a protocol that trains on crops has none (a one-line error).
  """
  return protocols.load_frames(config)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int,
                   total: int | None = None) -> optax.GradientTransformation:
  """Adam with the papers' step schedule (the rate times `decay_rate` every `decay_epochs`), or with
  `train.schedule="cosine"` a cosine decay to 0 over the run's `total` steps (for short, budgeted runs).

  `train.warmup_steps` > 0 first ramps the rate linearly from `learning_rate * warmup_init` to `learning_rate`
  (the official HIIF/CLIT warm-up; the schedule above then starts after it, a cosine decaying over the rest of
  the run), and `train.clip_grad_norm` > 0 clips the global gradient norm before Adam.
  """
  t = config.train
  warmup = int(t.get("warmup_steps", 0) or 0)
  if warmup < 0:
    raise ValueError(f"train.warmup_steps={warmup} must be >= 0")
  if t.get("schedule", "step") == "cosine":
    if not total:
      raise ValueError("train.schedule='cosine' needs the run's total number of steps")
    if warmup >= total:
      raise ValueError(f"train.warmup_steps={warmup} must be below the run's {total} steps")
    schedule = optax.cosine_decay_schedule(t.learning_rate, decay_steps=total - warmup)
  elif t.decay_epochs:
    schedule = optax.exponential_decay(t.learning_rate, transition_steps=t.decay_epochs * steps_per_epoch,
                                       decay_rate=t.decay_rate, staircase=True)
  else:
    schedule = optax.constant_schedule(t.learning_rate)
  if warmup:
    ramp = optax.linear_schedule(t.learning_rate * float(t.get("warmup_init", 0.005)), t.learning_rate, warmup)
    schedule = optax.join_schedules([ramp, schedule], [warmup])
  adam = optax.adam(schedule)
  clip = float(t.get("clip_grad_norm", 0) or 0)
  return optax.chain(optax.clip_by_global_norm(clip), adam) if clip > 0 else adam


def _state(params, tx) -> dict:
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}


def init_state(model, tx, seed: int) -> dict:
  """A new train state {"step", "params", "opt_state"} (parameter shapes do not depend on the LR size).

  Parameters come from `models.init_params`: the model module's own `init_params` when it has one (BVSR-IK's
  draws them without running the model), else a jitted `model.init`.
  """
  return _state(models.init_params(model, jax.random.key(seed)), tx)


def abstract_state(model, tx):
  """Shapes and dtypes of a train state (no allocation); `train` gives them shardings to restore checkpoints."""
  return jax.eval_shape(
      lambda: _state(model.init(jax.random.key(0), *models.example_inputs(model))["params"], tx))


def make_train_step(model, tx, loss_name: str, mesh, state_sharding=None, table_sharding: str = "replicated"):
  """The jitted, sharded train step: (state, batch[, scales]) -> (state, metrics).

  `loss_name` "model" uses the model's `training_loss(outputs, batch)` -> (loss, prediction for the PSNR);
  any other name is a loss of `inrsr.losses` applied to (model output, batch["rgb"]). `scales` (static, a
  tuple of floats or None) is passed to the model as `scales=` (CLIT's per-batch stage factors, see
  `stage_scales`): one compiled step per distinct tuple. `state_sharding` (a pytree of shardings or one
  sharding) places the state; None replicates it. With `table_sharding` "rows" or "levels" the hash tables
  (sharded so by `state_sharding`, `sharding.state_shardings`) are read through `sharding.sharded_gather`.
  """
  own_loss = models.hook(model, "training_loss")
  if loss_name == "model":
    if own_loss is None:
      raise ValueError(f"train.loss='model' needs a model with a training_loss method; "
                       f"{type(model).__name__} has none (use one of {sorted(losses.LOSSES)})")
  elif own_loss is not None:
    raise ValueError(f"train.loss={loss_name!r}: {type(model).__name__} trains on its own training_loss; "
                     "set train.loss='model'")
  else:
    loss_fn = losses.get_loss(loss_name)
  replicated = NamedSharding(mesh, P())
  batched = NamedSharding(mesh, P("data"))
  state_sharding = replicated if state_sharding is None else state_sharding

  def step(state, batch, scales=None):
    kwargs = {} if scales is None else {"scales": scales}

    def objective(params):
      out = model.apply({"params": params}, *(batch[k] for k in model.batch_keys), **kwargs)
      if loss_name == "model":
        return own_loss(out, batch)
      return loss_fn(out, batch["rgb"]), out

    (loss, pred), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    mse = jnp.mean(jnp.square(jnp.clip(pred, 0.0, 1.0) - batch["rgb"]))
    metrics = {"loss": loss, "psnr": -10.0 * jnp.log10(mse), "grad_norm": optax.tree.norm(grads),
               "update_norm": optax.tree.norm(updates)}
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

  step = sharding.with_table_layout(step, mesh, table_sharding)
  return jax.jit(step, in_shardings=(state_sharding, batched), out_shardings=(state_sharding, replicated),
                 static_argnums=(2,), donate_argnums=(0,))


def stage_scales(batch: dict) -> tuple[float, ...] | None:
  """Pop a batch's per-batch stage factors (`stage_scales`, (B, n) with equal rows, or (n,)) as a static tuple.

  Args:
    batch: a host batch; its `stage_scales` entry, if any, is removed.

  Returns:
    The factors as Python floats, or None when the batch has none.

  Raises:
    ValueError: the rows differ (one scale set per batch is what a compiled step can take).
  """
  value = batch.pop("stage_scales", None)
  if value is None:
    return None
  value = np.asarray(value, np.float32)
  rows = value.reshape(-1, value.shape[-1])
  if not (rows == rows[:1]).all():
    raise ValueError(f"batch['stage_scales'] rows differ ({rows[:4].tolist()} ...): a batch takes one scale set")
  return tuple(float(v) for v in rows[0])


def params_from(workdir, params) -> tuple[dict, list[str], list[str]]:
  """`params` with every leaf that another run's newest checkpoint holds at the same path and shape replaced.

  The official CLIT `pre_train`: a stage starts from the previous stage's parameters where they exist, its new
  modules keep their initialisation.

  Args:
    workdir: the other run's folder (`train.init_from`).
    params: the new model's initial parameters.

  Returns:
    (params, the paths taken from `workdir`, the paths kept).

  Raises:
    ValueError: `workdir` has no checkpoint, or no parameter of it fits.
  """
  try:
    _, source, _, step = checkpoints.restore_model(workdir)
  except ValueError as e:
    raise ValueError(f"train.init_from={os.fspath(workdir)!r} must be a run folder with a checkpoint: {e}") from e
  flat_src = traverse_util.flatten_dict(dict(source), sep="/")
  flat = traverse_util.flatten_dict(dict(params), sep="/")
  taken = [k for k, v in flat.items() if k in flat_src and flat_src[k].shape == v.shape and
           flat_src[k].dtype == v.dtype]
  if not taken:
    raise ValueError(f"train.init_from={os.fspath(workdir)!r} (step {step}) holds no parameter of this model's "
                     f"paths and shapes (first paths: {sorted(flat)[:3]})")
  flat.update({k: jnp.asarray(flat_src[k]) for k in taken})
  kept = sorted(set(flat) - set(taken))
  logging.info("train.init_from=%s (step %d): %d parameters taken, %d new (%s)", workdir, step, len(taken),
               len(kept), ", ".join(kept[:6]))
  return traverse_util.unflatten_dict(flat, sep="/"), taken, kept


def _logged_step(line: str) -> int | None:
  """The step of a metrics.jsonl line, or None when the line is not a complete record."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    return None
  step = record.get("step") if isinstance(record, dict) else None
  return step if isinstance(step, int) and not isinstance(step, bool) else None


class MetricWriter:
  """Appends metrics to workdir/metrics.jsonl (and TensorBoard event files when tensorboardX is installed)."""

  def __init__(self, workdir, resume_step: int | None):
    self.path = pathlib.Path(workdir) / METRICS_FILE
    if self.path.exists():  # Drop lines a crashed run wrote after its last checkpoint.
      keep = []
      for number, line in enumerate(self.path.read_text().splitlines(), 1):
        step = _logged_step(line)
        if step is None:
          if line.strip():  # A line torn by a crash mid-write.
            logging.warning("%s line %d is not a metrics record (a crash mid-write?); dropped: %.80r",
                            self.path, number, line)
        elif resume_step is not None and step <= resume_step:
          keep.append(line)
      self.path.write_text("".join(l + "\n" for l in keep))
    self.tb = None
    try:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self.tb = tensorboardX.SummaryWriter(os.fspath(pathlib.Path(workdir) / "tensorboard"))
    except ImportError:
      pass

  def write(self, step: int, metrics: dict[str, float]):
    with self.path.open("a") as f:
      f.write(json.dumps({"step": step, **metrics}) + "\n")
    if self.tb is not None:
      for k, v in metrics.items():
        self.tb.add_scalar(k, v, step)

  def close(self):
    if self.tb is not None:
      self.tb.close()


def training_data(config: ml_collections.ConfigDict) -> protocols.TrainingData:
  """The training dataset a config asks for and its schedule, from the module of `data.protocol`.

  `inrsr.data.protocols` maps each protocol to its module (`validate`, then `training_data`).

  Returns:
    `protocols.TrainingData`, a named tuple (dataset, total_steps, steps_per_epoch, pixels_per_step).
  """
  return protocols.training_data(config)


def _agree(flag: bool) -> bool:
  """Process 0's value of `flag` on every process (a run of N processes must stop at the same step)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def host_memory_available() -> int | None:
  """Bytes of host memory this process can still take: /proc/meminfo's MemAvailable, lowered to the cgroup's
  limit when one is set (containers); None when neither can be read."""
  found = []
  try:
    with open("/proc/meminfo") as f:
      found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
  except (OSError, ValueError, IndexError):
    pages = getattr(os, "sysconf_names", {}).get("SC_AVPHYS_PAGES")
    if pages is not None:
      found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  try:
    limit = pathlib.Path("/sys/fs/cgroup/memory.max").read_text().strip()
    if limit != "max":
      found.append(int(limit) - int(pathlib.Path("/sys/fs/cgroup/memory.current").read_text()))
  except (OSError, ValueError):
    pass
  return min(found) if found else None


def check_state_memory(config: ml_collections.ConfigDict, abstract, state_sharding) -> int:
  """Log the memory a train state takes (over this process's devices) and, on a CPU, refuse one the host cannot
  hold, before anything is allocated.

  Args:
    config: the training config (named in the message by its model).
    abstract: the train state's shapes (`abstract_state`).
    state_sharding: its shardings (a pytree like `abstract`).

  Returns:
    The bytes a step needs at least: the state (parameters and optimizer moments) and a step's gradients and
    updates (the compiled step's other temporaries come on top).

  Raises:
    ValueError: on a CPU, more than `host_memory_available`.
  """
  def nbytes(x, sh):
    return math.prod(sh.shard_shape(x.shape)) * x.dtype.itemsize * len(sh.addressable_devices)

  state = sum(jax.tree.leaves(jax.tree.map(nbytes, abstract, state_sharding)))
  params = sum(jax.tree.leaves(jax.tree.map(nbytes, abstract["params"], state_sharding["params"])))
  count = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract["params"]))
  need = state + 2 * params
  gib = lambda n: f"{n / 2**30:.2f} GiB"
  available = host_memory_available()
  logging.info("train state: %s parameters, %s with the optimizer's moments; a step needs at least %s (host memory "
               "available: %s)", f"{count:,}", gib(state), gib(need),
               "unknown" if available is None else gib(available))
  if jax.default_backend() == "cpu" and available is not None and need > available:
    raise ValueError(f"model.name={config.model.get('name', 'srinr')!r} ({count:,} parameters) needs at least "
                     f"{gib(need)} ({need:,} bytes: parameters, optimizer moments, a step's gradients and updates), "
                     f"more than the {gib(available)} of host memory available: use a smaller model (a config's :cpu "
                     "or :small argument, or smaller model.* fields) or a machine with more memory")
  return need


def _remove_if_empty(workdir: pathlib.Path) -> None:
  """Remove `workdir` if it holds no file at all (only empty folders a failed start made)."""
  if workdir.is_dir() and not any(p.is_file() or p.is_symlink() for p in workdir.rglob("*")):
    shutil.rmtree(workdir, ignore_errors=True)
    logging.info("removed %s: the failed start left nothing in it", workdir)


def train(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict:
  """Train the model `config.model.name` names as `config` says, resuming from `workdir` if it holds checkpoints.

  In a run of several processes (`inrsr.train.distributed.initialize` first) every process calls this with the same
  config and workdir: each reads its share of every global batch (`pipeline.batched_dataset`), the batch is
  assembled over the processes' devices, Orbax writes one checkpoint (each process its data iterator's
  state), and only process 0 writes config.json, metrics and the progress bar.

  A workdir this call creates and a failure leaves without a file is removed; a folder that existed before,
  or holds a file, never is. On a CPU, a model whose train state the host cannot hold is refused before it is
  allocated (`check_state_memory`).

  Args:
    config: a training config (see experiments/configs).
    workdir: output folder (checkpoints, metrics.jsonl, config.json).
    progress: show a tqdm progress bar (process 0).

  Returns:
    The final train state (a dict of device arrays).
  """
  workdir = pathlib.Path(workdir)
  created = not workdir.exists()
  try:
    return _train(config, workdir, progress=progress)
  except BaseException:
    if created:
      _remove_if_empty(workdir)
    raise


def _training_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The run's ("data", "model") mesh (`train.model_axis` devices on the model axis), its batch size checked."""
  model_axis = int(config.train.get("model_axis", 1))
  mesh = make_mesh(model_axis)
  data_axis = mesh.shape["data"]
  if config.data.batch_size % data_axis:
    raise ValueError(f"data.batch_size={config.data.batch_size} must be a multiple of the {data_axis} devices of "
                     f"the data axis ({jax.device_count()} devices / train.model_axis={model_axis})")
  if jax.process_count() > 1 and jax.local_device_count() % model_axis:
    raise ValueError(f"train.model_axis={model_axis} must divide each process's {jax.local_device_count()} "
                     "devices (a model group may not span processes)")
  return mesh


def _state_layout(config: ml_collections.ConfigDict, model, tx, mesh, table_sharding: str):
  """(abstract train state, its shardings), the table layout and the host's memory checked (nothing allocated)."""
  abstract = abstract_state(model, tx)
  state_sharding = sharding.state_shardings(abstract, mesh, table_sharding)
  if table_sharding != "replicated" and all(s.spec == P() for s in jax.tree.leaves(state_sharding)):
    raise ValueError(f"train.table_sharding={table_sharding!r}: model {models.model_name(config.model)!r} has no "
                     "hash tables to shard (use 'replicated')")
  check_state_memory(config, abstract, state_sharding)
  return abstract, state_sharding


def _new_state(config: ml_collections.ConfigDict, model, tx, state_sharding) -> dict:
  """A new run's train state on its shardings: new parameters, or `train.init_from`'s where they fit."""
  params = models.init_params(model, jax.random.key(config.train.seed))
  if config.train.get("init_from", ""):
    params, _, _ = params_from(config.train.init_from, params)
  return jax.device_put(_state(params, tx), state_sharding)


def _train(config: ml_collections.ConfigDict, workdir: pathlib.Path, *, progress: bool) -> dict:
  validate_config(config)
  checkpoints.check_resume(workdir, config)  # A changed model is named before anything is loaded.
  lead = jax.process_index() == 0
  workdir.mkdir(parents=True, exist_ok=True)
  mesh = _training_mesh(config)
  table_sharding = config.train.get("table_sharding", "replicated")
  dataset, steps, per_epoch, pixels_per_step = training_data(config)  # Fails at once on a missing folder.
  iterator = iter(dataset)
  model = models.from_config(config.model)
  tx = make_optimizer(config, per_epoch, steps)
  abstract, state_sharding = _state_layout(config, model, tx, mesh, table_sharding)
  target = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), abstract, state_sharding)
  manager = checkpoints.checkpoint_manager(workdir, config.train.keep_checkpoints)
  state, start = checkpoints.restore_latest(manager, target, iterator)
  if state is None:
    state, start = _new_state(config, model, tx, state_sharding), 0
    logging.info("new run in %s: %d steps (%d per epoch), %d process(es), %d devices (data %d x model %d, tables "
                 "%s)", workdir, steps, per_epoch, jax.process_count(), jax.device_count(), mesh.shape["data"],
                 mesh.shape["model"], table_sharding)
  else:
    logging.info("resumed from step %d in %s", start, workdir)
  if lead:
    checkpoints.save_config(config, workdir)
  writer = MetricWriter(workdir, start) if lead else None
  train_step = make_train_step(model, tx, config.train.loss, mesh, state_sharding, table_sharding)
  executables = {}  # static stage scales (`stage_scales`; None for most protocols) -> the compiled step
  batch_sharding = NamedSharding(mesh, P("data"))
  bar = None
  if progress and lead:
    import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm.tqdm(total=steps, initial=start, desc="train", dynamic_ncols=True)
  last_saved = start
  tic, tic_step = time.perf_counter(), start
  budget = float(config.train.get("budget_s", 0) or 0)
  deadline = time.perf_counter() + budget if budget > 0 else math.inf
  try:
    for step in range(start + 1, steps + 1):
      batch = next(iterator)
      scales = stage_scales(batch)
      batch = {k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in batch.items()
               if k != "scale"}
      if scales not in executables:  # compiled once per static scale set; its memory line on an accelerator
        executables[scales] = train_step.lower(state, batch, scales).compile()
        if len(executables) == 1 and jax.default_backend() != "cpu":  # the line `python -m experiments.aot` prints
          logging.info("train step %s", sharding.device_memory_line(executables[scales], jax.local_devices()[0]))
      state, metrics = executables[scales](state, batch)
      loss, gnorm, unorm = (float(metrics[k]) for k in ("loss", "grad_norm", "update_norm"))
      if not all(math.isfinite(v) for v in (loss, gnorm, unorm)):
        raise NonFiniteLossError(f"loss={loss} grad_norm={gnorm} update_norm={unorm} at step {step}: stopped. "
                                 f"The last good checkpoint is step {last_saved} in {manager.directory}")
      if bar is not None:
        bar.update(1)
      if step % config.train.log_every == 0 or step == steps:
        elapsed = time.perf_counter() - tic
        record = {"loss": loss, "psnr": float(metrics["psnr"]), "grad_norm": gnorm,
                  "pixels_per_s": pixels_per_step * (step - tic_step) / max(elapsed, 1e-9)}
        if writer is not None:
          writer.write(step, record)
        if bar is not None:
          bar.set_postfix(loss=f"{loss:.4g}", px_s=f"{record['pixels_per_s']:.3g}")
        logging.log_every_n_seconds(logging.INFO, "step %d %s", 30, step, record)
        tic, tic_step = time.perf_counter(), step
      out_of_time = budget > 0 and _agree(time.perf_counter() > deadline)
      if step % config.train.checkpoint_every == 0 or step == steps or out_of_time:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   data=grain.checkpoint.CheckpointSave(iterator)))
        last_saved = step
      if out_of_time:
        logging.warning("train.budget_s=%g s spent: stopped at step %d of %d (checkpoint saved; run again to go on)",
                        budget, step, steps)
        break
    manager.wait_until_finished()
  finally:
    if bar is not None:
      bar.close()
    if writer is not None:
      writer.close()
    manager.close()
  return state
