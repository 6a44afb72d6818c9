"""`evaluate`'s reported PSNR/SSIM per image against a recomputation written here in NumPy (and scikit-image's SSIM)."""

import json
import math

import imageio.v3 as iio
import ml_collections
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from experiments.configs import liif_train291, srinr_demo
from inrsr import evaluators, resize
from inrsr.evaluators import frames
from inrsr.infer import inference
from inrsr.train import checkpoints, training

Y = np.array([65.738, 129.057, 25.064]) / 256.0  # LIIF's calc_psnr / MATLAB rgb2ycbcr luma, on [0, 1] values


def _srinr_config():
  c = srinr_demo.get_config("small")  # protocol `fit` on two bundled crops, `heldout` on a third; no mod-crop
  c.data.center_crop = 64
  c.eval.heldout.center_crop = 64
  c.train.update(steps=6, checkpoint_every=6)
  c.eval.update(scales=(2.5, 4.0), metrics=("benchmark", "full"))  # float LR (eval.quantize_lr unset)
  return c


def _liif_config():
  c = liif_train291.get_config("small")  # protocol `patches`; evaluation mod-crops, 8-bit LR, benchmark metric
  c.data.update(source="bundled", names=("astronaut", "coffee", "chelsea"), root="", limit=0)
  c.train.update(steps=6, checkpoint_every=6)
  c.eval.heldout_sets = ml_collections.ConfigDict()
  c.eval.heldout.update(source="bundled", names=("rocket", "immunohistochemistry"), center_crop=64)
  c.eval.update(scales=(2.0, 3.5), metrics=("benchmark", "full"))
  assert c.eval.quantize_lr  # the LIIF family's protocol: the LR rounded to 8 bits, as benchmark LR files are
  return c


def _psnr(pred, hr, shave, y):
  diff = pred.astype(np.float64) - hr.astype(np.float64)
  if y:
    diff = diff @ Y  # the luma of the difference (the offset 16/255 cancels)
  if shave:
    diff = diff[shave:-shave, shave:-shave]
  return -10.0 * math.log10(np.mean(diff**2))


def _ssim(pred, hr, shave, y):
  pred, hr = pred.astype(np.float64), hr.astype(np.float64)
  if shave:
    pred, hr = pred[shave:-shave, shave:-shave], hr[shave:-shave, shave:-shave]
  kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)  # Wang et al.
  if y:
    return structural_similarity(16 / 255 + pred @ Y, 16 / 255 + hr @ Y, **kw)
  return structural_similarity(pred, hr, channel_axis=-1, **kw)


def _scores(pred, hr, metric, scale):
  shave = {"benchmark": math.ceil(scale), "full": 0}[metric]
  y = metric == "benchmark"
  return {"psnr": _psnr(pred, hr, shave, y), "ssim": _ssim(pred, hr, shave, y)}


def _degrade(hr, scale, modcrop):
  """The evaluation's LR, floor(H / s) x floor(W / s) bicubic (antialiased), as 8 bits and as floats; the HR it
  is scored against (mod-cropped to round(h s) x round(w s), or whole)."""
  h, w = int(hr.shape[0] // scale), int(hr.shape[1] // scale)
  if modcrop:
    hr = hr[:round(h * scale), :round(w * scale)]
  lr = np.clip(resize.resize(hr, h, w), 0.0, 1.0)
  return np.round(lr * 255.0).astype(np.uint8), lr, hr


@pytest.mark.parametrize("make_config,model_name,modcrop", [(_srinr_config, "srinr", False),
                                                            (_liif_config, "liif", True)])
def test_reported_metrics_equal_a_recomputation(tmp_path, make_config, model_name, modcrop):
  config = make_config()
  training.train(config, tmp_path, progress=False)
  results = evaluators.evaluate_run(tmp_path, progress=False, save_predictions=True)
  assert results == json.loads((tmp_path / evaluators.RESULTS_JSON).read_text())
  assert results["model"] == model_name and results["modcrop"] == modcrop
  model, params, _, _ = checkpoints.restore_model(tmp_path)
  sets = frames.evaluation_sets(config)
  assert set(results["protocols"]) == set(sets) == ({"fit", "heldout"} if model_name == "srinr" else {"heldout"})
  if model_name == "srinr":  # image k of K trained at t = -1 + (2k + 1) / K; unseen images at t = 0
    assert [t for _, _, t in sets["fit"]] == [-0.5, 0.5] and [t for _, _, t in sets["heldout"]] == [0.0]
  quantize = bool(config.eval.get("quantize_lr", False))
  assert quantize == (model_name == "liif")
  checked, worst = 0, {"psnr": 0.0, "ssim": 0.0}
  for protocol, items in sets.items():
    for scale in config.eval.scales:
      for name, hr, t in items:
        lr8, lr_float, hr_c = _degrade(hr, scale, modcrop)
        saved = tmp_path / "predictions" / protocol / f"x{scale:g}" / "lr" / f"{name}.png"
        np.testing.assert_array_equal(iio.imread(saved), lr8)  # the LR evaluate fed (saved rounded to 8 bits)
        lr, other_lr = (lr8.astype(np.float32) / 255.0, lr_float) if quantize else (lr_float, lr8 / np.float32(255))
        assert np.abs(lr - other_lr).max() > 1e-3  # the rounding is not a no-op on these images
        pred = inference.upscale(model, params, lr, hr_c.shape[0], hr_c.shape[1], t=t, chunk=config.eval.chunk)
        bicubic = np.clip(resize.resize(lr, hr_c.shape[0], hr_c.shape[1]), 0.0, 1.0)
        for metric in config.eval.metrics:
          reported = results["protocols"][protocol][f"{scale:g}"][metric]["per_image"][name]
          for method, out in (("model", pred), ("bicubic", bicubic)):
            want = _scores(out, hr_c, metric, scale)
            for k in worst:
              worst[k] = max(worst[k], abs(reported[method][k] - want[k]))
            assert reported[method]["psnr"] == pytest.approx(want["psnr"], rel=0, abs=1e-9), (protocol, scale, name)
            assert reported[method]["ssim"] == pytest.approx(want["ssim"], rel=0, abs=1e-9), (protocol, scale, name)
          checked += 1
        if checked <= len(config.eval.metrics):  # once: the other LR (rounded or not) would have scored otherwise
          other_pred = inference.upscale(model, params, other_lr, hr_c.shape[0], hr_c.shape[1], t=t,
                                         chunk=config.eval.chunk)
          other = _psnr(other_pred, hr_c, math.ceil(scale), True)
          assert abs(other - results["protocols"][protocol][f"{scale:g}"]["benchmark"]["per_image"][name]["model"]
                     ["psnr"]) > 1e-6
  print(f"{model_name}: {checked} (image, scale, metric) entries, largest difference from the recomputation: "
        f"PSNR {worst['psnr']:.2g} dB, SSIM {worst['ssim']:.2g}")
  assert checked == sum(len(v) for v in sets.values()) * len(config.eval.scales) * len(config.eval.metrics)
