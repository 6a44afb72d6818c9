r"""Convert an official checkpoint into an inrsr run: `python -m experiments.convert --input=FILE.pth --workdir=DIR`.

The official LIIF, HIIF and CLIT files name their model; a bare state_dict (BVSR-IK) needs --model=bvsr_ik.
Then `python -m experiments.evaluate --workdir=DIR` and `python -m experiments.upscale --workdir=DIR ...` use it.
The run's evaluation settings are those of --config (default: the LIIF-family protocol, heldout Set5/Set14).
--workdir must be new or empty; --overwrite replaces an earlier conversion there (a trained run is never written
over).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from experiments.configs import common
from inrsr import convert

_INPUT = flags.DEFINE_string("input", None, "The official .pth file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder to write (new or empty).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier conversion in --workdir (never a trained run).")
_MODEL = flags.DEFINE_string("model", None, "Model name for files that do not name it (bvsr_ik).")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Optional config NAME whose evaluation settings the run "
                                          "keeps (default: the LIIF-family protocol).", lock_config=False)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  base = _CONFIG.value if _CONFIG.value is not None else common.generalising_base()
  config = convert.convert_to_run(_INPUT.value, _WORKDIR.value, base, model=_MODEL.value,
                                  overwrite=_OVERWRITE.value)
  print(f"{_WORKDIR.value}: {config.model.name} converted from {_INPUT.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "workdir"])
  configs.run(main)
