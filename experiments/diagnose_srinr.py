r"""Diagnose an SR-INR / VR-INR run across scales: `python -m experiments.diagnose_srinr --workdir=DIR`.

Per hash level: how far the texture codes of the same HR pixels move when the LR is made at another scale
(against --ref_scale), the share of the queries' lattice corners that read rows training changed (fit images
and images never trained on), and PSNR against bicubic at each scale. Writes diagnostics.json, diagnostics.md
and diagnostics.png into the workdir (`tools/diagnostics.py`).

  python -m experiments.diagnose_srinr --workdir=workdirs/demo --scales=2,4,8
"""

import pathlib

from absl import app
from absl import flags

from experiments import configs
from tools import diagnostics

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of an SR-INR or VR-INR run.")
_SCALES = flags.DEFINE_list("scales", ["2", "4", "8"], "Scales to diagnose.")
_REF = flags.DEFINE_float("ref_scale", 4.0, "Scale whose codes the others are compared with.")
_QUERIES = flags.DEFINE_integer("queries", 4096, "HR pixels sampled per image.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = diagnostics.diagnose_run(_WORKDIR.value, scales=[float(s) for s in _SCALES.value],
                                    ref_scale=_REF.value, queries=_QUERIES.value)
  table = diagnostics.markdown(result)
  workdir = pathlib.Path(_WORKDIR.value)
  (workdir / "diagnostics.md").write_text(table)
  diagnostics.plot(result, workdir / "diagnostics.png")
  print(table)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  configs.run(main, names=())
