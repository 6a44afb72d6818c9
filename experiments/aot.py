r"""Will it fit? Compile a config's train step and inference call for a TPU or GPU target, on this machine.

  python -m experiments.aot --config=srinr_celeba --target=tpu:v5e:2x2 [--mesh=2x2 --table_sharding=levels]
      [--json=fit.json] [--inference=false] [--dump_to=DIR] [--config.data.batch_size=32 ...]

Targets (`tools.aot.TARGETS`): tpu:v5e:2x2, tpu:v5e:4x4, tpu:v5p:2x2x1, tpu:v6e:2x2 (libtpu), gpu:h100 and
gpu:h100x8 (one 8-GPU node; XLA's CUDA plugin with an H100 target config): the `aot` extra installs both
(`pip install -e ".[aot]"`); no accelerator is used. Prints, per device, the argument, output, temporary and
peak bytes against the device's memory, XLA's FLOPs and bytes accessed, the largest collective and the compile
time of each plan compiled. Without --mesh the (data x model, table layout) plans are tried in order, the least
communication first (`tools.aot.candidate_plans`), and the first that fits is named. Exit status 0 only when the
named or chosen plan fits. JAX_PLATFORMS defaults to cpu here.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # Before jax starts: the host compiles, nothing runs on a device.
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import configs
from tools import aot
# pylint: enable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config NAME[:ARG] or path.", lock_config=True)
_TARGET = flags.DEFINE_enum("target", None, sorted(aot.TARGETS), "The machine to compile for.")
_MESH = flags.DEFINE_string("mesh", None, "DATAxMODEL, e.g. 4x1 or 2x2 (default: search the plans).")
_TABLES = flags.DEFINE_enum("table_sharding", None, ["replicated", "rows", "levels"],
                            "Hash-table layout with --mesh (default: replicated on model 1, levels otherwise).")
_JSON = flags.DEFINE_string("json", None, "Write the report here as JSON.")
_INFERENCE = flags.DEFINE_bool("inference", True, "Also compile one inference call.")
_DUMP = flags.DEFINE_string("dump_to", None, "Folder for XLA's dump of each train step compiled (HLO, buffer "
                            "assignment, memory-usage report: where the temporaries come from).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  target = aot.get_target(_TARGET.value)
  if _TABLES.value and not _MESH.value:
    raise app.UsageError("--table_sharding needs --mesh")
  plan = aot.parse_mesh(_MESH.value, target.devices, _TABLES.value) if _MESH.value else None
  report = aot.will_it_fit(_CONFIG.value, target, plan, inference=_INFERENCE.value, dump_to=_DUMP.value)
  report["config"] = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
  print(aot.summary(report))
  for i, r in enumerate(report["plans_tried"] if _DUMP.value else ()):
    print(f"largest buffers of plan {r['mesh']} {r['table_sharding']} (physical, logical, op):")
    for b in aot.largest_buffers(os.path.join(_DUMP.value, f"plan{i}"), top=8):
      print(f"  {b['shape']}: {b['physical_bytes'] / 1e9:.3f} GB, {b['logical_bytes'] / 1e9:.3f} GB, {b['op'][-80:]}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(report, f, indent=1)
  return 0 if report["fits"] else 1


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "target"])
  configs.run(main)
