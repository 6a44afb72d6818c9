"""The data-protocol registry: names, the common checks, epochs to steps by hand, and training.py naming none."""

import math
import pathlib
import re

import numpy as np
import pytest

from experiments.configs import bvsr_ik_train291, clit_train291, liif_train291, srinr_demo
from inrsr.data import cascade, common, fitting, pipeline, protocols
from inrsr.train import training

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_every_protocol_module_has_the_interface_and_an_unknown_name_lists_them_all():
  assert set(protocols.PROTOCOLS) == {"fit", "internal", "patches", "clips", "cascade"}
  assert protocols.get(fitting.FIT) is protocols.get(fitting.INTERNAL) is fitting
  assert protocols.get(cascade.PROTOCOL) is cascade
  for name, module in protocols.PROTOCOLS.items():
    assert protocols.get(name) is module
    assert callable(module.validate) and callable(module.training_data) and callable(module.blank_example), name
    assert isinstance(module.WHOLE_FRAMES, bool) and "uniform" in module.SCALE_SAMPLINGS, name
    if module.WHOLE_FRAMES:
      assert callable(module.load_frames), name
  with pytest.raises(ValueError) as e:
    protocols.get("patchs")
  message = str(e.value)
  assert "\n" not in message and message.startswith("data.protocol='patchs' must be one of")
  assert all(repr(name) in message for name in protocols.PROTOCOLS)
  c = srinr_demo.get_config("small")
  c.data.protocol = "patchs"
  with pytest.raises(ValueError, match="data.protocol='patchs' must be one of 'fit', 'internal', 'patches', "
                                       "'clips', 'cascade'"):
    training.training_data(c)


@pytest.mark.parametrize("path", ["inrsr/train/training.py", "inrsr/train/cumulative.py", "inrsr/data/common.py",
                                  "inrsr/data/pipeline.py", "tools/aot.py", "tools/benchmarking.py"])
def test_modules_outside_the_registry_name_no_protocol(path):
  source = (REPO / path).read_text()
  quoted = re.findall(r"""["'](fit|internal|patches|clips|cascade)["']""", source)
  assert not quoted, f"{path} names protocols {quoted}"


def _train(steps, epochs):
  c = srinr_demo.get_config("small")
  c.train.update(steps=steps, epochs=epochs)
  return c


@pytest.mark.parametrize("steps,epochs,examples,per_step,partial,want", [
    (0, 3, 10, 4, False, (6, 2)),  # floor(10 / 4) = 2 steps an epoch, 3 epochs
    (0, 3, 10, 4, True, (9, 3)),  # ceil(10 / 4) = 3: the last, partial step counts
    (0, 2, 3, 4, False, (2, 1)),  # fewer examples than a batch: still one step an epoch
    (0, 1, 8, 4, True, (2, 2)),  # exact: no partial step
    (7, 5, 10, 4, False, (7, 2)),  # train.steps wins over train.epochs
])
def test_epochs_to_steps_hand_worked(steps, epochs, examples, per_step, partial, want):
  assert common.schedule(_train(steps, epochs), examples, per_step, partial_step=partial) == want


def test_fitting_epoch_is_one_pass_over_the_hr_pixels_by_hand():
  c = _train(0, 2)
  c.data.update(batch_size=2, pixels_per_frame=30, crop=0)
  frames = [np.zeros((10, 10, 3)), np.zeros((20, 5, 3))]  # 100 + 100 pixels
  assert fitting.schedule(c, frames) == (2 * 4, 4)  # ceil(200 / (2 * 30)) = 4
  c.data.crop = 4  # crops count crop**2 = 16 pixels each: ceil(32 / 60) = 1
  assert fitting.schedule(c, frames) == (2, 1)


def test_training_data_schedule_and_pixels_match_a_count_of_the_loaded_frames():
  c = _train(0, 2)
  data = training.training_data(c)
  assert isinstance(data, protocols.TrainingData)
  frames, _, _ = training.load_training_frames(c)
  pixels = sum(f.shape[0] * f.shape[1] for f in frames)
  per_epoch = math.ceil(pixels / (c.data.batch_size * c.data.pixels_per_frame))
  assert (data.total_steps, data.steps_per_epoch) == (2 * per_epoch, per_epoch)
  assert data.pixels_per_step == c.data.batch_size * c.data.pixels_per_frame
  dataset, steps, _, _ = data  # the 4-tuple callers unpack
  assert steps == 2 * per_epoch and next(iter(dataset))["rgb"].shape == (c.data.batch_size,
                                                                         c.data.pixels_per_frame, 3)


@pytest.mark.parametrize("lo,hi,field,minimum", [
    (0.5, 2.0, "data.scale", "1"), (math.nan, 2.0, "data.scale", "1"), ("x4", 4.0, "data.scale", "1"),
    (3.0, 2.0, "data.scale_max", "3"), (2.0, math.inf, "data.scale_max", "2"),
    (1.5, math.nan, "data.scale_max", "1.5")])
def test_one_scale_range_check(lo, hi, field, minimum):
  with pytest.raises(ValueError, match=re.escape(f"{field}=") + r".* must be a finite number >= " + minimum + " "):
    common.check_scale_range(lo, hi)
  assert common.check_scale_range(1, 1) == (1.0, 1.0) and common.check_scale_range(2, 3.5) == (2.0, 3.5)


def test_the_specs_and_the_config_check_share_the_scale_message():
  expected = "must be a finite number >= 1 (the SR scale: HR size / LR size)"
  with pytest.raises(ValueError, match=re.escape(f"data.scale_min=0.5 {expected}")):
    pipeline.ExampleSpec(scale_min=0.5, scale_max=2.0, pixels=4, crop=0, augment=False, lr_pad=(4, 4))
  with pytest.raises(ValueError, match=re.escape(f"data.scale_min=0.5 {expected}")):
    pipeline.PatchSpec(scale_min=0.5)
  with pytest.raises(ValueError, match=re.escape("data.scale_max=2.0 must be a finite number >= 3 ")):
    pipeline.PatchSpec(scale_min=3.0, scale_max=2.0)
  for config in (srinr_demo.get_config("small"), liif_train291.get_config("small"),
                 bvsr_ik_train291.get_config("small"), clit_train291.get_config("lit,small")):
    config.data.scale = 0.5
    with pytest.raises(ValueError, match=re.escape(f"data.scale=0.5 {expected}")):
      protocols.validate(config)


def test_each_protocol_adds_its_own_checks_before_anything_is_loaded(tmp_path):
  missing = str(tmp_path / "nowhere")  # loading would fail on it: these errors come first
  c = srinr_demo.get_config("small")
  c.data.update(source="folder", root=missing, protocol="internal", internal_scale=0.5)
  with pytest.raises(ValueError, match="data.internal_scale=0.5 must be a finite number >= 1"):
    training.training_data(c)
  c.data.protocol = "fit"  # internal_scale is read by `internal` alone
  with pytest.raises(ValueError, match="nowhere does not exist"):
    training.training_data(c)
  c = bvsr_ik_train291.get_config("small")
  c.data.update(root=missing, scale=2.5)
  with pytest.raises(ValueError, match="data.scale=2.5 must be an integer for protocol 'clips'"):
    training.training_data(c)
  c = liif_train291.get_config("small")
  c.data.update(root=missing, lr_size=8, queries=65)
  with pytest.raises(ValueError, match=re.escape("data.queries=65 must be in (0, lr_size^2 = 64]")):
    training.training_data(c)
  c.data.update(queries=64, scale_sampling="log")
  with pytest.raises(ValueError, match="data.scale_sampling='log' is read by the protocols 'fit' and 'internal' "
                                       "only; protocol 'patches'"):
    training.training_data(c)
  c = clit_train291.get_config("lit,small")
  c.data.update(root=missing, stage_ranges=((1, 4), (1, 2)))
  with pytest.raises(ValueError, match=r"data.stage_ranges has 2 ranges but model.num_stages=1"):
    training.training_data(c)
  c = srinr_demo.get_config("small")
  c.data.scale_sampling = "geometric"
  with pytest.raises(ValueError, match=re.escape("data.scale_sampling='geometric' must be one of ('uniform', 'log')")):
    training.validate_config(c)


def test_whole_frames_only_from_a_whole_frame_protocol():
  c = liif_train291.get_config("small")
  with pytest.raises(ValueError, match="data.protocol='patches' trains on crops, not whole frames "
                                       r"\(those of 'fit' and 'internal'\)"):
    training.load_training_frames(c)


def _bundled(config, names=("astronaut", "coffee")):
  config.data.update(source="bundled", names=names, root="", limit=0)
  return config


@pytest.mark.parametrize("make", [
    lambda: srinr_demo.get_config("small"),
    lambda: _internal(srinr_demo.get_config("small")),
    lambda: _bundled(liif_train291.get_config("small")),
    lambda: _bundled(bvsr_ik_train291.get_config("small")),
    lambda: _bundled(clit_train291.get_config("small"))])
def test_blank_example_has_the_shapes_of_a_real_batch(make):
  """Each protocol's blank example (blank frames, headers only) has the keys, shapes and dtypes of a real batch of
  photographs from its dataset; the cascade's is at its largest scale set, the largest batch shape it draws."""
  config = make()
  blank = protocols.blank_example(config)
  data = protocols.training_data(config)
  b = config.data.batch_size
  assert blank.hr_pixels * b == data.pixels_per_step
  if config.data.protocol in ("fit", "internal"):  # the real schedule, counted from the frames
    assert (blank.total_steps, blank.steps_per_epoch) == (data.total_steps, data.steps_per_epoch)
  real = dict(next(iter(data.dataset)))
  real.pop("scale", None)
  scales = training.stage_scales(real)
  assert (blank.stage_scales is None) == (scales is None)
  if scales is not None:  # the cascade: every stage at the top of its ladder; a batch runs some of the stages
    spec = cascade.cascade_spec(config)
    tops = tuple(2.0 ** (cascade.rungs(lo, hi, spec.ladder)[-1] / spec.ladder) for lo, hi in spec.ranges)
    np.testing.assert_allclose(blank.stage_scales, tops, rtol=1e-6)
    assert len(scales) <= len(tops) and all(s <= t * (1 + 1e-6) for s, t in zip(scales, tops)), (scales, tops)
    assert {k: v.shape for k, v in blank.example.items()} == {k: v.shape[1:] for k, v in real.items()}
    return
  assert {k: ((b,) + v.shape, v.dtype) for k, v in blank.example.items()} == {
      k: (v.shape, v.dtype) for k, v in real.items()}


def _internal(config):
  config.data.update(protocol="internal", internal_scale=2.0)
  return config
