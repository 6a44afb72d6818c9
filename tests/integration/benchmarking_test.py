"""tools.benchmarking's helpers and the benchmark scripts' plumbing (functional checks: no speed is judged here)."""

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
