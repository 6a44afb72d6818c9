r"""Train any registered model: `python -m experiments.train --config=NAME[:small] --workdir=DIR [--config.a.b=v]`.

A run started again with the same --workdir resumes from its last checkpoint (a changed model.* field is refused,
naming it). Orbax's INFO log lines are hidden; INRSR_VERBOSE_ORBAX=1 shows them.

Several processes (hosts, or one per GPU), each running the same command with the same --workdir on a shared
file system:
  python -m experiments.train --config=NAME --workdir=DIR \
      --coordinator_address=HOST0:1234 --num_processes=N --process_id=I
or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or `--distributed` to
let JAX detect them under SLURM, Open MPI or on a TPU pod (BUILD.md has the sbatch and TPU commands).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from inrsr.train import distributed, training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config NAME (experiments/configs/NAME.py) or path.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_ADDRESS = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
_COUNT = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_INDEX = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_AUTO = flags.DEFINE_bool("distributed", False, "Start JAX's multi-process runtime with the cluster's settings "
                          "detected by JAX (SLURM, Open MPI, TPU pod).")
_REUSE = configs.reuse_freed_memory_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  configs.apply_reuse_freed_memory(_REUSE)  # before JAX's backend starts
  distributed.initialize(_ADDRESS.value, _COUNT.value, _INDEX.value, auto=_AUTO.value)
  training.train(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  configs.run(main)
