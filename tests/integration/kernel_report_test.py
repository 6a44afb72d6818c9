"""The Pallas hash-grid kernels compiled for an H100 (sm_90a) on this CPU host: both compile, no spills, lean.

Needs the `kernel-report` extra (XLA's CUDA compiler plugin, ptxas, nvdisasm); without it the report tests skip and
only the PTX-analysis unit tests and the block-size table file tests run.
"""

import json
import os

os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # Before jax loads its plugins (at first device use).

import pytest  # noqa: E402

from tools import kernel_report  # noqa: E402

MISSING = kernel_report.missing_requirements()
needs_extra = pytest.mark.skipif(
    bool(MISSING), reason="needs the kernel-report extra (pip install -e '.[kernel-report]'); missing: "
    + ", ".join(MISSING))


@pytest.fixture(scope="module")
def summary():
  return kernel_report.summary(kernel_report.kernel_report())


@pytest.fixture(scope="module")
def f8_summary():  # F = 8: the widest rows, the case that spilled with one thread per point
  return kernel_report.summary(kernel_report.kernel_report(kernel_report.Case(feats=8)))


@needs_extra
def test_both_kernels_compile_for_sm90_without_spills(summary, f8_summary):
  for s in (summary, f8_summary):
    assert set(s) == {"hashgrid_fwd", "hashgrid_bwd"}
    for name, m in s.items():
      assert m["spill_bytes"] == 0 and m["stack_bytes"] == 0, (name, m)
      assert m["registers"] > 0 and m["global_loads"] > 0, (name, m)


@needs_extra
def test_kernels_are_lean_at_the_default_blocks(summary):
  fwd, bwd = summary["hashgrid_fwd"], summary["hashgrid_bwd"]
  assert fwd["registers"] <= 128 and bwd["registers"] <= 168, (fwd, bwd)
  for m in (fwd, bwd):
    assert m["coordinate_load_repeat"] == 1, m  # each coordinate of the block loaded by one thread, once
    assert m["fences"] == 0 and m["fenced_atomics"] == 0 and m["cctl"] == 0, m
  assert fwd["global_atomics"] == 0 and bwd["global_atomics"] > 0


PTX = """
.visible .entry hashgrid_bwd(
\t.param .u64 .ptr .align 16 hashgrid_bwd_param_0,
\t.param .u64 .ptr .align 16 hashgrid_bwd_param_2,
\t.param .u64 .ptr .align 16 hashgrid_bwd_param_7
)
{
\tld.param.b64 \t%rd1, [hashgrid_bwd_param_0];
\tcvta.to.global.u64 \t%rd2, %rd1;
\tld.param.b64 \t%rd3, [hashgrid_bwd_param_2];
\tld.param.b64 \t%rd9, [hashgrid_bwd_param_7];
\tmov.u32 %r1, 0x0; @%p1 ld.global.b32 { %r1 }, [ %rd2 + 0 ];
\tmul.wide.u32 \t%rd4, %r1, 8;
\tadd.s64 \t%rd5, %rd3, %rd4;
$L__BB0_1:
\tmov.u32 %r2, 0x0; mov.u32 %r3, 0x0; ld.global.v2.b32 { %r2, %r3 }, [ %rd5 + 0 ];
\tadd.s64 \t%rd10, %rd9, %rd4;
\tatom.global.gpu.acq_rel.add.v2.f32 { %r4, %r5 }, [ %rd10 + 0 ], { %r2, %r3 };
\tred.global.gpu.relaxed.add.f32 [ %rd10 + 0 ], %r2;
\t@%p2 bra \t$L__BB0_1;
\tfence.acq_rel.gpu;
\tret;
}
"""


def test_ptx_memory_ops_attribute_addresses_to_arguments():
  ops = kernel_report.ptx_memory_ops(PTX, "hashgrid_bwd")
  # The gather's address comes from a loaded coordinate, but only the table's pointer counts.
  assert ops["loads"] == {"points": 1, "tables": 1}
  assert ops["load_bytes"] == {"points": 4, "tables": 8}
  assert ops["atomics"] == {"dtables": 2}
  assert ops["atomic_semantics"] == {"atom.acq_rel": 1, "red.relaxed": 1}
  assert ops["ptx_fences"] == 1 and ops["loops"] == 1


def test_occupancy_and_target_config():
  assert kernel_report.occupancy(255, 128, 2048)["ctas_per_sm"] == 2  # the kernel at 255 registers, before its rewrite
  assert kernel_report.occupancy(48, 128, 0) == dict(ctas_per_sm=10, occupancy=0.625, limited_by="registers")
  assert kernel_report.occupancy(32, 128, 0)["ctas_per_sm"] == 16
  text = kernel_report.target_config_text()
  assert "cuda_compute_capability { major: 9 minor: 0 }" in text and "core_count: 132" in text


def test_block_table_round_trips_through_its_json_file(tmp_path):
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top
  shipped = json.loads(hashgrid.BLOCK_TABLE_FILE.read_text())  # parsed here, without the module's reader
  assert hashgrid.BLOCK_TABLE == {(r["num_levels"], r["feats"], r["log2_table_size"]):
                                  (r["block_n"], r["block_n_bwd"], r["num_warps"], r["num_stages"])
                                  for r in shipped["rows"]}
  # The shipped file is in the writer's own layout, so a rewrite changes only the rows it changes.
  assert hashgrid.block_table_json(hashgrid.BLOCK_TABLE, shipped["note"]) == hashgrid.BLOCK_TABLE_FILE.read_text()
  table = {**hashgrid.BLOCK_TABLE, (16, 2, 19): (256, 64, 8, 1)}
  path = tmp_path / "blocks.json"
  hashgrid.save_block_table(table, path, note="timed on a test")
  assert hashgrid.load_block_table(path) == table
  written = json.loads(path.read_text())
  assert written["note"] == "timed on a test" and {"num_levels": 16, "feats": 2, "log2_table_size": 19,
                                                    "block_n": 256, "block_n_bwd": 64, "num_warps": 8,
                                                    "num_stages": 1} in written["rows"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.json"]  # no temporary file left


def test_bad_block_table_file_is_one_line_naming_it(tmp_path):
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top
  row = {"num_levels": 4, "feats": 2, "log2_table_size": 14, "block_n": 128, "block_n_bwd": 128, "num_warps": 4,
         "num_stages": 1}
  cases = [("{", "not a readable JSON block-size table"), ("[]", 'expected a JSON object with a list "rows"'),
           (json.dumps({"rows": [{**row, "block_n": "128"}]}), r"rows\[0\]=.* positive integer fields"),
           (json.dumps({"rows": [{**row, "warps": 4}]}), r"rows\[0\]=.* must have exactly"),
           (json.dumps({"rows": [{**row, "block_n": 96}]}), r"rows\[0\]: block_n=96 must be a power of two"),
           (json.dumps({"rows": [row, {**row, "block_n": 64}]}), r"rows\[1\] repeats the case")]
  for i, (text, match) in enumerate(cases):
    path = tmp_path / f"t{i}.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
      hashgrid.load_block_table(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
  with pytest.raises(ValueError, match="must be a power of two"):  # checked before the file is touched
    hashgrid.save_block_table({(4, 2, 14): (96, 128, 4, 1)}, tmp_path / "t0.json")
  assert (tmp_path / "t0.json").read_text() == "{"


HLO = """
%fused_gather (param_0.1: f32[4,1024,2], param_1.1: s32[16,1]) -> f32[16,1,2] {
  %param_0.1 = f32[4,1024,2]{2,1,0} parameter(0)
  %slice.1 = f32[1,1024,2]{2,1,0} slice(%param_0.1), slice={[1:2], [0:1024], [0:2]}
  %bitcast.1 = f32[1024,2]{1,0} bitcast(%slice.1)
  %param_1.1 = s32[16,1]{1,0} parameter(1)
  ROOT %gather.1 = f32[16,1,2]{2,1,0} gather(%bitcast.1, %param_1.1), offset_dims={1,2}, slice_sizes={1,2}
}

%fused_scale (param_0.2: f32[16,1,2]) -> f32[16,1,2] {
  %param_0.2 = f32[16,1,2]{2,1,0} parameter(0)
  ROOT %add.2 = f32[16,1,2]{2,1,0} add(%param_0.2, %param_0.2)
}

%body (p.3: (s32[], f32[4,1024,2], s32[16,1])) -> (s32[], f32[4,1024,2], s32[16,1]) {
  %p.3 = (s32[], f32[4,1024,2]{2,1,0}, s32[16,1]{1,0}) parameter(0)
  %t.3 = f32[4,1024,2]{2,1,0} get-tuple-element(%p.3), index=1
  %i.3 = s32[16,1]{1,0} get-tuple-element(%p.3), index=2
  %loop_gather_fusion = f32[16,1,2]{2,1,0} fusion(%t.3, %i.3), kind=kLoop, calls=%fused_gather
  %loop_add_fusion = f32[16,1,2]{2,1,0} fusion(%loop_gather_fusion), kind=kLoop, calls=%fused_scale
  ROOT %tuple.3 = (s32[], f32[4,1024,2]{2,1,0}, s32[16,1]{1,0}) tuple(%p.3, %t.3, %i.3)
}

ENTRY %main (tables: f32[4,1024,2], idx: s32[16,1]) -> f32[4,1024,2] {
  %tables = f32[4,1024,2]{2,1,0} parameter(0)
  %idx = s32[16,1]{1,0} parameter(1)
  %while.1 = (s32[], f32[4,1024,2]{2,1,0}, s32[16,1]{1,0}) while(%tables), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  ROOT %copy.1 = f32[4,1024,2]{2,1,0} copy(%tables)
}
"""


def test_hlo_bytes_counts_gathered_sectors_loops_and_copies():
  r = kernel_report.hlo_bytes(HLO)
  rows = {name: (calls, read, written) for name, calls, read, written in r["kernels"]}
  # 16 gathered 8-byte rows at one 32-byte sector each from a slice of the table, plus the 64-byte indices.
  assert rows["loop_gather_fusion"] == (3, 3 * (16 * 32 + 64), 3 * 128)
  assert rows["loop_add_fusion"] == (3, 3 * 128, 3 * 128)
  assert rows["copy.1"] == (1, 32768, 32768)
  assert r["read"] == 3 * 576 + 3 * 128 + 32768 and r["written"] == 3 * 256 + 32768
  case = kernel_report.Case(num_levels=1, n=1, feats=2)
  assert kernel_report.fused_kernel_bytes(case, "hashgrid_fwd") == (24 + 256 + 64 * 32, 8)
