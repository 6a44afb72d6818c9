"""Tests for tools.aot: a config's train step compiled ahead of time for a TPU topology, without a TPU.

The compiles need libtpu (the `aot` extra, installed after the main CI run as `kernel-report` is); without it
those tests skip, naming it. The plan search, the batch shapes and the memory figures are checked everywhere.
"""

import importlib.util
import math

import jax
import jax.numpy as jnp
import pytest

from experiments.configs import liif_train291, srinr_celeba, srinr_demo
from inrsr.train import sharding, training
from tools import aot

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu is not installed (pip install -e '.[aot]')")
TABLES = (12, 1 << 24, 2)


def _state_bytes_per_device(s: aot.Setup, plan: aot.Plan) -> int:
  """Bytes of the train state one device holds: every leaf whole, the hash tables (and their Adam moments) split
  over the model axis by `plan`; counted from the abstract state's shapes."""
  total = 0
  for path, x in jax.tree_util.tree_leaves_with_path(s.abstract_state):
    n = math.prod(x.shape) * x.dtype.itemsize
    is_table = jax.tree_util.keystr(path).endswith("['tables']")
    total += n // plan.model if is_table and plan.table_sharding != "replicated" else n
  return total


def test_candidate_plans_least_communication_first():
  p = aot.Plan
  tables = math.prod(TABLES) * 4  # 1.6 GB
  n = 32 * 4096
  # Hand-worked per-device bytes (ring collectives): data parallel all-reduces the whole gradient, 2 (d-1)/d of
  # it; levels over 4 chips all-reduce nothing over a data axis of 1 and all-gather / reduce-scatter the
  # features, 2 * 3/4 * N * L * F * 4 bytes.
  assert aot.communication_bytes(p(4, 1), n, tables, TABLES) == 1.5 * tables
  assert aot.communication_bytes(p(1, 4, "levels"), n, tables, TABLES) == 2 * 0.75 * n * 12 * 2 * 4
  assert aot.communication_bytes(p(2, 2, "levels"), n, tables, TABLES) == tables / 2 + 2 * 0.5 * n / 2 * 12 * 2 * 4
  plans = aot.candidate_plans(4, 32, TABLES, points=n, params_bytes=tables)
  assert plans == [p(1, 4, "levels"), p(2, 2, "levels"), p(2, 2, "rows"), p(1, 4, "rows"), p(4, 1)]
  # 8 devices: L = 12 splits over 2 and 4 devices by levels, not over 8; rows always split (T = 2^24).
  assert [x.mesh + " " + x.table_sharding for x in aot.candidate_plans(8, 32, TABLES, points=n)] == [
      "2x4 levels", "2x4 rows", "4x2 levels", "4x2 rows", "1x8 rows", "8x1 replicated"]
  # A batch of 2 on 4 devices: data axes of 1 or 2 only; a model without tables: data parallelism alone.
  assert p(4, 1) not in aot.candidate_plans(4, 2, TABLES) and len(aot.candidate_plans(4, 2, TABLES)) == 4
  assert aot.candidate_plans(4, 16, None) == [p(4, 1)] and aot.candidate_plans(4, 2, None) == []


def test_mesh_flag_is_parsed_or_named_in_the_error():
  assert aot.parse_mesh("2x2", 4) == aot.Plan(2, 2, "levels")
  assert aot.parse_mesh("4x1", 4) == aot.Plan(4, 1, "replicated")
  assert aot.parse_mesh("1x4", 4, "rows") == aot.Plan(1, 4, "rows")
  with pytest.raises(ValueError, match="--mesh='4' must be DATAxMODEL"):
    aot.parse_mesh("4", 4)
  with pytest.raises(ValueError, match="--mesh=2x2 has 4 devices; the target has 8"):
    aot.parse_mesh("2x2", 8)
  with pytest.raises(ValueError, match="--target='tpu:v9'"):
    aot.get_target("tpu:v9")


def test_example_batch_has_the_pipelines_shapes():
  """The abstract batch (blank frames through the example maker) against a real batch of the bundled photographs."""
  config = srinr_demo.get_config("small")
  example, scales, info = aot.example_batch(config)
  dataset, steps, _, pixels = training.training_data(config)
  real = next(iter(dataset))
  real.pop("scale")
  assert scales is None and info["total_steps"] == steps and info["hr_pixels"] * config.data.batch_size == pixels
  assert {k: ((config.data.batch_size,) + v.shape, v.dtype) for k, v in example.items()} == {
      k: (v.shape, v.dtype) for k, v in real.items()}


def test_memory_figures_of_a_compiled_function():
  compiled = jax.jit(lambda x: x[:10] * 2.0).lower(jnp.zeros((1000, 250), jnp.float32)).compile()
  f = sharding.memory_figures(compiled)
  assert f["argument_bytes"] == 1000 * 250 * 4 and f["output_bytes"] == 10 * 250 * 4
  assert f["peak_bytes_per_device"] == f["argument_bytes"] + f["output_bytes"] + f["temp_bytes"] - f["alias_bytes"]
  line = sharding.device_memory_line(compiled, jax.devices()[0])
  assert line.startswith("per device: arguments 0.00 GB, outputs 0.00 GB") and "peak 0.00 GB" in line


@needs_libtpu
def test_srinr_small_compiles_for_v5e_and_reports_its_memory(tmp_path):
  config = srinr_celeba.get_config("small")  # L=4, T=2^14, a batch of 2 x 512 pixels
  config.eval.chunk = 4096
  report = aot.will_it_fit(config, "tpu:v5e:2x2", log=None, dump_to=str(tmp_path))
  target = aot.TARGETS["tpu:v5e:2x2"]
  plan = aot.Plan(1, 4, "levels")  # the least communication (the batch of 2 could not split over 4 devices anyway)
  assert (report["mesh"], report["table_sharding"], report["fits"]) == (plan.mesh, plan.table_sharding, True)
  assert report["capacity_bytes"] == target.capacity_bytes == int(15.75 * (1 << 30))
  assert report["batch"]["frames"] == 2 and report["batch"]["hr_pixels"] == 512
  assert report["batch"]["shapes"]["coords"] == [2, 512, 3]
  state = _state_bytes_per_device(aot.setup(config, target), plan)
  # Arguments: the state (tables split over the model axis) and the batch (data axis of 1).
  assert state <= report["argument_bytes"] <= state + 1_000_000
  assert report["peak_bytes_per_device"] == (report["argument_bytes"] + report["output_bytes"]
                                             + report["temp_bytes"] - report["alias_bytes"])
  assert report["alias_bytes"] >= state - 1_000  # the donated state is updated in place
  assert report["flops"] > 0 and report["largest_collective_bytes"] > 0  # the levels layout all-gathers features
  assert report["inference"]["fits"] and report["inference"]["inputs"]["coords"] == [1, 4096, 3]
  # XLA's buffer assignment: the tables are stored unpadded, and the texture patches (points last on a TPU,
  # encoding.sample_patches) are not padded to (8, 128) tiles of their 3-channel or 4-tap minor dimensions.
  buffers = aot.largest_buffers(str(tmp_path / "plan0"), top=10_000)
  assert all(b["physical_bytes"] >= b["logical_bytes"] for b in buffers)
  tables = [b for b in buffers if b["shape"] == "f32[1,16384,2]" and "tables" in b["op"]]  # 1 of 4 levels a chip
  assert tables and all(b["physical_bytes"] == b["logical_bytes"] for b in tables)
  texture = [b for b in buffers if "/texture/" in b["op"] and b["logical_bytes"] > 100_000]
  assert texture and max(b["physical_bytes"] / b["logical_bytes"] for b in texture) < 4, texture[:3]


@needs_libtpu
def test_generalising_model_compiles_for_v5e_data_parallel():
  config = liif_train291.get_config("small")
  config.data.batch_size = 4  # one crop per chip
  report = aot.will_it_fit(config, "tpu:v5e:2x2", inference=False, log=None)
  assert (report["mesh"], report["table_sharding"], report["fits"]) == ("4x1", "replicated", True)
  assert report["batch"]["shapes"]["lr"] == [4, 16, 16, 3] and report["batch"]["shapes"]["cells"] == [4, 64, 2]
  state = _state_bytes_per_device(aot.setup(config, "tpu:v5e:2x2"), aot.Plan(4, 1))
  # The arguments are the replicated state and a quarter of the batch, as the TPU stores them: in (8, 128) tiles,
  # which pad this tiny model's (3, 3, 8, 8) kernels and (8,) biases many times over (XLA's figure: 11x).
  assert state < report["argument_bytes"] <= 16 * state
  assert len(report["plans_tried"]) == 1


@needs_libtpu
def test_oversized_batch_is_reported_as_not_fitting():
  config = srinr_celeba.get_config("small")
  config.data.update(batch_size=4096, pixels_per_frame=4096)  # 16.8M points: 4.2M a chip
  report = aot.will_it_fit(config, "tpu:v5e:2x2", aot.Plan(4, 1), inference=False, log=None)
  assert not report["fits"]
  assert report["temp_bytes"] > report["capacity_bytes"]
  assert "DOES NOT FIT" in aot.summary(report)
