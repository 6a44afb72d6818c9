"""Tests for the experiment configs: `--config NAME` resolution and the config arguments each config accepts."""

import importlib

import pytest
from absl import flags
from ml_collections import config_flags

from experiments import configs
from experiments.configs import common

CONFIG_NAMES = sorted(p.stem for p in configs.CONFIG_DIR.glob("*.py") if not p.stem.startswith("_")
                      and p.stem != "common")


def _parse(argv):
  """The config absl's config_flags loads from a command line rewritten by resolve_argv."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values)
  flags.DEFINE_string("workdir", None, "workdir", flag_values=values)
  values(configs.resolve_argv(argv))
  return values.config, values.workdir


def test_config_name_with_a_space_or_an_equals_sign():
  spaced, workdir = _parse(["prog", "--config", "srinr_demo:small", "--workdir", "w"])
  joined, _ = _parse(["prog", "--config=srinr_demo:small", "--workdir=w"])
  assert workdir == "w"
  assert spaced.train.steps == 20 and spaced.model.num_levels == 4  # the `small` argument applies
  assert spaced.to_json_best_effort() == joined.to_json_best_effort()
  with pytest.raises(ValueError, match="--config=srinr_nope: no experiments/configs/srinr_nope.py.*srinr_demo"):
    configs.resolve_argv(["prog", "--config", "srinr_nope"])
  path = str(configs.CONFIG_DIR / "srinr_demo.py")
  assert configs.resolve_argv(["prog", "--config", path]) == ["prog", f"--config={path}"]


def test_parse_arg_takes_only_the_flags_a_config_accepts():
  assert common.parse_arg("small,rdn", "x", choices=("rdn",), flags=("small",)) == ({"small"}, "rdn")
  assert common.parse_arg("cpu,small", "x") == ({"cpu", "small"}, None)
  assert common.parse_arg(None, "x", flags=()) == (set(), None)
  with pytest.raises(ValueError, match="x: unknown argument 'cpu'; x accepts comma-separated 'small'"):
    common.parse_arg("cpu", "x", flags=("small",))
  with pytest.raises(ValueError, match="x: unknown argument .rdn,edsr."):
    common.parse_arg("rdn,edsr", "x", choices=("rdn", "edsr"))


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_cpu_argument_changes_the_config_or_is_refused(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  plain = module.get_config(None).to_json_best_effort()
  try:
    cpu = module.get_config("cpu").to_json_best_effort()
  except ValueError as e:
    assert name in str(e) and "'cpu'" in str(e)
    return
  assert cpu != plain, f"{name}:cpu is accepted but changes nothing"


def test_demo_configs_refuse_cpu_naming_the_config():
  from experiments.configs import srinr_demo, vrinr_demo  # pylint: disable=g-import-not-at-top

  for module, name in ((srinr_demo, "srinr_demo"), (vrinr_demo, "vrinr_demo")):
    for arg in ("cpu", "small,cpu"):
      with pytest.raises(ValueError, match=f"{name}: unknown argument '{arg}'"):
        module.get_config(arg)
    assert module.get_config("small").train.steps == 20


def test_resolve_argv_resolves_each_named_config_flag():
  path = str(configs.CONFIG_DIR / "srinr_zeroshot.py")
  argv = ["prog", "--config=srinr_demo", "--zero_shot_config", "srinr_zeroshot:small", "--config.a=1"]
  got = configs.resolve_argv(argv, names=("config", "zero_shot_config"))
  assert got == ["prog", f"--config={configs.CONFIG_DIR / 'srinr_demo.py'}", f"--zero_shot_config={path}:small",
                 "--config.a=1"]
  assert configs.resolve_argv(argv, names=("zero_shot_config",))[1] == "--config=srinr_demo"
  with pytest.raises(ValueError, match="--zero_shot_config=nope: no experiments/configs/nope.py"):
    configs.resolve_argv(["prog", "--zero_shot_config=nope"], names=("zero_shot_config",))
