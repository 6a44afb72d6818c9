r"""Cumulative training (CLIT): every stage up to the config's, each from the previous stage's parameters.

  python -m experiments.train_cumulative --config=clit_train291:clit3 --workdir=workdirs/clit291
trains LIT in workdirs/clit291/lit, then CLIT2 in .../clit2 from it, then CLIT3 in .../clit3 (the stage configs
name their predecessors). Run again with the same --workdir to resume: finished stages are skipped and the
interrupted one goes on from its checkpoint. `--config.a.b=v` overrides apply to every stage; `--stages=clit3`
trains only the stages named (their predecessors must be complete). Evaluate a stage as any run:
  python -m experiments.evaluate --workdir=workdirs/clit291/clit3
Compiled train steps go to JAX's persistent cache in WORKDIR/jax_cache (--jax_cache; JAX_COMPILATION_CACHE_DIR
wins when set): every scale set of a stage-grid shape already compiled then costs a trace instead of a compile
(the last factor never reaches the program), and a restarted schedule compiles nothing it compiled before.
"""

import os

import jax
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from inrsr.train import cumulative

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config NAME[:STAGE,...] of the last stage to train "
                                          "(experiments/configs/NAME.py), e.g. clit_train291:clit3.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the schedule: one subfolder per stage.")
_STAGES = flags.DEFINE_list("stages", None, "Train only these stages (default: all up to the config's).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")
_JAX_CACHE = flags.DEFINE_string("jax_cache", None, "JAX persistent compilation cache folder (default "
                                 "WORKDIR/jax_cache; empty: none). JAX_COMPILATION_CACHE_DIR, when set, wins.")
_REUSE = configs.reuse_freed_memory_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  configs.apply_reuse_freed_memory(_REUSE)  # before JAX's backend starts
  cache = os.path.join(_WORKDIR.value, "jax_cache") if _JAX_CACHE.value is None else _JAX_CACHE.value
  if cache and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", cache)
  flag = flags.FLAGS["config"]
  cumulative.train_schedule(config_flags.get_config_filename(flag), _WORKDIR.value,
                            overrides=config_flags.get_override_values(flag), only=_STAGES.value,
                            progress=_PROGRESS.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  configs.run(main)
