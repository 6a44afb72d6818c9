r"""Hash-grid gather throughput and memory, pallas vs reference side by side in one run.

  python -m experiments.benchmark_hashgrid                      # GPU: both impls, small and paper sizes
  python -m experiments.benchmark_hashgrid --impls=reference --paper_n=65536   # CPU: reference only

Prints a Markdown table (queries/s forward and forward+backward, compiled peak memory, bytes moved and the
time those bytes take at --bandwidth_gbs) and writes it to --out as JSON lines.
"""

import json

from absl import flags
import jax

from experiments import configs
from tools import benchmarking
from tools import hashgrid_bench

_IMPLS = flags.DEFINE_list("impls", None, "Implementations (default: pallas,reference on GPU, reference on CPU).")
_PAPER_N = flags.DEFINE_list("paper_n", ["524288", "1048576", "2097152"], "N values at the paper's size.")
_SMALL = flags.DEFINE_bool("small", True, "Also run the small size (L=4, T=2^14, N=2^16).")
_BANDWIDTH = flags.DEFINE_float("bandwidth_gbs", 0.0, "Device memory bandwidth in GB/s (0: H100/H200 spec "
                                "when detected, else not reported).")
_REPS = flags.DEFINE_integer("reps", 5, "Timed repetitions (median reported).")
_OUT = flags.DEFINE_string("out", "", "Optional JSON-lines output file.")


def main(argv):
  del argv
  on_gpu = jax.default_backend() == "gpu"
  impls = _IMPLS.value or (["pallas", "reference"] if on_gpu else ["reference"])
  cases = []
  if _SMALL.value:
    cases.append(dict(name="small", num_levels=4, log2_t=14, feats=2, n=1 << 16))
  cases += [dict(name="paper", num_levels=12, log2_t=24, feats=2, n=int(n)) for n in _PAPER_N.value]
  bandwidth = _BANDWIDTH.value or hashgrid_bench.spec_bandwidth_gbs()
  rows = [hashgrid_bench.run_case(**c, impls=impls, reps=_REPS.value, bandwidth_gbs=bandwidth) for c in cases]
  print(f"device: {benchmarking.device_description()}\n")
  print(hashgrid_bench.markdown(rows))
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      for r in rows:
        f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
  configs.run(main, names=())
