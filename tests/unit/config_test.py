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


PAPER_IMAGE_CONFIGS = {"srinr_celeba": 32, "srinr_div2k": 32, "srinr_set5": 5, "srinr_set14": 14}  # name: batch


def _fields(c) -> dict:
  """{"section.field": value} of a config's model, data and train sections (nested sections left out)."""
  return {f"{s}.{k}": v for s in ("model", "data", "train") for k, v in c[s].items()
          if not hasattr(v, "items")}


@pytest.mark.parametrize("name", sorted(PAPER_IMAGE_CONFIGS))
def test_papers_image_configs_are_literal_and_robust_switches_the_departures(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  c = module.get_config(None)
  # SR-INR Sec. 4 / DESIGN.md: the paper model, the MLP's output alone, trained at x32 only, Adam 1e-4 halved
  # every 100 epochs for 300 epochs, PEA loss, P = 4096 pixels per frame.
  literal = {"model.num_levels": 12, "model.features": 2, "model.log2_table_size": 24, "model.n_min": 16,
             "model.n_max": 128, "model.patch_size": 5, "model.code_dim": 3, "model.hidden": 64,
             "model.weight_norm": "none", "model.top_down_attention": True, "model.bicubic_residual": False,
             "model.code_resolution": 0, "model.texture_prefilter": "none", "model.texture_spacing": "level",
             "model.position_resolution": 0, "data.scale": 32.0, "data.scale_max": 0.0, "data.protocol": "fit",
             "data.pixels_per_frame": 4096, "data.batch_size": PAPER_IMAGE_CONFIGS[name], "train.epochs": 300,
             "train.steps": 0, "train.learning_rate": 1e-4, "train.decay_epochs": 100, "train.decay_rate": 0.5,
             "train.schedule": "step", "train.loss": "pea"}
  assert {k: _fields(c)[k] for k in literal} == literal
  departures = {"model.bicubic_residual": (False, True), "model.code_resolution": (0, 1),
                "data.scale": (32.0, 1.5), "data.scale_max": (0.0, 32.0), "data.scale_sampling": ("uniform", "log")}
  for arg in ("", "cpu,"):  # `robust` alone and with `cpu`: the same fields, nothing else
    plain, robust = _fields(module.get_config(arg or None)), _fields(module.get_config(arg + "robust"))
    assert {k: (v, robust[k]) for k, v in plain.items() if robust[k] != v} == departures
  with pytest.raises(ValueError, match=f"{name}: unknown argument 'robustt'"):
    module.get_config("robustt")


def test_vid4_robust_is_the_cpu_runs_settings_at_any_size():
  from experiments.configs import vrinr_vid4  # pylint: disable=g-import-not-at-top

  full, robust, cpu = (_fields(vrinr_vid4.get_config(a)) for a in ("walk", "walk,robust", "walk,cpu"))
  assert (full["data.scale"], full["data.scale_max"], full["model.bicubic_residual"]) == (4.0, 0.0, False)
  assert {k: (v, robust[k]) for k, v in full.items() if robust[k] != v} == {
      "model.bicubic_residual": (False, True), "model.code_resolution": (0, 1), "data.scale": (4.0, 1.5),
      "data.scale_max": (0.0, 12.0), "data.scale_sampling": ("uniform", "log")}
  assert cpu == _fields(vrinr_vid4.get_config("walk,cpu,robust"))  # `cpu` implies `robust` (the measured run)
