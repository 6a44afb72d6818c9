r"""The SR-INR papers' ablations: `python -m experiments.ablate_srinr --config=srinr_celeba_ablation:cpu --workdir=DIR`.

Trains one run per value of each table of `tools.ablation.TABLES` (weight normalisation, top-down attention,
PEA vs MSE, N_min, F, log2 T, levels, N_max; the base config's own value is one shared run), scores each on its
training frames at the trained scale (protocol `fit`) and writes DIR/ablation.json, DIR/ablation.md and
DIR/capacity.png (fit PSNR against log2 T, with a labelled extrapolation to 2^24). Started again, finished runs
are read back and an interrupted one resumes. --tables=weight_norm,table_size runs some tables only.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from tools import ablation

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base config NAME[:ARG] or path.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the ablation (one subfolder per run).")
_TABLES = flags.DEFINE_list("tables", list(ablation.TABLES), "Tables to run.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  results = ablation.run_ablation(_CONFIG.value, _WORKDIR.value, _TABLES.value, progress=_PROGRESS.value)
  print(ablation.markdown_table(results))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  configs.run(main)
