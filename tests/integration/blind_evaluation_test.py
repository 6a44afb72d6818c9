"""Blind video evaluation: BVSR-IK's scoring formula, centre-of-window frames, degraded Vid4, the evaluate CLI path."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import bvsr_ik_train291, liif_train291
from inrsr import evaluators, models, resize
from inrsr.data import degradations
from inrsr.evaluators import blind as blind_evaluation
from inrsr.train import checkpoints


@pytest.fixture
def vid4(shared_data, monkeypatch):
  """Blind evaluation reads `$INRSR_DATA_DIR/Vid4/GT`: the `shared_data` folder (skips, or fails under CI)."""
  monkeypatch.setenv("INRSR_DATA_DIR", str(shared_data))


def _official_y_psnr(pred, gt, border):
  """BVSR-IK's utils.py: uint8 images, Y = 16 + 24.966 B + 128.553 G + 65.481 R (B, G, R in [0, 1]), crop, 255."""
  def y(im):
    im = np.round(np.clip(im, 0, 1) * 255.0).astype(np.uint8).astype(np.float64) / 255.0
    return 16.0 + 24.966 * im[..., 2] + 128.553 * im[..., 1] + 65.481 * im[..., 0]
  d = (y(pred) - y(gt))[border:-border, border:-border]
  return 10.0 * np.log10(255.0 ** 2 / np.mean(d ** 2))


def test_score_is_the_official_y_psnr_on_uint8_frames():
  rng = np.random.default_rng(0)
  hr = rng.random((3, 20, 24, 3)).astype(np.float32)
  outputs = {t: np.clip(hr[t] + rng.normal(0, 0.05, hr[t].shape), -0.1, 1.1) for t in (1, 2)}
  s = blind_evaluation.score(outputs, hr, border=4)
  assert s["frames"] == [1, 2]
  for t, got in zip(s["frames"], s["psnr"]):
    # inrsr's Y uses 65.738 / 256 ... (= 65.481 / 255 ... to 2e-6): equal to the code's formula within 1e-6.
    np.testing.assert_allclose(got, _official_y_psnr(outputs[t], hr[t], 4), rtol=1e-6)
  assert all(0 < v < 1 for v in s["ssim"])


def test_each_frame_is_the_centre_of_its_window():
  lr = np.arange(9, dtype=np.float32)[:, None, None, None] * np.ones((9, 2, 3, 3), np.float32)
  # A restorer that tags window position i by multiplying by (i + 1) and upsamples x2 by repetition.
  seen = []

  def restore(window):
    seen.append(window[:, 0, 0, 0].tolist())
    up = np.repeat(np.repeat(window, 2, 1), 2, 2)
    return up * (np.arange(len(window)) + 1)[:, None, None, None]

  out = blind_evaluation.centre_outputs(restore, lr, window=5)
  assert sorted(out) == [2, 3, 4, 5, 6]  # the first and last 2 frames have no full window
  assert seen == [[t - 2, t - 1, t, t + 1, t + 2] for t in range(2, 7)]
  for t, frame in out.items():
    assert frame.shape == (4, 6, 3) and np.all(frame == 3 * t)  # centre (position 2, tag 3) of window t
  with pytest.raises(ValueError, match="no full window"):
    blind_evaluation.scored_frames(4, 5)


def test_settings_fill_defaults_and_name_bad_fields():
  c = ml_collections.ConfigDict({"eval": {"blind": {"clips": ("walk",), "frames": 6}}})
  s = blind_evaluation.settings(c)
  assert s.clips == ("walk",) and s.frames == 6 and s.recipe == "gaussian_test" and s.window == 5
  s = blind_evaluation.settings(c, {"crop": 256, "frames": 20})
  assert (s.crop, s.frames, s.clips) == (256, 20, ("walk",))  # overrides win, the rest is the run's
  with pytest.raises(ValueError, match=r"overrides has unknown fields \['crp'\]"):
    blind_evaluation.settings(c, {"crp": 1})
  with pytest.raises(ValueError, match=r"eval.blind.frames=-1 must be >= 0"):
    blind_evaluation.settings(c, {"frames": -1})
  c.eval.blind.recipe = "motion"
  with pytest.raises(ValueError, match="eval.blind.recipe='motion' must be one of"):
    blind_evaluation.settings(c)
  bad = ml_collections.ConfigDict({"eval": {"blind": {"windw": 3}}})
  with pytest.raises(ValueError, match=r"unknown fields \['windw'\]"):
    blind_evaluation.settings(bad)


@pytest.mark.usefixtures("vid4")
def test_degraded_vid4_is_the_test_recipe():
  blind = blind_evaluation.settings(ml_collections.ConfigDict(
      {"eval": {"blind": {"clips": ("calendar",), "frames": 2, "crop": 0}}}))
  (clip,) = blind_evaluation.degraded_clips(blind)
  assert clip.hr.shape[1] % 4 == 0 and clip.hr.shape[2] % 4 == 0
  assert clip.lr.shape == (2, clip.hr.shape[1] // 4, clip.hr.shape[2] // 4, 3)
  # Independently: replicate pad by 4, correlate with the 9x9 sigma-1.2 kernel, [::4, ::4], round to uint8.
  k = degradations.matlab_gaussian_kernel(9, 1.2)
  hr = clip.hr[0].astype(np.float32) * np.float32(255.0)
  padded = np.pad(hr.astype(np.float64), ((4, 4), (4, 4), (0, 0)), mode="edge")
  want = np.zeros(clip.lr.shape[1:])
  for dy in range(9):
    for dx in range(9):
      want += np.float64(np.float32(k[dy, dx])) * padded[dy:dy + hr.shape[0]:4, dx:dx + hr.shape[1]:4]
  np.testing.assert_array_equal(np.round(clip.lr[0] * 255.0), np.round(np.clip(want, 0, 255)))


@pytest.mark.usefixtures("vid4")
def test_evaluate_a_clip_model_run_next_to_bicubic_and_a_frame_model(tmp_path):
  config = bvsr_ik_train291.get_config("small")
  model = models.from_config(config.model)
  checkpoints.save_params(tmp_path / "bvsr", config, models.init_params(model, jax.random.key(0)), step=3)
  other = liif_train291.get_config("small")
  liif = models.from_config(other.model)
  checkpoints.save_params(tmp_path / "liif", other, models.init_params(liif, jax.random.key(1)), step=5)

  results = evaluators.evaluate_run(tmp_path / "bvsr", compare=[tmp_path / "liif"])
  assert json.loads((tmp_path / "bvsr" / evaluators.RESULTS_JSON).read_text())["pooled"] == results["pooled"]
  labels = list(results["pooled"])
  assert labels[0] == "bvsr_ik (step 3)" and labels[1].startswith("liif (liif, step 5)")
  assert labels[2:] == ["bicubic", blind_evaluation.GRID_BICUBIC]
  blind = blind_evaluation.settings(config)
  clips = blind_evaluation.degraded_clips(blind)
  for label in labels:  # every method scores the same centre frames, pooled over the clips' frames
    assert results["pooled"][label]["frames"] == len(blind.clips) * (blind.frames - 4)
    per_frame = [v for c in results["clips"].values() for v in c[label]["psnr"]]
    np.testing.assert_allclose(results["pooled"][label]["psnr"], np.mean(per_frame))
  # Bicubic, recomputed independently from the degraded frames.
  want = [_official_y_psnr(resize.resize(c.lr[t], *c.hr.shape[1:3]), c.hr[t], 4) for c in clips for t in (2, 3)]
  np.testing.assert_allclose(results["pooled"]["bicubic"]["psnr"], np.mean(want), rtol=1e-6)
  assert "| bvsr_ik (step 3) |" in (tmp_path / "bvsr" / evaluators.RESULTS_MD).read_text()
  with pytest.raises(ValueError, match="--compare is for whole-clip models"):
    evaluators.evaluate_run(tmp_path / "liif", compare=[tmp_path / "bvsr"])
  with pytest.raises(ValueError, match="zero-shot clip methods and blind settings are for whole-clip model runs.*holds a liif model"):
    evaluators.evaluate_run(tmp_path / "liif", clip_methods={"zs": lambda *a: None})
  with pytest.raises(ValueError, match="a whole-clip model upscales only at its scale x4"):
    evaluators.evaluate_run(tmp_path / "bvsr", scales=[2.0])


def test_grid_bicubic_reproduces_a_ramp_sampled_by_the_blind_subsampling():
  """A linear HR ramp subsampled [::4, ::4] comes back exactly from `grid_bicubic` (Keys' cubic reproduces linear
  functions) wherever all four taps are inside the LR; the centre-aligned bicubic is 1.5 HR px off."""
  y, x = np.mgrid[0:48, 0:40].astype(np.float64)
  hr = np.stack([0.1 + 0.01 * y, 0.2 + 0.012 * x, 0.05 + 0.004 * y + 0.006 * x], -1)
  lr = hr[::4, ::4].astype(np.float32)
  out = blind_evaluation.grid_bicubic(lr, 48, 40)
  inner = (slice(4, 4 * (12 - 2)), slice(4, 4 * (10 - 2)))  # taps j - 1 .. j + 2 inside 0 .. h - 1
  np.testing.assert_allclose(out[inner], hr[inner], atol=1e-5)
  np.testing.assert_allclose(out[::4, ::4], lr, atol=1e-6)  # it interpolates the kept pixels
  centred = blind_evaluation.bicubic(lr, 48, 40)
  np.testing.assert_allclose((hr - centred)[8:40, 8:32, 0], 1.5 * 0.01, atol=1e-4)  # the phase offset
  m = resize.grid_matrix(5, 20, 0.25)
  np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)


def test_a_whole_clip_method_sees_the_clip_and_is_scored_on_the_centre_frames():
  rng = np.random.default_rng(1)
  hr = rng.random((7, 16, 20, 3)).astype(np.float32)
  clip = blind_evaluation.BlindClip("c", hr, hr[:, ::4, ::4])
  calls = []

  def whole_clip(name, lr, height, width):  # bicubic of each frame, through the whole-clip path
    calls.append((name, lr.shape, height, width))
    return np.stack([blind_evaluation.bicubic(f, height, width) for f in lr])

  r = blind_evaluation.evaluate([clip], {}, {"bicubic": blind_evaluation.bicubic},
                                clip_methods={"clip": whole_clip}, window=5, border=2)
  assert calls == [("c", (7, 4, 5, 3), 16, 20)]  # every LR frame at once, not windows
  assert list(r["pooled"]) == ["clip", "bicubic"]
  assert r["clips"]["c"]["clip"]["frames"] == [2, 3, 4]
  assert r["clips"]["c"]["clip"]["psnr"] == r["clips"]["c"]["bicubic"]["psnr"]
  want = [_official_y_psnr(blind_evaluation.bicubic(clip.lr[t], 16, 20), hr[t], 2) for t in (2, 3, 4)]
  np.testing.assert_allclose(r["clips"]["c"]["clip"]["psnr"], want, rtol=1e-6)
  with pytest.raises(ValueError, match=r"short restored c as \(7, 8, 10, 3\), expected \(7, 16, 20, 3\)"):
    blind_evaluation.evaluate([clip], {}, {}, clip_methods={"short": lambda n, lr, h, w: np.zeros((7, 8, 10, 3))})
