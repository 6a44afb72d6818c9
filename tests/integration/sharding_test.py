"""Tests for inrsr.train.sharding: tables sharded over a `model` mesh axis give the unsharded train step's numbers.

The multi-device checks need 8 host devices, which XLA creates only if `--xla_force_host_platform_device_count`
is set before jax starts; they run in one subprocess (this file run as a script), which prints its findings as
JSON for the tests below to assert on.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from inrsr.train import sharding

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESHES = ((2, 4), (1, 8))  # (data, model)
# + replicated tables with the batch over a data axis of 4 (the model axis idle: the test batch has 4 frames).
CASES = [(d, m, t) for d, m in MESHES for t in ("rows", "levels")] + [(4, 2, "replicated")]
# Loss, outputs, gradients and the Adam-updated state of a sharded step must match the unsharded step to this
# fraction of each array's largest magnitude. float32 sums taken in another order (the batch split over `data`,
# the psum over `model`) differ by up to about 1e-6 of the largest term (the worst seen here: 1.1e-6).
RTOL = 1e-5


def _key(case) -> str:
  return "{}x{}-{}".format(*case)


# ---------------------------------------------------------------------------------------------------------
# The subprocess (8 host devices).


def _small_config(num_levels: int):
  from experiments.configs import srinr_demo  # pylint: disable=g-import-not-at-top
  config = srinr_demo.get_config("small").model  # L=4, T=2^14, F=2, N_min=8, N_max=64.
  config.num_levels = num_levels
  return config


def _inputs(model):
  """Random parameters (drawn in NumPy: no compiled init) whose gradients reach every table and MLP, and a
  batch of 4 frames x 128 pixels."""
  from inrsr import models  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(model.init, jax.random.key(0), *models.example_inputs(model))["params"]

  def draw(path, x):
    if jax.tree_util.keystr(path).endswith("['tables']"):
      return rng.uniform(-0.5, 0.5, x.shape).astype(np.float32)
    scale = 1.0 / np.sqrt(x.shape[-2]) if len(x.shape) >= 2 else 0.1  # LeCun-like kernels, small biases
    return (scale * rng.normal(size=x.shape)).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(draw, shapes)
  batch = {"lr": rng.uniform(0, 1, (4, 12, 12, 3)), "coords": rng.uniform(-1, 1, (4, 128, 3)),
           "rgb": rng.uniform(0, 1, (4, 128, 3))}
  return params, {k: v.astype(np.float32) for k, v in batch.items()}


def _step_fn(model, tx):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  def step(state, batch):
    def objective(params):
      out = model.apply({"params": params}, batch["lr"], batch["coords"])
      return jnp.mean(jnp.square(out - batch["rgb"])), out

    (loss, out), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
           "opt_state": opt_state}
    return new, {"loss": loss, "out": out, "grads": grads}

  return step


def _rel_err(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def _table_leaves(tree):
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)
          if jax.tree_util.keystr(p).endswith("['tables']")}


def chunked_gather_on_data_axis() -> dict:
  """The reference gather chunked over N (8 chunks of 64) with N sharded over a data axis of 8: all-gathers in the
  compiled program and the error against the unchunked gather, jitted as it is (XLA's partitioner cannot split
  the chunk loop: it all-gathers every device's points) and through `sharded_gather` (one shard_map over the
  batch: each device maps over its own points)."""
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh(1)
  rng = np.random.default_rng(5)
  resolutions, n, chunk = (4, 8), 512, 64
  points = rng.uniform(-1, 1, (n, 2, 6)).astype(np.float32)
  weights = rng.normal(size=(n, 2, 64)).astype(np.float32)
  tables = rng.normal(size=(2, 1 << 10, 2)).astype(np.float32)
  cot = rng.normal(size=(n, 2, 2)).astype(np.float32)
  batched, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  gathers = {"xla_spmd": lambda p, w, t: hashgrid.hashgrid_reference(p, w, t, resolutions, chunk=chunk),
             "shard_map": lambda p, w, t: sharding.sharded_gather(p, w, t, resolutions, mesh, "replicated",
                                                                  impl="reference", chunk=chunk)}

  def forward_backward(gather):
    def fn(p, w, t):
      out, vjp = jax.vjp(lambda w, t: gather(p, w, t), w, t)
      return out, vjp(cot)
    return fn

  want = jax.tree.map(np.asarray, forward_backward(lambda p, w, t: hashgrid.hashgrid_reference(
      p, w, t, resolutions, chunk=n))(points, weights, tables))
  found = {}
  for name, gather in gathers.items():
    f = jax.jit(forward_backward(gather), in_shardings=(batched, batched, replicated))
    hlo = f.lower(points, weights, tables).compile().as_text()
    got = f(points, weights, tables)
    found[name] = {"all_gathers": hlo.count("all-gather"),
                   "err": max(_rel_err(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))}
  return found


def run_checks() -> dict:
  """Every sharded case against the unsharded step, and the errors; returns the findings."""
  import optax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from inrsr import models  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == 8, jax.devices()
  model = models.from_config(_small_config(8))
  # Adam's first update g / (|g| + eps) turns round-off of gradients near 0 into updates of +-lr; a larger eps
  # keeps the updated parameters a smooth function of the gradients.
  tx = optax.adam(1e-3, eps=1e-4)
  params, batch = _inputs(model)
  state = {"step": np.zeros((), np.int32), "params": params, "opt_state": tx.init(params)}
  host_state = jax.tree.map(np.asarray, state)
  want_state, want = jax.tree.map(np.asarray, jax.jit(_step_fn(model, tx))(state, batch))
  found = {"grad_max": {k: float(np.max(np.abs(x))) for k, x in
                        zip(("tables", "color_out"), (want["grads"]["hash"]["tables"],
                                                     want["grads"]["color_out"]["kernel"]))}}
  for case in CASES:
    _, model_axis, tables = case
    mesh = sharding.make_mesh(model_axis)
    shardings = sharding.state_shardings(host_state, mesh, tables)
    step = sharding.with_table_layout(_step_fn(model, tx), mesh, tables)
    replicated, batched = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    jitted = jax.jit(step, in_shardings=(shardings, batched),
                     out_shardings=(shardings, {"loss": replicated, "out": batched, "grads": shardings["params"]}))
    placed = jax.device_put(host_state, shardings)
    shards = {k: sorted({tuple(s.data.shape) for s in x.addressable_shards}) for k, x in
              _table_leaves(placed).items()}
    got_state, got = jitted(placed, jax.device_put(batch, batched))
    out_shards = {k: sorted({tuple(s.data.shape) for s in x.addressable_shards}) for k, x in
                  _table_leaves(got_state).items()}
    # The shards of one table on the devices of one `model` row are its distinct pieces: reassembled by
    # their indices they give the whole table.
    table = got_state["params"]["hash"]["tables"]
    pieces = np.zeros(table.shape, np.float32)
    covered = np.zeros(table.shape, np.int32)
    row = set(mesh.devices[0] if tables != "replicated" else mesh.devices[0][:1])  # replicated: one whole copy
    for s in table.addressable_shards:
      if s.device in row:
        pieces[s.index] = np.asarray(s.data)
        covered[s.index] += 1
    errors = {"loss": _rel_err(got["loss"], want["loss"]), "out": _rel_err(got["out"], want["out"])}
    for name, g, w in (("grads", got["grads"], want["grads"]), ("state", got_state, want_state)):
      for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g), jax.tree.leaves(w)):
        errors[name + jax.tree_util.keystr(path)] = _rel_err(a, b)
    found[_key(case)] = {"errors": errors, "placed_shards": shards, "output_shards": out_shards,
                         "table_shape": list(table.shape), "covered_once": bool((covered == 1).all()),
                         "reassembled_err": _rel_err(pieces, want_state["params"]["hash"]["tables"])}
  found["chunked"] = chunked_gather_on_data_axis()
  # Errors: a model axis that does not divide the devices, and L = 4 levels over a model axis of 8.
  found["raised"] = {}
  small = models.from_config(_small_config(4))
  small_state = jax.eval_shape(lambda: {"params": models.init_params(small, jax.random.key(0))})
  for name, fn in (("make_mesh", lambda: sharding.make_mesh(3)),
                   ("state_shardings", lambda: sharding.state_shardings(small_state, sharding.make_mesh(8),
                                                                        "levels")),
                   ("apply", lambda: jax.eval_shape(sharding.with_table_layout(
                       lambda p: small.apply({"params": p}, batch["lr"], batch["coords"]),
                       sharding.make_mesh(8), "levels"), small_state["params"]))):
    try:
      fn()
      found["raised"][name] = None
    except ValueError as e:
      found["raised"][name] = str(e)
  return found


# ---------------------------------------------------------------------------------------------------------
# The tests.


@pytest.fixture(scope="module")
def findings():
  # 8 host devices; LLVM's cheaper optimisation halves the compile time, which is most of this file's.
  flags = " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + flags)
  env["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "tests"), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True,
                        timeout=600, check=False, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reference_gradients_are_not_trivial(findings):
  assert findings["grad_max"]["tables"] > 1e-4 and findings["grad_max"]["color_out"] > 1e-4


@pytest.mark.parametrize("case", CASES, ids=_key)
def test_sharded_step_matches_unsharded(findings, case):
  errors = findings[_key(case)]["errors"]
  assert len(errors) > 20  # loss, outputs, every gradient and every leaf of the updated state
  worst = {k: v for k, v in errors.items() if not v <= RTOL}
  assert not worst, worst


@pytest.mark.parametrize("case", CASES, ids=_key)
def test_each_device_holds_its_share_of_the_tables(findings, case):
  _, model_axis, tables = case
  f = findings[_key(case)]
  levels, rows, feats = f["table_shape"]
  share = {"rows": [levels, rows // model_axis, feats], "levels": [levels // model_axis, rows, feats],
           "replicated": [levels, rows, feats]}[tables]
  for shards in (f["placed_shards"], f["output_shards"]):
    # The param and Adam's mu and nu, each one shard shape on every device.
    assert len(shards) == 3 and all(v == [share] for v in shards.values()), shards
  assert f["covered_once"] and f["reassembled_err"] <= RTOL


def test_chunked_gather_keeps_each_device_on_its_own_points(findings):
  chunked = findings["chunked"]  # forward and backward, 8 devices on the data axis
  assert chunked["shard_map"]["all_gathers"] == 0 and chunked["shard_map"]["err"] <= RTOL
  # Left to XLA's partitioner, the chunk loop over the sharded points all-gathers them (the same numbers).
  assert chunked["xla_spmd"]["all_gathers"] > 0 and chunked["xla_spmd"]["err"] <= RTOL


def test_indivisible_model_axis_is_a_clear_error(findings):
  raised = findings["raised"]
  assert raised["make_mesh"] is not None and "train.model_axis=3" in raised["make_mesh"]
  for name in ("state_shardings", "apply"):
    assert raised[name] is not None and "train.model_axis=8" in raised[name], raised[name]
    assert "levels" in raised[name] and "4" in raised[name]


def test_layout_and_mesh_errors_in_process():
  with pytest.raises(ValueError, match="train.model_axis=0"):
    sharding.make_mesh(0)
  with pytest.raises(ValueError, match=f"train.model_axis={jax.device_count() + 1}"):
    sharding.make_mesh(jax.device_count() + 1)
  mesh = sharding.make_mesh(1)
  assert dict(mesh.shape) == {"data": jax.device_count(), "model": 1}
  with pytest.raises(ValueError, match="train.table_sharding='columns'"):
    sharding.state_shardings({"tables": np.zeros((2, 4, 2))}, mesh, "columns")


def test_default_and_single_device_model_axis_leave_the_model_unchanged():
  assert sharding.current_layout() is None
  mesh = sharding.make_mesh(1)
  with sharding.table_layout(mesh, "rows"):
    assert sharding.current_layout() is None  # A model axis of 1: the unsharded gather.
  state = {"step": np.zeros(()), "params": {"hash": {"tables": np.zeros((2, 8, 2)), "w": np.zeros((3,))}}}
  specs = jax.tree.map(lambda s: s.spec, sharding.state_shardings(state, mesh, "rows"))
  assert specs["params"]["hash"]["tables"] == sharding.TABLE_SPECS["rows"]
  assert specs["params"]["hash"]["w"] == specs["step"] == jax.sharding.PartitionSpec()


def _train(workdir, steps, *extra, devices=1):
  flags = f" --xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + flags,
             JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(workdir).parent / "jax_cache"))  # the resume reuses it
  return subprocess.run([sys.executable, "-m", "experiments.train", "--config=srinr_demo:small",
                         f"--workdir={workdir}", f"--config.train.steps={steps}", "--config.train.checkpoint_every=2",
                         "--progress=false", *extra], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def _restored(workdir):
  from inrsr.train import checkpoints  # pylint: disable=g-import-not-at-top
  _, params, _, step = checkpoints.restore_model(workdir)
  return jax.tree.map(np.asarray, params), step


def test_training_with_tables_sharded_by_levels_places_the_shards_and_resumes(tmp_path):
  """experiments.train on 8 host devices, 4 on the model axis: a run, then a resume from its sharded checkpoint.

  (The sharded step's numbers against the unsharded step's are the tests above; this one checks the wiring.)
  """
  sharded = ("--config.train.model_axis=4", "--config.train.table_sharding=levels")
  run = _train(tmp_path / "sharded", 4, *sharded, devices=8)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "data 2 x model 4, tables levels" in run.stderr
  again = _train(tmp_path / "sharded", 6, *sharded, devices=8)  # restores the sharded checkpoint, 2 more steps
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from step 4" in again.stderr
  params, step = _restored(tmp_path / "sharded")
  assert step == 6 and all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  bad = _train(tmp_path / "bad", 4, "--config.train.table_sharding=levels", "--config.train.model_axis=8",
               devices=8)  # the small model's 4 levels cannot split over 8 devices: named before any step
  assert bad.returncode != 0 and "must be divisible by train.model_axis=8" in bad.stderr
  assert not (tmp_path / "bad" / "checkpoints").exists() or not any((tmp_path / "bad" / "checkpoints").iterdir())


if __name__ == "__main__":
  print(json.dumps(run_checks()))
