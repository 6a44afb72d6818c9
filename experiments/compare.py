r"""Compare evaluated runs: `python -m experiments.compare --workdirs=A,B --protocol=heldout:Set14 --output=cmp.png`.

Reads each run's results.json (written by experiments.evaluate) and writes one PSNR-versus-scale figure with
every run and bicubic, and prints the Markdown table.
"""

from absl import app
from absl import flags

from inrsr import evaluation

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Evaluated run folders.")
_PROTOCOL = flags.DEFINE_string("protocol", "heldout:Set14", "Protocol to compare.")
_METRIC = flags.DEFINE_string("metric", "benchmark", "Metric to compare.")
_OUTPUT = flags.DEFINE_string("output", "psnr_vs_scale_compare.png", "Figure to write.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  print(evaluation.compare_runs(_WORKDIRS.value, _OUTPUT.value, protocol=_PROTOCOL.value, metric=_METRIC.value))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
