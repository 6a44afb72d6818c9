"""tools.benchmarking's helpers and the benchmark scripts' plumbing (functional checks: no speed is judged here)."""

import json
import os
import pathlib

import ml_collections
import pytest

from tools import official
from experiments.configs import clit_train291, liif_train291
from tools import benchmarking


def _bundled(c):
  """A config's training data from bundled photographs (no ../shared/data needed)."""
  c.data.update(source="bundled", names=("astronaut", "coffee", "chelsea"), root="", limit=0)
  c.eval.heldout_sets = ml_collections.ConfigDict()
  return c


def test_side_by_side_keeps_the_first_output_and_times_every_round():
  calls = {"a": 0, "b": 0}

  def run(label):
    calls[label] += 1
    return calls[label]

  got = benchmarking.side_by_side({"a": lambda: run("a"), "b": lambda: run("b")}, reps=3)
  assert calls == {"a": 4, "b": 4}  # one warm-up call, then three timed rounds each
  assert got["a"]["output"] == 1 and got["b"]["output"] == 1  # the warm-up call's output
  assert all(got[k]["first_s"] >= 0 and got[k]["median_s"] >= 0 for k in got)


def test_train_throughput_runs_a_patches_config():
  """liif_train291 (protocol patches) used to fail in `load_training_frames`; now its real batches are timed."""
  c = _bundled(liif_train291.get_config("small"))
  r = benchmarking.train_throughput(c, steps=2, warmup=0)
  assert r["pixels_per_step"] == c.data.batch_size * c.data.queries  # B x queries HR pixels per patches step
  assert r["pixels_per_s"] > 0
  assert r["pixels_per_s"] == pytest.approx(r["pixels_per_step"] / (r["step_ms"] / 1e3))
  assert r["compiled_steps"] == 1  # no stage scales: one compiled step


@pytest.mark.slow  # two compiled CLIT steps: about 30 s of CPU
def test_train_throughput_compiles_every_cascade_scale_set_before_timing():
  """CLIT's cascade batches carry static stage scales: each distinct set is one compiled step, all warmed up."""
  c = _bundled(clit_train291.get_config("clit2,small"))
  r = benchmarking.train_throughput(c, steps=2, warmup=0)
  assert r["pixels_per_s"] > 0
  assert r["pixels_per_step"] == c.data.batch_size * c.data.queries
  # The batches alternate 2 and 1 stages (data.alternate): the two timed batches need two compiled steps.
  assert r["compiled_steps"] == 2


def test_benchmark_official_skips_a_model_without_its_checkout(tmp_path):
  rows = official.run_case("liif_edsr_x4", official.CASES["liif_edsr_x4"], tmp_path,
                                     pathlib.Path(tmp_path), reps=1, chunk=30000)
  assert len(rows) == 1 and "no checkout of the official liif code" in rows[0]["skipped"]
  table = official.markdown({"date": "d", "machine": "m", "torch": "t", "torch_threads": 2, "jax": "j",
                                       "jax_device": "cpu", "load_start": "1 1 1", "load_end": "2 2 2",
                                       "command": "c"}, rows)
  assert "| LIIF EDSR-baseline x4, 128 -> 512 | skipped: no checkout" in table and "2 2 2 at end" in table


def test_benchmark_official_runs_each_case_in_a_process_of_its_own(tmp_path):
  """By default every case is spawned afresh (a case run after others inherits their heap and threads); the rows
  come back from the child with its pid, and --one_process keeps them here."""
  json_path = tmp_path / "rows.json"
  names = ["liif_edsr_x4", "hiif_x4"]
  header, rows = official.run_cases(names, tmp_path, tmp_path, repeats=1, chunk=30000, threads=1,
                                    json_path=str(json_path))
  assert [r["case"] for r in rows] == names
  assert all("no checkout of the official" in r["skipped"] for r in rows)  # the child's own reason came back
  pids = {r["pid"] for r in rows}
  assert len(pids) == 2 and os.getpid() not in pids  # one new process per case
  assert header["processes"] == "a fresh one per case"
  assert [r["pid"] for r in json.loads(json_path.read_text())] == [r["pid"] for r in rows]
  header, rows = official.run_cases(names[:1], tmp_path, tmp_path, repeats=1, chunk=30000, threads=1,
                                    one_process=True)
  assert rows[0]["pid"] == os.getpid() and header["processes"] == "one for every case"
