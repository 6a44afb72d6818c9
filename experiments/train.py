r"""Train SR-INR / VR-INR: `python -m experiments.train --config=NAME[:small] --workdir=DIR [--config.a.b=v]`.

A run started again with the same --workdir resumes from its last checkpoint (a changed model.* field is refused,
naming it). Orbax's INFO log lines are hidden; INRSR_VERBOSE_ORBAX=1 shows them.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from inrsr import training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config NAME (experiments/configs/NAME.py) or path.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  training.train(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, argv=configs.resolve_argv(sys.argv))
