r"""Training throughput (HR pixels/s per step) and compiled peak memory of a config, any protocol.

  python -m experiments.benchmark_train --config=srinr_demo --steps=20
  python -m experiments.benchmark_train --config=srinr_celeba --config.data.batch_size=8
  python -m experiments.benchmark_train --config=liif_train291 --steps=5
  python -m experiments.benchmark_train --config=clit_train291 --steps=5

Batches are the config's own training data (fit, internal, patches, clips or cascade), as `experiments.train`
reads them. The first step (compilation) is reported apart; every distinct cascade scale set is compiled before
timing.

Prints one Markdown row for BENCHMARKS.md.
"""

import sys

from absl import flags
from ml_collections import config_flags

from experiments import configs
from tools import benchmarking

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config NAME or path.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first.")
_REUSE = configs.reuse_freed_memory_flag()


def main(argv):
  del argv
  configs.apply_reuse_freed_memory(_REUSE)  # as `experiments.train --reuse_freed_memory` does
  r = benchmarking.train_throughput(_CONFIG.value, steps=_STEPS.value, warmup=_WARMUP.value)
  peak = "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 1e9:.3f}"
  print("| config | device | HR pixels per step | step ms | HR pixels/s | peak GB | first step s | compiled steps |")
  print("|---|---|---|---|---|---|---|---|")
  print(f"| {' '.join(sys.argv[1:])} | {r['device']} | {r['pixels_per_step']} | {r['step_ms']:.1f} | "
        f"{r['pixels_per_s']:.4g} | {peak} | {r['first_step_s']:.1f} | {r['compiled_steps']} |")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  configs.run(main)
