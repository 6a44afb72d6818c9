"""Tests for training: loss decreases, exact resume after SIGKILL, NaN stop, corrupt checkpoints, bad configs."""

import json
import logging
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import srinr_demo
from inrsr import models
from inrsr.train import checkpoints, training

REPO = pathlib.Path(__file__).resolve().parents[2]
ORBAX_DIR = pathlib.Path(ocp.__file__).resolve().parents[1]


def _orbax_info_lines(stderr: str) -> list[str]:
  """absl INFO lines (`I1123 12:00:00.000 123 file.py:45] ...`) written from one of Orbax's source files."""
  ours = {p.name for d in ("inrsr", "experiments", "kernels") for p in (REPO / d).rglob("*.py")}
  orbax_files = {p.name for p in ORBAX_DIR.rglob("*.py")} - ours
  found = (re.match(r"I\d{4} [\d:.]+\s+\d+ ([^:\s]+\.py):\d+\]", line) for line in stderr.splitlines())
  return [m.group(0) for m in found if m and m.group(1) in orbax_files]


def small_config(steps=12, **train):
  c = srinr_demo.get_config("small")
  c.train.update(steps=steps, log_every=1, checkpoint_every=4, **train)
  return c


def _params(workdir):
  _, params, _, step = checkpoints.restore_model(workdir)
  return jax.tree.map(np.asarray, params), step


def test_training_lowers_the_loss(tmp_path):
  training.train(small_config(steps=30), tmp_path, progress=False)
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == list(range(1, 31))
  losses = [l["loss"] for l in lines]
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def _train_cmd(workdir, steps):
  return [sys.executable, "-m", "experiments.train", "--config=srinr_demo:small", f"--workdir={workdir}",
          f"--config.train.steps={steps}", "--config.train.checkpoint_every=5", "--progress=false"]


def test_sigkill_then_restart_matches_uninterrupted_run(tmp_path):
  # One persistent compilation cache for the three runs (the same program, compiled once).
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache")}
  steps = 30
  full = tmp_path / "full"
  run = subprocess.run(_train_cmd(full, steps), cwd=REPO, env=env, check=True, capture_output=True, text=True)
  # Orbax's INFO lines are quiet by default; inrsr's own INFO lines are not.
  assert "new run in" in run.stderr and not _orbax_info_lines(run.stderr)

  killed = tmp_path / "killed"
  proc = subprocess.Popen(_train_cmd(killed, steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "10").exists():
    assert proc.poll() is None, "training ended before it could be killed"
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
  assert done and max(done) < steps, f"the run was not interrupted mid-way: {done}"

  subprocess.run(_train_cmd(killed, steps), cwd=REPO, env=env, check=True, capture_output=True)
  want, want_step = _params(full)
  got, got_step = _params(killed)
  assert want_step == got_step == steps
  jax.tree.map(np.testing.assert_array_equal, got, want)
  logged = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()]
  assert logged == sorted(set(logged)) and logged[-1] == steps  # no duplicate lines after the restart


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
  training.train(small_config(steps=4), tmp_path, progress=False)
  with pytest.raises(training.NonFiniteLossError, match="last good checkpoint is step 4"):
    training.train(small_config(steps=8, learning_rate=float("nan")), tmp_path, progress=False)
  params, step = _params(tmp_path)
  assert step == 4
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def _corrupt(step_dir: pathlib.Path):
  for f in step_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"\0garbage")


def test_corrupt_checkpoint_falls_back_then_errors(tmp_path):
  training.train(small_config(steps=8), tmp_path, progress=False)
  ckpt = tmp_path / "checkpoints"
  assert (ckpt / "8").is_dir() and (ckpt / "4").is_dir()
  _corrupt(ckpt / "8")
  _, step = _params(tmp_path)
  assert step == 4  # fell back to the previous checkpoint, with an error logged
  _corrupt(ckpt / "4")
  with pytest.raises(RuntimeError, match="no readable checkpoint.*refusing to start from scratch"):
    training.train(small_config(steps=12), tmp_path, progress=False)


def test_missing_data_folder_fails_at_once(tmp_path):
  c = small_config()
  c.data.update(source="folder", root=str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="nowhere does not exist: set data.root"):
    training.train(c, tmp_path / "wd", progress=False)
  assert not (tmp_path / "wd" / "checkpoints").exists()


def test_unknown_config_field_and_config_name_are_clear_errors(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, "-m", "experiments.train", "--config=srinr_demo:small",
                      f"--workdir={tmp_path}", "--config.model.num_levles=3"], cwd=REPO, env=env,
                     capture_output=True, text=True)
  assert r.returncode != 0 and "num_levles" in r.stderr
  r = subprocess.run([sys.executable, "-m", "experiments.train", "--config=srinr_nope",
                      f"--workdir={tmp_path}"], cwd=REPO, env=env, capture_output=True, text=True)
  assert r.returncode != 0 and "srinr_nope" in r.stderr and "srinr_demo" in r.stderr


@pytest.mark.parametrize("field,value,protocol", [
    ("scale", 0.0, "fit"), ("scale", math.nan, "fit"), ("scale", 0.5, "fit"), ("scale", 0.5, "internal"),
    ("scale_max", math.nan, "fit"), ("scale_max", 2.0, "fit"), ("internal_scale", 0.0, "internal"),
    ("internal_scale", math.nan, "internal")])
def test_bad_scale_is_named_before_any_work(tmp_path, field, value, protocol):
  c = small_config()
  # A missing folder: an error about it (or a ZeroDivisionError) would mean images were being loaded first.
  c.data.update(source="folder", root=str(tmp_path / "nowhere"), protocol=protocol, scale=4.0, scale_max=0.0)
  c.data[field] = value
  with pytest.raises(ValueError, match=re.escape(f"data.{field}={value!r} must be a finite number >=")):
    training.train(c, tmp_path / "wd", progress=False)
  assert not (tmp_path / "wd").exists()


def test_scale_sampling_outside_fit_and_internal_is_named_before_any_work(tmp_path):
  c = small_config()
  c.data.update(source="folder", root=str(tmp_path / "nowhere"), protocol="patches", scale=1.0, scale_max=4.0,
                scale_sampling="log")
  with pytest.raises(ValueError, match="data.scale_sampling='log' is read by the protocols 'fit' and 'internal'"):
    training.train(c, tmp_path / "wd", progress=False)
  assert not (tmp_path / "wd").exists()


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, caplog):
  caplog.set_level(logging.WARNING, logger="absl")
  lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 6)]
  (tmp_path / training.METRICS_FILE).write_text("\n".join(lines) + '\n{"step": 6, "lo')  # killed mid-write
  writer = training.MetricWriter(tmp_path, resume_step=4)
  writer.write(5, {"loss": 0.5})
  writer.close()
  records = [json.loads(l) for l in (tmp_path / training.METRICS_FILE).read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and records[-1]["loss"] == 0.5
  assert any("line 6 is not a metrics record" in r.getMessage() for r in caplog.records)


def test_check_compatible_names_state_fields_and_allows_the_rest():
  stored = small_config(steps=4)
  new = small_config(steps=8, learning_rate=1e-3)
  new.eval.scales = (2.0, 3.0)
  new.model.kernel_impl = "reference"
  assert checkpoints.check_compatible(stored, new) == ["eval.scales", "model.kernel_impl", "train.learning_rate",
                                                        "train.steps"]
  new.model.update(num_levels=5, hidden=32)
  with pytest.raises(ValueError, match=r"model.hidden: stored 64, now 32; model.num_levels: stored 4, now 5"):
    checkpoints.check_compatible(stored, new)
  stored_json = ml_collections.ConfigDict(json.loads(stored.to_json_best_effort()))
  assert checkpoints.check_compatible(stored_json, stored) == []  # tuples stored as JSON lists compare equal
  # A run stored before model.param_init existed resumes under a config that has it: only new runs read it.
  with_init = small_config(steps=4)
  with_init.model.param_init = "torch"
  assert checkpoints.check_compatible(stored, with_init) == ["model.param_init"]


def test_restart_with_another_model_names_the_changed_fields(tmp_path):
  stored = small_config(steps=2)
  # A run folder as a 2-step run leaves it (config.json, checkpoints/2), without spending a compilation on it.
  params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        checkpoints.abstract_params(models.from_config(stored.model)))
  checkpoints.save_params(tmp_path, stored, params, step=2)
  changed = small_config(steps=4)
  changed.model.num_levels = 3
  with pytest.raises(ValueError, match=r"fields that change the train state: model.num_levels: stored 4, now 3"):
    training.train(changed, tmp_path, progress=False)
  assert checkpoints.load_config(tmp_path).model.num_levels == 4  # the stored config is left as it was
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]


def test_orbax_info_logging_is_quiet_unless_asked(tmp_path, caplog):
  caplog.set_level(logging.DEBUG, logger="absl")
  orbax_dirs = (str(ORBAX_DIR), str(pathlib.Path(ocp.__file__).parents[1]))
  orbax_info = lambda: [r for r in caplog.records if r.pathname.startswith(orbax_dirs) and r.levelno < logging.WARNING]
  params = {"w": np.arange(3, dtype=np.float32)}
  checkpoints.save_params(tmp_path / "quiet", small_config(), params)
  assert not orbax_info()
  checkpoints.set_orbax_verbose(True)
  try:
    checkpoints.save_params(tmp_path / "verbose", small_config(), params)
  finally:
    checkpoints.set_orbax_verbose(False)
  assert orbax_info()  # Orbax does log at INFO: the first check was not vacuous.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", checkpoints.VERBOSE_ORBAX_ENV: "1"}
  r = subprocess.run([sys.executable, "-c", "from absl import logging; from inrsr.train import checkpoints as c; "
                      "print(c._QUIET_ORBAX in logging.get_absl_logger().filters)"], cwd=REPO, env=env,
                     capture_output=True, text=True, check=True)
  assert r.stdout.strip() == "False"


def test_init_from_takes_matching_parameters_and_keeps_new_ones(tmp_path):
  source = tmp_path / "source"
  training.train(small_config(steps=4), source, progress=False)
  trained, _ = _params(source)
  # Learning rate 0: the new run's parameters are exactly where train.init_from put them.
  follow = small_config(steps=1, learning_rate=0.0, init_from=str(source))
  training.train(follow, tmp_path / "follow", progress=False)
  got, _ = _params(tmp_path / "follow")
  jax.tree.map(np.testing.assert_array_equal, got, trained)
  # A wider MLP: the tables (same shape) come from the run, the MLP layers (other shapes) keep their init.
  wider = small_config()
  wider.model.hidden = 2 * wider.model.hidden
  model = models.from_config(wider.model)
  fresh = models.init_params(model, jax.random.key(0))
  merged, taken, kept = training.params_from(source, fresh)
  flat = {"/".join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(merged)}
  flat_trained = {"/".join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(trained)}
  flat_fresh = {"/".join(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(fresh)}
  assert taken and kept and set(taken) | set(kept) == set(flat)
  for k in taken:
    np.testing.assert_array_equal(flat[k], flat_trained[k])
  for k in kept:
    np.testing.assert_array_equal(flat[k], flat_fresh[k])
  assert any("tables" in k for k in taken) and not any("tables" in k for k in kept)
  with pytest.raises(ValueError, match="train.init_from=.* must be a run folder with a checkpoint"):
    training.params_from(tmp_path / "follow" / "nothing_here", fresh)


def test_stage_scales_is_one_static_tuple_per_batch():
  batch = {"lr": np.zeros((2, 3)), "stage_scales": np.array([[4.0, 1.5], [4.0, 1.5]], np.float32)}
  assert training.stage_scales(batch) == (4.0, 1.5) and "stage_scales" not in batch
  assert training.stage_scales({"lr": 0}) is None
  with pytest.raises(ValueError, match="rows differ"):
    training.stage_scales({"stage_scales": np.array([[4.0, 1.5], [2.0, 1.5]], np.float32)})
