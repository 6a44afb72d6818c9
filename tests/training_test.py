"""Tests for training: loss decreases, exact resume after SIGKILL, NaN stop, corrupt checkpoints."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import srinr_demo
from inrsr import checkpoints, training

REPO = pathlib.Path(__file__).resolve().parents[1]


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
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  steps = 30
  full = tmp_path / "full"
  subprocess.run(_train_cmd(full, steps), cwd=REPO, env=env, check=True, capture_output=True)

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
