"""Tests for inrsr.metrics against scikit-image and worked cases."""

import numpy as np
import pytest
import skimage.data
import skimage.metrics

from inrsr import metrics


def _pair(seed=0):
  img = skimage.data.astronaut()[:96, 100:220] / 255.0
  noisy = np.clip(img + np.random.default_rng(seed).normal(0, 0.05, img.shape), 0, 1)
  return noisy, img


def test_psnr_and_ssim_match_skimage():
  pred, target = _pair()
  assert metrics.psnr(pred, target) == pytest.approx(
      skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=1), abs=1e-9)
  want = skimage.metrics.structural_similarity(pred, target, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=1, channel_axis=-1)
  assert metrics.ssim(pred, target) == pytest.approx(want, abs=1e-9)
  assert metrics.ssim(pred, target, shave=4) == pytest.approx(
      skimage.metrics.structural_similarity(pred[4:-4, 4:-4], target[4:-4, 4:-4], gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False, data_range=1,
                                            channel_axis=-1), abs=1e-9)


def test_y_channel_and_shave_worked_case():
  target = np.zeros((6, 6, 3))
  pred = np.zeros((6, 6, 3))
  pred[..., 1] = 0.1  # green error 0.1 everywhere -> Y difference 0.1 * 129.057 / 256
  pred[0, :, :] = 1.0  # a wrong top border row that shave=1 removes
  dy = 0.1 * 129.057 / 256
  assert metrics.psnr(pred, target, shave=1, y_channel=True) == pytest.approx(-10 * np.log10(dy**2))
  assert metrics.psnr(pred, target, shave=1) == pytest.approx(-10 * np.log10(0.01 / 3))
  assert metrics.psnr(target, target) == float("inf")


def test_protocols():
  assert metrics.protocol_kwargs("div2k", 4) == {"shave": 10, "y_channel": False}
  assert metrics.protocol_kwargs("benchmark", 2.5) == {"shave": 3, "y_channel": True}
  assert metrics.protocol_kwargs("full", 32) == {"shave": 0, "y_channel": False}
  with pytest.raises(ValueError, match="protocol"):
    metrics.protocol_kwargs("set5", 2)


def test_ssim_y_channel_equals_skimage_on_luma():
  pred, target = _pair(1)
  luma = lambda im: 16 / 255 + im @ (np.array([65.738, 129.057, 25.064]) / 256)
  want = skimage.metrics.structural_similarity(luma(pred), luma(target), gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=1)
  assert metrics.ssim(pred, target, y_channel=True) == pytest.approx(want, abs=1e-9)


def test_bad_shapes():
  with pytest.raises(ValueError, match="must be equal"):
    metrics.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
  with pytest.raises(ValueError, match="shave"):
    metrics.psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), shave=2)
