r"""Compare evaluated models side by side.

  python -m experiments.compare --results=A,B,C.json --protocol=heldout:Set14 --output=cmp.png

Each of --results is a run folder evaluated by experiments.evaluate, a results.json kept from one (e.g. under
results/runs/), or the results.json of experiments.evaluate_zeroshot; A+B joins the results of one run evaluated
in two goes (e.g. x2-x4, then x6-x30) into one row. Writes one PSNR-versus-scale figure with every model and
bicubic, and prints the Markdown table (`inrsr.evaluators.compare`); --quantity=ssim compares mean SSIM instead.
"""

import os

from absl import app
from absl import flags

from experiments import configs
from inrsr.evaluators import compare

_RESULTS = flags.DEFINE_list("results", None, "Evaluated run folders or results JSON files; A+B: one run's "
                             "results from two evaluations, one row.")
_PROTOCOL = flags.DEFINE_string("protocol", "heldout:Set14", "Evaluation protocol to compare (fit, internal, "
                                 "heldout or heldout:<set>).")
_METRIC = flags.DEFINE_string("metric", "benchmark", "Metric rule to compare (div2k, benchmark, full).")
_QUANTITY = flags.DEFINE_enum("quantity", "psnr", sorted(compare.QUANTITIES), "Mean per cell to compare: PSNR "
                              "(dB) or SSIM.")
_OUTPUT = flags.DEFINE_string("output", "psnr_vs_scale_compare.png", "Figure to write.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  sources = [tuple(s.split("+")) if "+" in s and not os.path.exists(s) else s for s in _RESULTS.value]
  print(compare.compare(sources, _OUTPUT.value, protocol=_PROTOCOL.value, metric=_METRIC.value,
                           quantity=_QUANTITY.value))


if __name__ == "__main__":
  flags.mark_flags_as_required(["results"])
  configs.run(main, names=())
