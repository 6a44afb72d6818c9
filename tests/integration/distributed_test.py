"""Multi-process training: 2 CPU processes on localhost equal 1 process, and resume exactly after both are killed."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from conftest import REPO, module_command, module_env
from inrsr.data import pipeline
from inrsr.train import checkpoints, distributed

STEPS = 16
FEW = 4  # steps over which 1 and 2 processes are compared (Adam amplifies float differences later)
# Every run compiles with XLA's backend optimisation off (less compiling for 5 processes; 16 tiny steps gain
# nothing from an optimised program); the programs they compare are compiled alike.
XLA_FLAGS = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _cmd(workdir, *extra, steps=STEPS):
  return module_command("experiments.train", "--config=srinr_demo:small", f"--workdir={workdir}",
                        f"--config.train.steps={steps}", f"--config.train.checkpoint_every={FEW}",
                        "--config.train.log_every=1", "--config.train.keep_checkpoints=10", "--progress=false", *extra)


def _start_two(workdir):
  port = _free_port()
  return [subprocess.Popen(_cmd(workdir, f"--coordinator_address=localhost:{port}", "--num_processes=2",
                                f"--process_id={i}"), cwd=REPO, env=_env(workdir), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True) for i in range(2)]


def _env(workdir):
  # One persistent compilation cache for every run of the module: the same program is compiled once.
  env = module_env({"JAX_COMPILATION_CACHE_DIR": str(pathlib.Path(workdir).parent / "jax_cache"),
                    "XLA_FLAGS": XLA_FLAGS})
  for name in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_INDEX):
    env.pop(name, None)
  return env


def _wait(procs):
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]


def _params(workdir, step=None):
  _, params, _, step = checkpoints.restore_model(workdir, step)
  return jax.tree.map(np.asarray, params), step


def _losses(workdir):
  return {r["step"]: r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """An uninterrupted 2-process run, the same config in 1 process, and a 2-process run killed and restarted."""
  root = tmp_path_factory.mktemp("distributed")
  two, one, killed = root / "two", root / "one", root / "killed"
  procs = _start_two(two)
  single = subprocess.Popen(_cmd(one, steps=FEW), cwd=REPO, env=_env(one), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
  _wait(procs + [single])

  procs = _start_two(killed)
  deadline = time.time() + 600
  while not (killed / "checkpoints" / str(2 * FEW) / "commit_success.txt").exists():
    assert all(p.poll() is None for p in procs), "a process ended before the run could be killed"
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  for p in procs:
    p.send_signal(signal.SIGKILL)
    p.wait()
  done = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
  assert done and max(done) < STEPS, f"the run was not interrupted mid-way: {done}"
  _wait(_start_two(killed))
  return {"two": two, "one": one, "killed": killed}


def test_two_processes_equal_one_process_with_the_same_global_batch(runs):
  want, want_step = _params(runs["one"])
  got, got_step = _params(runs["two"], FEW)
  assert want_step == got_step == FEW
  # The gradient is summed in another order (per device, then across processes): float tolerance, not bits. Adam
  # divides by the root of the squared gradient, so an entry whose gradient is near 0 can move by a fraction of the
  # learning rate (5e-3) apart: atol 1e-4 (one entry in 4608 was 4.8e-5 apart); 4 more steps move 1e-3 and more.
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4), got, want)
  l_one, l_two = _losses(runs["one"]), _losses(runs["two"])
  assert sorted(l_two) == list(range(1, STEPS + 1))  # only process 0 writes, one line per step
  np.testing.assert_allclose([l_two[s] for s in range(1, FEW + 1)], [l_one[s] for s in range(1, FEW + 1)],
                             rtol=1e-5)
  # Not a comparison of two idle states: 4 more steps move the parameters far beyond the tolerance.
  later, _ = _params(runs["two"], 2 * FEW)
  assert max(jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), later, got))) > 1e-3


def test_both_processes_killed_then_restarted_resume_exactly(runs):
  want, _ = _params(runs["two"])
  got, step = _params(runs["killed"])
  assert step == STEPS
  jax.tree.map(np.testing.assert_array_equal, got, want)
  steps = [json.loads(l)["step"] for l in (runs["killed"] / "metrics.jsonl").read_text().splitlines()]
  assert steps == list(range(1, STEPS + 1))  # lines after the last checkpoint were dropped, none repeated
  data = sorted(p.name for p in (runs["killed"] / "checkpoints" / str(STEPS) / "data").glob("process_*"))
  assert data == ["process_0-of-2.json", "process_1-of-2.json"]  # each process's iterator state


def test_process_shards_make_the_single_process_batch():
  """Process p of N reads the examples p, p + N, ... of each global batch: together the 1-process batch."""
  source = pipeline.FrameSource([np.full((2, 2, 3), i, np.float32) for i in range(7)])
  make = lambda ft, rng: {"v": np.float32(ft[0][0, 0, 0] * 1000 + rng.integers(1000))}
  take = lambda shard, b: [next(it)["v"] for it in [iter(pipeline.batched_dataset(
      source, make, batch_size=b, seed=5, shard=shard))] for _ in range(3)]
  single = take((0, 1), 4)
  parts = [take((p, 2), 4) for p in range(2)]
  for k in range(3):
    assert sorted(np.concatenate([parts[0][k], parts[1][k]])) == sorted(single[k])
    assert len(parts[0][k]) == len(parts[1][k]) == 2
  with pytest.raises(ValueError, match="batch_size=3 must be > 0 and a multiple of the 2 processes"):
    pipeline.batched_dataset(source, make, batch_size=3, seed=5, shard=(0, 2))


def test_distributed_settings_name_what_is_missing(monkeypatch):
  for name in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_INDEX):
    monkeypatch.delenv(name, raising=False)
  assert distributed.settings() == (None, None, None)
  assert not distributed.initialize()  # nothing asks for several processes: a single-process run
  with pytest.raises(ValueError, match="--num_processes --process_id missing"):
    distributed.settings("localhost:1234")
  with pytest.raises(ValueError, match=r"process_id=2 must be in \[0, num_processes=2\)"):
    distributed.settings("localhost:1234", 2, 2)
  monkeypatch.setenv(distributed.ENV_ADDRESS, "host0:99")
  monkeypatch.setenv(distributed.ENV_COUNT, "4")
  monkeypatch.setenv(distributed.ENV_INDEX, "3")
  assert distributed.settings() == ("host0:99", 4, 3)
  monkeypatch.setenv(distributed.ENV_COUNT, "four")
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='four' must be an integer"):
    distributed.settings()
