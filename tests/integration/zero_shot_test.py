"""Tests for zero-shot upscaling: a model fitted on the input alone (`inrsr.infer.zero_shot`, `experiments.upscale`)."""

import glob
import json
import os
import tempfile

import imageio.v3 as iio
import numpy as np
import PIL.Image
import pytest
import skimage.data

from experiments.configs import liif_zeroshot, srinr_demo, srinr_zeroshot
from inrsr.data import images, video
from inrsr.evaluators import zero_shot as zero_shot_evaluator
from inrsr.infer import inference, zero_shot
from inrsr.train import checkpoints, training


@pytest.mark.parametrize("text,expected", [("800", (800, 0.0)), (" 90s", (0, 90.0)), ("1.5S", (0, 1.5)),
                                           (".5s", (0, 0.5))])
def test_parse_budget(text, expected):
  assert zero_shot.parse_budget(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0", "0s", "-5", "5m", "1e3", "inf s", "12.5"])
def test_parse_budget_refuses_what_is_not_steps_or_seconds(text):
  with pytest.raises(ValueError, match="--budget="):
    zero_shot.parse_budget(text)


@pytest.fixture
def photo(tmp_path):
  path = tmp_path / "photo.png"
  iio.imwrite(path, skimage.data.astronaut()[100:164, 200:260])  # 60 x 64 real photograph
  return path


def test_prepare_config_trains_on_the_input_alone(photo):
  c = zero_shot.prepare_config(srinr_zeroshot.get_config(), photo, 3.0, budget="120s")
  assert (c.data.source, c.data.root, c.data.protocol) == ("file", str(photo.resolve()), "fit")
  assert c.data.scale == pytest.approx(3.0 / 1.25) and c.data.scale_max == pytest.approx(3.0 * 1.25)
  assert (c.train.steps, c.train.budget_s) == (100_000, 120.0)
  frames, times, names = training.load_training_frames(c)
  # The training frames are the input itself, whose downscaled copies are the LR of the pairs: nothing else.
  assert names == ["photo.png"] and times == [0.0] and len(frames) == 1
  np.testing.assert_array_equal(frames[0], images.load_image(photo))
  # A scale near 1 keeps training scales >= 1.
  assert zero_shot.prepare_config(srinr_zeroshot.get_config(), photo, 1.1).data.scale == 1.0


def test_prepare_config_refuses_bad_inputs(photo, tmp_path):
  c = srinr_zeroshot.get_config()
  for scale in (1.0, 0.5, float("nan")):
    with pytest.raises(ValueError, match="scale="):
      zero_shot.prepare_config(c, photo, scale)
  with pytest.raises(ValueError, match="too small to fit at x10"):  # 60 px / (8 x 1.25) < 8 px
    zero_shot.prepare_config(c, photo, 8.0)
  with pytest.raises(ValueError, match="is a folder"):
    zero_shot.prepare_config(c, tmp_path, 2.0)
  with pytest.raises(ValueError, match="--clip needs a frame folder"):
    zero_shot.prepare_config(c, photo, 2.0, clip=True)
  with pytest.raises(ValueError, match="does not exist"):
    zero_shot.prepare_config(c, tmp_path / "nothing.png", 2.0)
  with pytest.raises(ValueError, match="zero_shot` section"):
    zero_shot.prepare_config(srinr_demo.get_config(), photo, 2.0)



def test_patches_config_crops_the_input_alone_at_the_sizes_it_allows(photo):
  c = zero_shot.prepare_config(liif_zeroshot.get_config(), photo, 2.0, budget="50")
  assert (c.data.source, c.data.root, c.data.protocol) == ("file", str(photo.resolve()), "patches")
  # 60 px / (2 x 1.25) = 24: the largest LR crop whose HR at the top training scale fits in the input.
  assert (c.data.lr_size, c.data.queries, c.train.steps) == (24, 24 * 24, 50)
  assert (c.data.scale, c.data.scale_max) == (pytest.approx(1.6), pytest.approx(2.5))
  dataset, _, _, _ = training.training_data(c)
  batch = next(iter(dataset))
  assert batch["lr"].shape == (c.data.batch_size, 24, 24, 3)
  assert np.all((batch["scale"] >= 1.6 - 1e-6) & (batch["scale"] <= 2.5 + 1e-6))
  # Every HR value sampled is a pixel of the input (up to flips and transposes, which keep values).
  photo_px = {tuple(v) for v in np.round(images.load_image(photo).reshape(-1, 3) * 255).astype(int)}
  assert {tuple(v) for v in np.round(np.asarray(batch["rgb"]).reshape(-1, 3) * 255).astype(int)} <= photo_px
  with pytest.raises(ValueError, match="fits one image, not a clip"):
    zero_shot.prepare_config(liif_zeroshot.get_config(), photo.parent, 2.0, clip=True)


def _expected_png(workdir, lr_path, height, width, t=0.0):
  """The fitted run's output (`inference.upscale` of the restored parameters) rounded to 8 bits."""
  model, params, _, _ = checkpoints.restore_model(workdir)
  hr = inference.upscale(model, params, images.load_image(lr_path), height, width, t=t)
  return np.round(np.clip(hr, 0, 1) * 255.0)


def test_cli_fits_the_input_keeps_the_run_and_resumes_it(photo, tmp_path, run_module):
  out, run = tmp_path / "big.png", tmp_path / "fit"
  rest = ["--config=srinr_zeroshot:small", "--budget=12", f"--workdir={run}", "--progress=false"]
  cmd = ["experiments.upscale", f"--input={photo}", "--scale=2", f"--output={out}", *rest]
  run_module(*cmd, check=True)
  got = iio.imread(out)
  want = _expected_png(run, photo, 128, 120)
  assert got.shape == (128, 120, 3)
  diff = np.abs(got.astype(np.float64) - want)
  assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # a value within float error of a .5 may round apart
  stored = checkpoints.load_config(run)
  assert stored.data.root == str(photo.resolve()) and stored.zero_shot.scale == 2.0
  steps = [int(p.name) for p in (run / checkpoints.CHECKPOINT_DIR).iterdir() if p.name.isdigit()]
  assert max(steps) == 12
  metrics_before = (run / training.METRICS_FILE).read_text()
  # The same command again finds the fit finished: no step is trained, the output is the same.
  out.unlink()
  run_module(*cmd, check=True)
  np.testing.assert_array_equal(iio.imread(out), got)
  assert (run / training.METRICS_FILE).read_text() == metrics_before
  # Another input in the same folder is refused before any work, naming the folder and the field.
  other = tmp_path / "other.png"
  iio.imwrite(other, skimage.data.coffee()[:64, :64])
  bad = run_module("experiments.upscale", f"--input={other}", "--scale=2", f"--output={tmp_path / 'other_big.png'}",
                   *rest)
  assert bad.returncode != 0 and f"--workdir={run} holds the zero-shot fit of another input" in bad.stderr
  assert "data.root" in bad.stderr



def test_cli_fits_liif_on_an_image_unless_a_config_is_named(photo, tmp_path, run_module):
  run, out = tmp_path / "fit", tmp_path / "big.png"
  cmd = ["experiments.upscale", f"--input={photo}", "--scale=2", f"--output={out}", "--budget=1", f"--workdir={run}",
         "--progress=false"]
  run_module(*cmd, check=True)
  stored = checkpoints.load_config(run)
  assert (stored.model.name, stored.data.protocol, stored.zero_shot.self_ensemble) == ("liif", "patches", True)
  # The output is the self-ensemble of the fitted run, which differs from its plain output.
  model, params, _, step = checkpoints.restore_model(run)
  lr = images.load_image(photo)
  want = np.round(inference.upscale_self_ensemble(model, params, lr, 128, 120) * 255.0)
  plain = np.round(inference.upscale(model, params, lr, 128, 120) * 255.0)
  got = iio.imread(out).astype(np.float64)
  assert step == 1 and np.abs(got - want).max() <= 1 and np.abs(got - plain).max() > 1
  bad = run_module(*cmd, "--self_ensemble")
  assert bad.returncode != 0 and "--self_ensemble is for trained runs" in bad.stderr

def test_workdir_of_a_trained_run_is_refused_for_a_fit(photo, tmp_path):
  run = tmp_path / "trained"
  run.mkdir()
  checkpoints.save_config(srinr_demo.get_config("small"), run)
  with pytest.raises(ValueError, match="holds a trained run, not a zero-shot fit"):
    zero_shot.upscale(srinr_zeroshot.get_config("small"), photo, tmp_path / "o.png", scale=2, workdir=run)
  assert not zero_shot.holds_fit(run)


def test_without_workdir_the_fit_is_temporary_and_outputs_are_checked_first(photo, tmp_path):
  pattern = os.path.join(tempfile.gettempdir(), "inrsr_zero_shot_*")
  before = set(glob.glob(pattern))
  with pytest.raises(ValueError, match="does not fit a .gif"):  # refused before any fitting
    zero_shot.upscale(srinr_zeroshot.get_config("small"), photo, tmp_path / "o.gif", size="70000x10")
  written = zero_shot.upscale(srinr_zeroshot.get_config("small"), photo, tmp_path / "o.png", size="150x100",
                              budget="3", progress=False)
  assert written == [str(tmp_path / "o.png")] and iio.imread(tmp_path / "o.png").shape == (100, 150, 3)
  assert set(glob.glob(pattern)) == before


def test_clip_fits_vrinr_on_its_frames(tmp_path):
  frames, _ = video.bundled_clip("astronaut", num_frames=3, size=48)
  folder = tmp_path / "frames"
  folder.mkdir()
  for k, f in enumerate(frames):
    iio.imwrite(folder / f"{k:08d}.png", np.round(f * 255).astype(np.uint8))
  run = tmp_path / "fit"
  written = zero_shot.upscale(srinr_zeroshot.get_config("small"), folder, tmp_path / "out", scale=2, clip=True,
                              budget="4", workdir=run, progress=False)
  assert len(written) == 3
  c = checkpoints.load_config(run)
  assert (c.data.source, c.data.image_time) == ("frames", "index")
  times = [-2 / 3, 0.0, 2 / 3]  # frame k of 3 at t = -1 + (2k + 1) / 3, in training and in upscaling alike
  for k, path in enumerate(written):
    want = _expected_png(run, folder / f"{k:08d}.png", 96, 96, t=times[k])
    assert np.abs(iio.imread(path).astype(np.float64) - want).max() <= 1


def test_clip_restorer_fits_each_clip_on_its_own_lr(tmp_path):
  frames, _ = video.bundled_clip("astronaut", num_frames=3, size=48)
  lr = np.round(np.stack(frames) * 255.0) / 255.0
  restore = zero_shot.clip_restorer(srinr_zeroshot.get_config("small"), tmp_path, budget="4")
  out = restore("astro", lr, 96, 96)
  assert out.shape == (3, 96, 96, 3) and out.dtype == np.float32
  (folder,) = tmp_path.glob("astro-*")
  run = folder / "fit"
  c = checkpoints.load_config(run)
  assert c.data.root == str((folder / "lr").resolve()) and c.zero_shot.scale == 2.0
  for k in range(3):  # the input written losslessly, and each frame the fitted model's output at its t
    np.testing.assert_array_equal(iio.imread(folder / "lr" / f"{k:08d}.png"), np.round(lr[k] * 255))
    want = _expected_png(run, folder / "lr" / f"{k:08d}.png", 96, 96, t=[-2 / 3, 0.0, 2 / 3][k])
    assert np.abs(np.round(out[k] * 255.0) - want).max() <= 1
  assert checkpoints.restore_model(run)[3] == 4
  mtime = (run / "checkpoints").stat().st_mtime_ns
  again = restore("astro", lr, 96, 96)  # the finished fit is reused, not trained again
  assert checkpoints.restore_model(run)[3] == 4 and (run / "checkpoints").stat().st_mtime_ns == mtime
  np.testing.assert_array_equal(again, out)
  restore("astro", lr[:2], 96, 96)  # other frames of the same clip: a fit of their own, the first one untouched
  assert len(list(tmp_path.glob("astro-*"))) == 2 and checkpoints.restore_model(run)[3] == 4


def _psnr(a, b, shave):
  """PSNR (dB) of two 8-bit images, `shave` pixels off each border (NumPy, independent of inrsr.metrics)."""
  d = (np.asarray(a, np.float64) - np.asarray(b, np.float64))[shave:-shave, shave:-shave]
  return float(10 * np.log10(255.0 ** 2 / np.mean(d ** 2)))


def test_liif_zero_shot_fit_of_200_steps_beats_bicubic_on_a_bundled_photo(tmp_path):
  """The shipped `liif_zeroshot` fitted 200 steps (about 45 s of CPU) on a 64 x 64 LR of a bundled photograph.

  The LR is PIL's (antialiased) bicubic downscaling x2, in 8 bits; the bicubic baseline is PIL's bicubic
  upscaling of it. Margin: with training seeds 0, 1, 2 the fit scored 0.69, 0.72, 0.61 dB above bicubic here;
  50 steps of the same fit score 0.03 dB below it, and the bilinear upsampling (LIIF's skip, the output of an MLP
  that learnt nothing) 0.82 dB below.
  """
  hr = skimage.data.chelsea()[50:178, 150:278]  # 128 x 128: the cat's face and fur
  lr = np.asarray(PIL.Image.fromarray(hr).resize((64, 64), PIL.Image.Resampling.BICUBIC))
  iio.imwrite(tmp_path / "lr.png", lr)
  bicubic = np.asarray(PIL.Image.fromarray(lr).resize((128, 128), PIL.Image.Resampling.BICUBIC))
  zero_shot.upscale(liif_zeroshot.get_config(), tmp_path / "lr.png", tmp_path / "sr.png", scale=2, budget="200",
                    workdir=tmp_path / "fit", progress=False)
  assert checkpoints.latest_step(tmp_path / "fit") == 200
  sr = iio.imread(tmp_path / "sr.png")
  assert sr.shape == hr.shape and sr.dtype == np.uint8
  model, bic = _psnr(sr, hr, 2), _psnr(bicubic, hr, 2)
  assert model >= bic + 0.3, (model, bic)


@pytest.mark.slow  # about 2.5 minutes on 2 CPU cores
def test_liif_zero_shot_beats_bicubic_on_an_image_it_never_saw_the_hr_of(shared_data, tmp_path):
  # Set5 `baby` x2, protocol `internal`: the fit sees only the 8-bit bicubic LR (RESULTS.md, "Zero-shot
  # upscaling with LIIF": +0.83 dB after 120 s, 300 steps; this asserts most of it at 300 steps).
  hr = images.load_image(shared_data / "Set5" / "baby.png")
  result = zero_shot_evaluator.evaluate(liif_zeroshot.get_config(), [("baby", hr)], [2.0], tmp_path, budget="300")
  cell = result["2"]["per_image"]["baby"]
  assert cell["model"]["psnr"] >= cell["bicubic"]["psnr"] + 0.7, cell


def test_evaluate_zeroshot_cli_names_an_srinr_config_model(shared_data, tmp_path, run_module):
  # srinr_zeroshot's model section has no `name` (the registry's default): the results must still name the model.
  run_module("experiments.evaluate_zeroshot", "--config=srinr_zeroshot:small", "--sets=Set5", "--scales=2",
             "--limit=1", "--budget=2", f"--workdir={tmp_path}", env={"INRSR_DATA_DIR": str(shared_data)}, check=True)
  kept = json.loads((tmp_path / "results.json").read_text())
  assert kept["model"] == "srinr" and list(kept["sets"]["Set5"]) == ["2"]
