"""3x3 convolutions on CPU: Winograd (`kernels.winograd`) against XLA's direct one (experiments/benchmark_conv.py)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from inrsr.models import edsr
from kernels import winograd
from tools import benchmarking


def _f64_conv(x: np.ndarray, k: np.ndarray) -> np.ndarray:
  x, k = x.astype(np.float64), k.astype(np.float64)
  _, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(xp[:, i:i + h, j:j + w] @ k[i, j] for i in range(3) for j in range(3))


def layer_case(shape: tuple[int, int, int, int], features: int, reps: int) -> dict:
  """One layer x (B, H, W, C) -> features: forward, and forward with both gradients of 0.5 |y|^2, side by side.

  Returns:
    {"case", "direct_fwd_ms", "winograd_fwd_ms", "direct_train_ms", "winograd_train_ms", "direct_err",
     "winograd_err", "first_s" per impl}: medians in ms; errors are max |y - float64 sums|.
  """
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32)
  k = (rng.standard_normal((3, 3, shape[-1], features)) / np.sqrt(9 * shape[-1])).astype(np.float32)
  impls = {"direct": winograd.conv3x3_reference, "winograd": winograd.conv3x3}
  runs = {}
  for name, op in impls.items():
    fwd = jax.jit(op)
    train = jax.jit(jax.grad(lambda x, k, op=op: 0.5 * jnp.sum(jnp.square(op(x, k))), argnums=(0, 1)))
    runs[f"{name}_fwd"] = lambda f=fwd: np.asarray(f(x, k))
    runs[f"{name}_train"] = lambda f=train: [np.asarray(g) for g in f(x, k)]
  got = benchmarking.side_by_side(runs, reps)
  want = _f64_conv(x, k)
  row = {"case": f"layer {shape} -> {features}"}
  for name in impls:
    row[f"{name}_fwd_ms"] = 1e3 * got[f"{name}_fwd"]["median_s"]
    row[f"{name}_train_ms"] = 1e3 * got[f"{name}_train"]["median_s"]
    row[f"{name}_err"] = float(np.abs(got[f"{name}_fwd"]["output"] - want).max())
    row[f"{name}_first_s"] = got[f"{name}_train"]["first_s"]
  return row


def encoder_case(batch: int, size: int, reps: int) -> dict:
  """EDSR-baseline (16 blocks, 64 channels) on (batch, size, size, 3): forward, and forward with the parameters'
  gradient of mean |features|, as the model runs it (Winograd, blocks scanned) against XLA's direct convolution
  (blocks unrolled: what `edsr.WINOGRAD_MAX_ELEMENTS = 0` selects), side by side."""
  x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  model = edsr.EDSR()
  params = model.init(jax.random.PRNGKey(0), x[:1, :8, :8])
  fns, first, outputs, limit = {}, {}, {}, edsr.WINOGRAD_MAX_ELEMENTS
  for name, max_elements in (("direct", 0), ("winograd", limit)):
    edsr.WINOGRAD_MAX_ELEMENTS = max_elements  # read while tracing, in the first calls below
    try:
      fns[f"{name}_fwd"] = jax.jit(lambda p, x: model.apply(p, x))
      fns[f"{name}_train"] = jax.jit(jax.grad(lambda p, x: jnp.mean(jnp.abs(model.apply(p, x)))))
      outputs[name] = np.asarray(fns[f"{name}_fwd"](params, x))
      t = time.perf_counter()
      jax.block_until_ready(fns[f"{name}_train"](params, x))
      first[name] = time.perf_counter() - t
    finally:
      edsr.WINOGRAD_MAX_ELEMENTS = limit
  medians = benchmarking.alternating_times(
      {label: (lambda f=f: jax.block_until_ready(f(params, x))) for label, f in fns.items()}, reps)
  row = {"case": f"EDSR encoder ({batch}, {size}, {size}, 3)"}
  for name in ("direct", "winograd"):
    row[f"{name}_fwd_ms"] = 1e3 * medians[f"{name}_fwd"]
    row[f"{name}_train_ms"] = 1e3 * medians[f"{name}_train"]
    row[f"{name}_first_s"] = first[name]
  row["max_abs_diff"] = float(np.abs(outputs["direct"] - outputs["winograd"]).max())
  return row


def markdown(rows: list[dict]) -> str:
  """The rows as a Markdown table (times in ms; speed-up = direct / Winograd)."""
  lines = ["| case | direct fwd | Winograd fwd | speed-up | direct fwd+grads | Winograd fwd+grads | speed-up | "
           "first call direct / Winograd (fwd+grads) | error |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    err = (f"{r['direct_err']:.1e} / {r['winograd_err']:.1e} (from float64)" if "direct_err" in r
           else f"{r['max_abs_diff']:.1e} (between them)")
    lines.append(f"| {r['case']} | {r['direct_fwd_ms']:.1f} | {r['winograd_fwd_ms']:.1f} | "
                 f"{r['direct_fwd_ms'] / r['winograd_fwd_ms']:.2f} | {r['direct_train_ms']:.1f} | "
                 f"{r['winograd_train_ms']:.1f} | {r['direct_train_ms'] / r['winograd_train_ms']:.2f} | "
                 f"{r['direct_first_s']:.1f} / {r['winograd_first_s']:.1f} s | {err} |")
  return "\n".join(lines)
