r"""Static report of the Pallas hash-grid kernels compiled for an H100 (sm_90a) without a GPU.

  pip install -e ".[kernel-report]"
  JAX_PLATFORMS=cpu python -m experiments.kernel_report --out=/tmp/kernel_report
  JAX_PLATFORMS=cpu python -m experiments.kernel_report --block_n=128 --num_warps=4

Compiles the forward and backward kernels with XLA's deviceless CUDA compile, assembles their PTX with ptxas and
disassembles the cubin; prints a Markdown table (registers, spills, occupancy, shared memory, global loads,
coordinate loads, atomics, fences) and writes kernel_report.json / kernel_report.md to --out. With --bytes, also
the bytes moved per query by the fused kernels and by the XLA reference, from the compiled HLO (bytes_model.json).
"""

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")

from absl import flags  # noqa: E402

from experiments import configs  # noqa: E402
from tools import kernel_report  # noqa: E402

_OUT = flags.DEFINE_string("out", "", "Folder for kernel_report.json and kernel_report.md (none: print only).")
_LEVELS = flags.DEFINE_integer("levels", 12, "L.")
_LOG2_T = flags.DEFINE_integer("log2_t", 24, "log2 of the table size T.")
_FEATS = flags.DEFINE_integer("feats", 2, "F.")
_N = flags.DEFINE_integer("n", 1 << 20, "Points (only the masking bound depends on it).")
_BLOCK_N = flags.DEFINE_integer("block_n", 0, "Forward block (0: the table's default for L, F, T).")
_BLOCK_N_BWD = flags.DEFINE_integer("block_n_bwd", 0, "Backward block (0: default).")
_WARPS = flags.DEFINE_integer("num_warps", 0, "Warps per program (0: default).")
_KEEP = flags.DEFINE_string("keep_dir", "", "Keep XLA's dumps, the PTX and cubins here.")
_BYTES = flags.DEFINE_bool("bytes", False, "Also model bytes moved per query, fused kernels vs the XLA reference "
                           "(compiles the reference too: a few minutes).")


def main(argv):
  del argv
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top
  case = kernel_report.Case(num_levels=_LEVELS.value, log2_t=_LOG2_T.value, feats=_FEATS.value, n=_N.value)
  blocks = hashgrid.BlockSizes.get_default(case.num_levels, case.feats, 1 << case.log2_t)
  changes = {k: v for k, v in (("block_n", _BLOCK_N.value), ("block_n_bwd", _BLOCK_N_BWD.value),
                               ("num_warps", _WARPS.value)) if v}
  blocks = hashgrid.BlockSizes(**{**blocks.__dict__, **changes})
  report = kernel_report.kernel_report(case, blocks, keep_dir=_KEEP.value or None)
  print(kernel_report.markdown(report))
  if _OUT.value:
    for path in kernel_report.write(report, _OUT.value):
      print("wrote", path)
  if _BYTES.value:
    model = kernel_report.bytes_model(case, blocks)
    print()
    print(kernel_report.bytes_markdown(model))
    if _OUT.value:
      with open(os.path.join(_OUT.value, "bytes_model.json"), "w") as f:
        json.dump(model, f, indent=1)


if __name__ == "__main__":
  configs.run(main, names=())
