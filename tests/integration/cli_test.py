"""Tests for the upscale and evaluate entry points on a briefly trained run (conftest's `trained_run`)."""

import json
import pathlib

import imageio.v3 as iio
import jax
import numpy as np
import pytest
import skimage.data

from experiments.configs import srinr_set5
from inrsr import evaluators, models
from inrsr.data import sources
from inrsr.evaluators import frames
from inrsr.infer import inference, upscaling
from inrsr.train import checkpoints


def _expected_png(model, params, lr_uint8, height, width):
  """What an upscaled PNG must hold: the model's output (`inference.upscale`) rounded to 8 bits."""
  hr = inference.upscale(model, params, np.asarray(lr_uint8, np.float32) / 255.0, height, width)
  return np.round(np.clip(hr, 0, 1) * 255.0)


def _assert_same_pixels(got, want):
  assert got.shape == want.shape and got.dtype == np.uint8
  diff = np.abs(got.astype(np.float64) - want)
  assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # a value within float error of a .5 may round apart
  assert want.std() > 1.0  # the model's output is not flat, so the comparison can tell images apart


def test_upscale_cli_on_real_image(trained_run, tmp_path, run_module):
  run_dir = trained_run
  src = tmp_path / "in.png"
  lr = skimage.data.chelsea()[100:150, 200:270]  # 70 x 50
  iio.imwrite(src, lr)
  model, params, _, _ = checkpoints.restore_model(run_dir)
  for args, (h, w) in ((["--scale=2.5"], (125, 175)), (["--size=101x33"], (33, 101))):
    out = tmp_path / f"out_{h}.png"  # an existing output is refused without --overwrite
    run_module("experiments.upscale", f"--workdir={run_dir}", f"--input={src}", f"--output={out}", "--progress=false",
               *args, check=True)
    _assert_same_pixels(iio.imread(out), _expected_png(model, params, lr, h, w))
  folder = tmp_path / "many"
  folder.mkdir()
  iio.imwrite(folder / "a.png", skimage.data.coffee()[:20, :30])
  iio.imwrite(folder / "b.jpg", skimage.data.rocket()[:16, :16])
  written = upscaling.upscale_paths(run_dir, folder, tmp_path / "outs", scale=2, progress=False)
  assert sorted(pathlib.Path(p).name for p in written) == ["a.png", "b.png"]
  _assert_same_pixels(iio.imread(tmp_path / "outs" / "a.png"),
                      _expected_png(model, params, skimage.data.coffee()[:20, :30], 40, 60))
  _assert_same_pixels(iio.imread(tmp_path / "outs" / "b.png"),
                      _expected_png(model, params, iio.imread(folder / "b.jpg"), 32, 32))  # the decoded JPEG


def test_chunking_gives_the_same_output_as_one_pass(trained_run):
  model, params, _, _ = checkpoints.restore_model(trained_run)
  lr = skimage.data.astronaut()[::16, ::16][:20, :24] / 255.0
  one = inference.upscale(model, params, lr, 61, 77)
  chunked = inference.upscale(model, params, lr, 61, 77, chunk=1000)
  assert one.shape == (61, 77, 3) and one.min() >= 0 and one.max() <= 1
  np.testing.assert_allclose(chunked, one, atol=1e-6)


@pytest.mark.parametrize("kw,match", [(dict(scale=0.0), "scale"), (dict(scale=float("nan")), "scale"),
                                      (dict(size="12by4"), "WIDTHxHEIGHT"), (dict(), "exactly one")])
def test_upscale_bad_arguments(kw, match):
  with pytest.raises(ValueError, match=match):
    upscaling.output_size((10, 10, 3), kw.get("scale"), kw.get("size"))


def test_evaluate_writes_json_table_and_plot(trained_run_copy):
  run_dir = trained_run_copy
  results = evaluators.evaluate_run(run_dir, scales=(2.0, 3.5), progress=False)
  assert set(results["protocols"]) == {"fit", "heldout"}
  cell = results["protocols"]["fit"]["3.5"]["benchmark"]
  assert set(cell["per_image"]) == {"astronaut", "coffee"}
  assert cell["bicubic"]["psnr"] == pytest.approx(np.mean([r["bicubic"]["psnr"] for r in cell["per_image"].values()]))
  assert json.loads((run_dir / "results.json").read_text())["step"] == 20  # the newest of its steps 10 and 20
  table = (run_dir / "results.md").read_text()
  assert "| benchmark | SR-INR |" in table and "x3.5" in table
  assert iio.imread(run_dir / "psnr_vs_scale.png").ndim == 3


def test_evaluation_uses_each_training_image_time(trained_run):
  config = checkpoints.load_config(trained_run)
  sets = frames.evaluation_sets(config)
  assert [t for _, _, t in sets["fit"]] == sources.image_times(config, 2) == [-0.5, 0.5]
  assert [t for _, _, t in sets["heldout"]] == [0.0]


def test_evaluate_on_set5(shared_data, tmp_path):
  c = srinr_set5.get_config("small")
  c.data.root = str(shared_data / "Set5")
  # What is checked is the data plumbing (which images, which files), not a score: random parameters written as a
  # run folder stand in for a training run (no train step to compile).
  model = models.from_config(c.model)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: rng.normal(0.0, 0.05, x.shape).astype(x.dtype), checkpoints.abstract_params(model))
  checkpoints.save_params(tmp_path, c, params, step=2)
  results = evaluators.evaluate_run(tmp_path, scales=(7.5,), progress=False)
  assert results["num_images"] == {"fit": 2}
  assert set(results["protocols"]["fit"]["7.5"]["benchmark"]["per_image"]) == {"baby.png", "bird.png"}
  assert (tmp_path / "results.md").exists() and (tmp_path / "psnr_vs_scale.png").exists()
