"""PSNR and SSIM on [0, 1] images, with the SR literature's protocols (DESIGN.md, Evaluation).

Protocols: `div2k` (RGB, shave scale + 6), `benchmark` (Y channel, shave scale), `full` (RGB, no shave).
The Y rule is LIIF's: for PSNR the RGB difference is mapped with (65.738, 129.057, 25.064) / 256 and summed.
For SSIM on Y the image itself is mapped, Y = 16/255 + sum_c rgb_c * coef_c / 256 (BT.601, as MATLAB's
rgb2ycbcr). SSIM is Wang et al.'s: Gaussian window sigma 1.5 (11 taps), K1 = 0.01, K2 = 0.03, population
statistics, mean over the valid region and then over channels; this equals scikit-image's
`structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`.
Metrics run in NumPy (float64), so they are exact and cheap next to the model.
"""

from __future__ import annotations

import numpy as np

Y_COEFFS = np.array([65.738, 129.057, 25.064]) / 256.0
PROTOCOLS = ("div2k", "benchmark", "full")


def protocol_kwargs(protocol: str, scale: float) -> dict:
  """`psnr`/`ssim` keywords of a named protocol at a scale.

  Args:
    protocol: "div2k", "benchmark" or "full".
    scale: SR factor (the shave is ceil(scale) for non-integer scales).

  Returns:
    dict with `shave` and `y_channel`.
  """
  s = int(np.ceil(scale - 1e-9))
  if protocol == "div2k":
    return {"shave": s + 6, "y_channel": False}
  if protocol == "benchmark":
    return {"shave": s, "y_channel": True}
  if protocol == "full":
    return {"shave": 0, "y_channel": False}
  raise ValueError(f"{protocol=} must be one of {PROTOCOLS}")


def _prepare(pred, target, shave):
  pred = np.asarray(pred, np.float64)
  target = np.asarray(target, np.float64)
  if pred.shape != target.shape or pred.ndim != 3:
    raise ValueError(f"pred {pred.shape} and target {target.shape} must be equal (H, W, C) shapes")
  if shave:
    if 2 * shave >= min(pred.shape[0], pred.shape[1]):
      raise ValueError(f"{shave=} leaves nothing of a {pred.shape[0]}x{pred.shape[1]} image")
    pred = pred[shave:-shave, shave:-shave]
    target = target[shave:-shave, shave:-shave]
  return pred, target


def _to_y(image):
  if image.shape[-1] != 3:
    raise ValueError(f"y_channel needs RGB images, got {image.shape[-1]} channels")
  return 16.0 / 255.0 + image @ Y_COEFFS


def psnr(pred, target, *, shave: int = 0, y_channel: bool = False) -> float:
  """Peak signal-to-noise ratio in dB for [0, 1] images.

  Args:
    pred: (H, W, C) prediction (clipped to [0, 1] by the caller or not: it is used as given).
    target: (H, W, C) ground truth.
    shave: pixels removed from each border before measuring.
    y_channel: measure LIIF's Y-channel difference.

  Returns:
    PSNR in dB (inf for identical images).
  """
  pred, target = _prepare(pred, target, shave)
  diff = pred - target
  if y_channel:
    diff = _to_y(diff) - 16.0 / 255.0
  mse = float(np.mean(diff**2))
  return float("inf") if mse == 0 else -10.0 * np.log10(mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  g = np.exp(-0.5 * (x / sigma) ** 2)
  return g / g.sum()


def _filter_valid(image: np.ndarray, g: np.ndarray) -> np.ndarray:
  """Separable 'valid' correlation of (H, W) with the 1-D window g along both axes."""
  r = len(g)
  h, w = image.shape
  rows = sum(g[i] * image[i:h - r + 1 + i] for i in range(r))
  return sum(g[j] * rows[:, j:w - r + 1 + j] for j in range(r))


def _ssim_channel(x, y, g, c1, c2):
  mx, my = _filter_valid(x, g), _filter_valid(y, g)
  vx = _filter_valid(x * x, g) - mx * mx
  vy = _filter_valid(y * y, g) - my * my
  cxy = _filter_valid(x * y, g) - mx * my
  s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return float(s.mean())


def ssim(pred, target, *, shave: int = 0, y_channel: bool = False) -> float:
  """Structural similarity (Wang et al. 2004) for [0, 1] images.

  Args:
    pred: (H, W, C) prediction.
    target: (H, W, C) ground truth.
    shave: pixels removed from each border before measuring.
    y_channel: measure on BT.601 luma.

  Returns:
    Mean SSIM in [-1, 1].
  """
  pred, target = _prepare(pred, target, shave)
  if y_channel:
    pred, target = _to_y(pred)[..., None], _to_y(target)[..., None]
  g = _gaussian_window()
  if min(pred.shape[:2]) < len(g):
    raise ValueError(f"SSIM needs images of at least {len(g)}x{len(g)} after shaving, got {pred.shape[:2]}")
  c1, c2 = 0.01**2, 0.03**2
  return float(np.mean([_ssim_channel(pred[..., c], target[..., c], g, c1, c2)
                        for c in range(pred.shape[-1])]))
