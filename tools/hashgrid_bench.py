"""Benchmark cases for the hash-grid op (used by experiments/benchmark_hashgrid.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from inrsr.models import encoding
from tools import benchmarking
from kernels import hashgrid

SPEC_BANDWIDTH_GBS = {"H100": 3350.0, "H200": 4800.0}


def spec_bandwidth_gbs() -> float:
  kind = jax.devices()[0].device_kind.upper()
  return next((v for k, v in SPEC_BANDWIDTH_GBS.items() if k in kind), 0.0)


def forward_bytes(n: int, num_levels: int, feats: int, dims: int = 6) -> int:
  """Bytes the forward must move at least: points, weights, 2**D gathered rows (32-byte sectors), output."""
  corners = 1 << dims
  row_bytes = max(32, feats * 4)  # A gathered row costs at least one 32-byte memory sector.
  return n * num_levels * (dims * 4 + corners * 4 + corners * row_bytes + feats * 4)


def run_case(*, name, num_levels, log2_t, feats, n, impls, reps=5, bandwidth_gbs=0.0) -> dict:
  """Time forward and forward+backward for each impl on one size; returns a dict of figures."""
  resolutions = encoding.level_resolutions(num_levels, 16, 128)
  key = jax.random.key(0)
  k1, k2, k3 = jax.random.split(key, 3)
  points = jax.random.uniform(k1, (n, num_levels, 6), jnp.float32, -1, 1)
  weights = jax.random.normal(k2, (n, num_levels, 64), jnp.float32)
  tables = jax.random.uniform(k3, (num_levels, 1 << log2_t, feats), jnp.float32, -1e-4, 1e-4)
  row = {"case": name, "N": n, "L": num_levels, "T": f"2^{log2_t}", "F": feats}
  fbytes = forward_bytes(n, num_levels, feats)
  row["forward_bytes"] = fbytes
  if bandwidth_gbs:
    row["bandwidth_time_ms"] = fbytes / (bandwidth_gbs * 1e9) * 1e3
  for impl in impls:
    fwd = jax.jit(lambda p, w, t, impl=impl: hashgrid.hashgrid_gather(p, w, t, resolutions, impl=impl))

    def loss(p, w, t, impl=impl):
      return jnp.sum(hashgrid.hashgrid_gather(p, w, t, resolutions, impl=impl))

    fwd_bwd = jax.jit(jax.grad(loss, argnums=(1, 2)))
    t_fwd = benchmarking.time_fn(fwd, points, weights, tables, reps=reps)
    t_bwd = benchmarking.time_fn(fwd_bwd, points, weights, tables, reps=reps)
    row[f"{impl}_fwd_ms"] = t_fwd * 1e3
    row[f"{impl}_fwd_bwd_ms"] = t_bwd * 1e3
    row[f"{impl}_fwd_qps"] = n / t_fwd
    row[f"{impl}_fwd_bwd_qps"] = n / t_bwd
    row[f"{impl}_fwd_bwd_peak_bytes"] = benchmarking.compiled_peak_bytes(fwd_bwd, points, weights, tables)
  row["floor_bytes"] = int(tables.nbytes * 2 + weights.nbytes * 2 + points.nbytes)
  return row


def markdown(rows) -> str:
  impls = sorted({k.split("_fwd_ms")[0] for r in rows for k in r if k.endswith("_fwd_ms")})
  head = "| case | N | L | T | F | " + " | ".join(
      f"{i} fwd q/s | {i} fwd+bwd q/s | {i} fwd+bwd peak GB" for i in impls) + " | fwd bytes GB | at bandwidth ms |"
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    cells = [r["case"], str(r["N"]), str(r["L"]), r["T"], str(r["F"])]
    for i in impls:
      peak = r.get(f"{i}_fwd_bwd_peak_bytes")
      cells += [f"{r[f'{i}_fwd_qps']:.3g}", f"{r[f'{i}_fwd_bwd_qps']:.3g}",
                "n/a" if peak is None else f"{peak / 1e9:.2f}"]
    cells += [f"{r['forward_bytes'] / 1e9:.2f}",
              f"{r['bandwidth_time_ms']:.2f}" if "bandwidth_time_ms" in r else "n/a"]
    lines.append("| " + " | ".join(cells) + " |")
  if "pallas" in impls and "reference" in impls:
    lines.append("")
    for r in rows:
      lines.append(f"- {r['case']} N={r['N']}: pallas / reference fwd+bwd throughput = "
                   f"{r['pallas_fwd_bwd_qps'] / r['reference_fwd_bwd_qps']:.2f}x")
  return "\n".join(lines)
