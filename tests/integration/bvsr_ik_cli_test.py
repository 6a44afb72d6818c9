"""Upscaling a clip with a BVSR-IK run: `experiments.upscale --clip --scale=4` writes the model's frames."""

import pathlib

import imageio.v3 as iio
import jax
import numpy as np
import pytest
import skimage.data

from experiments.configs import bvsr_ik_train291
from inrsr import models
from inrsr.infer import upscaling
from inrsr.train import checkpoints


def _frames(folder, clip_u8):
  folder.mkdir()
  for k, frame in enumerate(clip_u8):
    iio.imwrite(folder / f"{k:08d}.png", frame)
  return folder


def _read(folder):
  return np.stack([iio.imread(p) for p in sorted(folder.glob("*.png"))])


def _assert_8bit_equal(got, want_float):
  want = np.round(np.clip(want_float, 0, 1) * 255.0)
  assert got.shape == want.shape and got.dtype == np.uint8
  diff = np.abs(got.astype(np.float64) - want)
  assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # a value within float error of a .5 may round apart
  assert want.std() > 1.0  # not a flat output: the comparison can tell frames apart


def test_clip_upscale_writes_the_models_frames_in_order(tmp_path):
  config = bvsr_ik_train291.get_config("small")
  model = models.from_config(config.model)
  params = models.init_params(model, jax.random.key(3))
  checkpoints.save_params(tmp_path / "run", config, params)
  photo = skimage.data.astronaut()[100:228:8, 150:278:8]  # 16 x 16, a real image
  clip = np.stack([np.roll(photo, k, axis=1) for k in range(3)])  # three different frames
  src = _frames(tmp_path / "lr", clip)
  written = upscaling.upscale_paths(tmp_path / "run", src, tmp_path / "sr", scale=4, clip=True, progress=False)
  assert [pathlib.Path(p).name for p in written] == [f"{k:08d}.png" for k in range(3)]
  # One compile of the forward pass instead of op-by-op dispatch (about 10 s of CPU less).
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x)["outputs"][0])
  want = forward(params, np.asarray(clip, np.float32)[None] / 255.0)
  _assert_8bit_equal(_read(tmp_path / "sr"), np.asarray(want))
  with pytest.raises(ValueError, match=r"upscales x4 only: the output would be 32x32, expected 64x64"):
    upscaling.upscale_paths(tmp_path / "run", src, tmp_path / "sr2", scale=2, clip=True, progress=False)
  assert not (tmp_path / "sr2").exists()


def test_official_checkpoint_through_the_clis_reproduces_the_fixture(tmp_path, shared, run_module):
  """convert + upscale --clip on the fixture's LR frames give the official SR frames to the 8-bit level."""
  fixture_dir = shared / "fixtures" / "bvsr_ik"
  z = np.load(fixture_dir / "bvsr_ik.npz")
  src = _frames(tmp_path / "lr", np.round(z["lr_rgb"] * 255.0).astype(np.uint8))  # the LR is 8-bit exactly
  run = lambda *args: run_module(*args, check=True)
  run("experiments.convert", f"--input={fixture_dir / 'bvsr_ik.pth'}", "--model=bvsr_ik",
      f"--workdir={tmp_path / 'run'}")
  run("experiments.upscale", f"--workdir={tmp_path / 'run'}", f"--input={src}", "--clip", "--scale=4",
      f"--output={tmp_path / 'sr'}", "--progress=false")
  official_rgb = np.moveaxis(z["outputs"][0], 1, -1)[..., ::-1]  # (T, 3, H, W) BGR -> (T, H, W, 3) RGB
  _assert_8bit_equal(_read(tmp_path / "sr"), official_rgb)
