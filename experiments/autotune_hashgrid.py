r"""Refill the hash-grid kernel's block-size table (kernels/hashgrid_blocks.json) from timings on an NVIDIA GPU.

  python -m experiments.autotune_hashgrid                       # every (L, F, log2 T) row of the table
  python -m experiments.autotune_hashgrid --cases=12:2:24 --n=1048576 --write

For each case, times the forward over (block_n, num_warps) candidates, then forward + backward over block_n_bwd
with the best num_warps (median of --reps runs after warm-up, random points, the paper's level resolutions),
prints the timings and the new table (JSON), and with --write rewrites kernels/hashgrid_blocks.json, the data
file kernels/hashgrid.py reads at import (`hashgrid.save_block_table`; its note records the device). Candidates
whose block is smaller than the program's threads are skipped (the threads would repeat each other's points).
Needs a GPU: the Pallas kernel does not run compiled on a CPU.
"""

import datetime
import itertools
import json

from absl import flags
import jax
import jax.numpy as jnp

from experiments import configs
from tools import benchmarking
from inrsr.models import encoding
from kernels import hashgrid

_CASES = flags.DEFINE_list("cases", None, "L:F:log2T cases (default: the keys of hashgrid.BLOCK_TABLE).")
_N = flags.DEFINE_integer("n", 1 << 20, "Points per call.")
_BLOCKS = flags.DEFINE_list("blocks", ["32", "64", "128", "256", "512"], "block_n candidates.")
_WARPS = flags.DEFINE_list("warps", ["1", "2", "4", "8"], "num_warps candidates.")
_REPS = flags.DEFINE_integer("reps", 10, "Timed repetitions (median).")
_WRITE = flags.DEFINE_bool("write", False, "Rewrite the table file kernels/hashgrid_blocks.json.")


def _inputs(num_levels, feats, log2_t, n):
  k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
  points = jax.random.uniform(k1, (n, num_levels, 6), jnp.float32, -1, 1)
  weights = jax.random.normal(k2, (n, num_levels, 64), jnp.float32)
  tables = jax.random.uniform(k3, (num_levels, 1 << log2_t, feats), jnp.float32, -1e-4, 1e-4)
  cot = jax.random.normal(k4, (n, num_levels, feats), jnp.float32)
  return points, weights, tables, cot


def _timers(resolutions, blocks):
  def fwd(p, w, t):
    return hashgrid.hashgrid_gather(p, w, t, resolutions, impl="pallas", block_sizes=blocks)

  def fwd_bwd(p, w, t, g):
    out, vjp = jax.vjp(lambda w, t: fwd(p, w, t), w, t)
    return out, vjp(g)

  return jax.jit(fwd), jax.jit(fwd_bwd)


def tune_case(num_levels: int, feats: int, log2_t: int, n: int, reps: int) -> tuple[tuple, list[dict]]:
  """Best (block_n, block_n_bwd, num_warps, num_stages) for one case, and every timing taken."""
  resolutions = encoding.level_resolutions(num_levels, 16, 128)
  points, weights, tables, cot = _inputs(num_levels, feats, log2_t, n)
  rows = []
  fwd_times = {}
  for bn, warps in itertools.product((int(b) for b in _BLOCKS.value), (int(w) for w in _WARPS.value)):
    if bn < 32 * warps:
      continue
    fwd, _ = _timers(resolutions, hashgrid.BlockSizes(block_n=bn, block_n_bwd=bn, num_warps=warps))
    t = benchmarking.time_fn(fwd, points, weights, tables, reps=reps)
    fwd_times[bn, warps] = t
    rows.append(dict(L=num_levels, F=feats, log2_t=log2_t, block_n=bn, num_warps=warps, fwd_ms=t * 1e3))
    print(rows[-1], flush=True)
  bn, warps = min(fwd_times, key=fwd_times.get)
  bwd_times = {}
  for bn_bwd in (int(b) for b in _BLOCKS.value):
    if bn_bwd < 32 * warps:
      continue
    _, fwd_bwd = _timers(resolutions, hashgrid.BlockSizes(block_n=bn, block_n_bwd=bn_bwd, num_warps=warps))
    t = benchmarking.time_fn(fwd_bwd, points, weights, tables, cot, reps=reps)
    bwd_times[bn_bwd] = t
    rows.append(dict(L=num_levels, F=feats, log2_t=log2_t, block_n=bn, block_n_bwd=bn_bwd, num_warps=warps,
                     fwd_bwd_ms=t * 1e3))
    print(rows[-1], flush=True)
  return (bn, min(bwd_times, key=bwd_times.get), warps, 1), rows


def main(argv):
  del argv
  if jax.default_backend() != "gpu":
    raise SystemExit("autotune_hashgrid needs an NVIDIA GPU (the compiled Pallas kernel); for a static check "
                     "on CPU use `python -m experiments.kernel_report`.")
  cases = ([tuple(int(x) for x in c.split(":")) for c in _CASES.value] if _CASES.value
           else sorted(hashgrid.BLOCK_TABLE))
  table = dict(hashgrid.BLOCK_TABLE)
  device = benchmarking.device_description()
  print(f"device: {device}")
  for case in cases:
    table[case], _ = tune_case(*case, n=_N.value, reps=_REPS.value)
    print(f"{case}: {table[case]}", flush=True)
  note = (f"Pallas block sizes per (L, F, log2 T), read by kernels/hashgrid.py. Rows {sorted(cases)} timed on "
          f"{device} ({datetime.date.today()}, python -m experiments.autotune_hashgrid, n={_N.value}, "
          f"median of {_REPS.value}).")
  if set(table) - set(cases):
    note += " Other rows: " + json.loads(hashgrid.BLOCK_TABLE_FILE.read_text()).get("note", "")
  print(hashgrid.block_table_json(table, note))
  if _WRITE.value:
    hashgrid.save_block_table(table, hashgrid.BLOCK_TABLE_FILE, note)
    print("wrote", hashgrid.BLOCK_TABLE_FILE)


if __name__ == "__main__":
  configs.run(main, names=())
