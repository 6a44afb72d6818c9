"""BVSR-IK's blur-and-subsample degradations, as its official code makes them (pure NumPy and SciPy).

Source: QZ1-boy/BVSR-IK @ 466f42a, `gen_dataset_blurdown.py` (test sets) and `data.py` (training pairs made on
the fly); facts in `../shared/bvsr_ik.md` section 1. The code is followed where it and the paper differ:

  * Gaussian kernels are isotropic with sigma drawn from the discrete set {0.4, 0.5, ..., 2.0}
    (`GAUSSIAN_SIGMAS`), size `2 * ceil(3 * sigma) + 1` (5x5 to 13x13, computed in float as the code does, so
    sigma 0.7 gives 7x7 and 1.3 gives 9x9), built like MATLAB's `fspecial('gaussian')` (entries below
    eps * max are zeroed, then normalised). The kernel is used at its native size: the code's 13x13 bicubic
    resize of it is computed but never applied (training) or commented out (test), so it is not done here.
    The paper's "13x13 kernels" holds only for the realistic kernels.
  * The test sets use sigma 1.2 (9x9) for every frame of every clip (`TEST_RECIPE`), not a random kernel per
    frame as the paper says.
  * "Realistic" kernels are the KernelGAN-style noisy anisotropic Gaussian of the code, not motion trajectories:
    31x31, covariance eigenvalues (variances) ~ U[0.6 s, 5 s] with s = 4, angle ~ U[0, pi), mean at
    15 + 0.5 (s - 1) = 16.5, multiplicative noise (1 + U[-0.25, 0.25]) per entry, shifted (cubic spline,
    `scipy.ndimage.shift`, zero fill) so its centre of mass is at 15.5, negatives clipped, normalised, then
    resized to 13x13 like `cv2.resize(..., INTER_CUBIC)` (emulated here: Keys a = -0.75, half-pixel centres,
    edge replicate, float32 weights on float64 data), clipped at 0 and normalised again. A new kernel is drawn
    for every frame.
  * Blur and subsampling: the HR frame on the 0-255 scale is replicate-padded by k // 2, every channel is
    cross-correlated with the same kernel (the kernel is cast to float32 first, as `torch.FloatTensor` does),
    and the result is subsampled `[::s, ::s]` (top-left phase, no antialias). Sums run in float64 here; the
    code's float32 convolution agrees with them to about 1e-5 on the 0-255 scale.
  * Test LR is clamped to [0, 255], rounded (half to even, as torch.round) and stored as uint8; training LR stays
    float and is not rounded (`quantize` field).
  * Noise (0-255 scale) is added after subsampling: sigma = U[0, 1) * `noise_max` per frame when
    `noise_random` (the released Realistic training set: `noise_max` 25, no clipping, no rounding), else the
    fixed `noise_max`; with `quantize` the noisy LR is clamped and rounded (`gen_dataset_blurdown`'s noisy
    variant, commented out in the release). The Gaussian training set has no noise.
  * Colour order does not matter (every channel gets the same kernel); the official files are BGR.

Determinism: every random draw comes from the `numpy.random.Generator` passed in, in this order per frame:
sigma index (Gaussian) or lambda_1, lambda_2, theta, the 31x31 noise (realistic); then the noise sigma and the
noise (when `noise_max` > 0). The official code uses Python's and NumPy's global generators, so its random
kernels are reproduced in distribution, not draw for draw.

The correction target I^DN of the official training (REDS `train_sharp_bicubic`, MATLAB bicubic x1/4 of the
sharp frame) is not made here: use `inrsr.resize`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import ndimage

GAUSSIAN_SIGMAS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0)
TEST_SIGMA = 1.2


@dataclasses.dataclass(frozen=True)
class BlurDownRecipe:
  """One of the official degradations (see the module docstring).

  Attributes:
    kernel: "gaussian" or "realistic".
    sigmas: the Gaussian sigmas a frame's sigma is drawn from (uniformly).
    scale: subsampling factor s (`[::s, ::s]`).
    realistic_size: the realistic generator's raw kernel size (31).
    realistic_noise: the realistic generator's multiplicative noise level (0.25).
    realistic_out_size: the size the realistic kernel is resized to (13).
    noise_max: noise sigma on the 0-255 scale (0 = no noise).
    noise_random: sigma = U[0, 1) * noise_max per frame, else noise_max.
    quantize: clamp to [0, 255] and round (uint8 test LR); False keeps float training LR.
  """

  kernel: str = "gaussian"
  sigmas: tuple[float, ...] = GAUSSIAN_SIGMAS
  scale: int = 4
  realistic_size: int = 31
  realistic_noise: float = 0.25
  realistic_out_size: int = 13
  noise_max: float = 0.0
  noise_random: bool = True
  quantize: bool = False


# Training pairs (data.py): float LR, not rounded.
GAUSSIAN_TRAIN = BlurDownRecipe(kernel="gaussian")
REALISTIC_TRAIN = BlurDownRecipe(kernel="realistic", noise_max=25.0)  # the released Realistic set is noisy
# Test sets (gen_dataset_blurdown.py): uint8 LR.
TEST_RECIPE = BlurDownRecipe(kernel="gaussian", sigmas=(TEST_SIGMA,), quantize=True)  # sigma 1.2, 9x9
GAUSSIAN_TEST = TEST_RECIPE
REALISTIC_TEST = BlurDownRecipe(kernel="realistic", quantize=True)
RECIPES = {"gaussian_train": GAUSSIAN_TRAIN, "realistic_train": REALISTIC_TRAIN, "gaussian_test": GAUSSIAN_TEST,
           "realistic_test": REALISTIC_TEST, "test": TEST_RECIPE}


def gaussian_kernel_size(sigma: float) -> int:
  """The code's size for a Gaussian of `sigma`: `int(ceil(sigma * 3) * 2 + 1)` in float arithmetic."""
  return int(math.ceil(sigma * 3) * 2 + 1)


def matlab_gaussian_kernel(size: int, sigma: float) -> np.ndarray:
  """`fspecial('gaussian', [size size], sigma)` as the code's `matlab_style_gauss2D`: float64, sums to one."""
  m = (size - 1.0) / 2.0
  y, x = np.ogrid[-m:m + 1, -m:m + 1]
  h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
  h[h < np.finfo(h.dtype).eps * h.max()] = 0
  total = h.sum()
  if total != 0:
    h /= total
  return h


def gaussian_kernel(sigma: float) -> np.ndarray:
  """The official isotropic kernel of `sigma` at its native size `gaussian_kernel_size(sigma)`."""
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma}")
  return matlab_gaussian_kernel(gaussian_kernel_size(sigma), sigma)


def random_gaussian_kernel(rng: np.random.Generator, sigmas: Sequence[float] = GAUSSIAN_SIGMAS) -> np.ndarray:
  """A Gaussian kernel with sigma drawn uniformly from `sigmas` (one `rng.integers` draw)."""
  return gaussian_kernel(float(sigmas[int(rng.integers(len(sigmas)))]))


def _cv2_cubic_weights(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) matrix of `cv2.resize` INTER_CUBIC along one axis (a = -0.75, edge replicate, float32 weights)."""
  scale = 1.0 / (out_size / in_size)  # cv2: scale_x = 1 / inv_scale_x, in double
  a = np.float32(-0.75)
  w = np.zeros((out_size, in_size), np.float64)
  one = np.float32(1)
  for d in range(out_size):
    fx = np.float32((d + 0.5) * scale - 0.5)
    sx = int(np.floor(fx))
    x = np.float32(fx - np.float32(sx))
    c0 = ((a * (x + one) - 5 * a) * (x + one) + 8 * a) * (x + one) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + one
    c2 = ((a + 2) * (one - x) - (a + 3)) * (one - x) * (one - x) + one
    c3 = one - c0 - c1 - c2
    for k, c in enumerate((c0, c1, c2, c3)):
      w[d, min(max(sx - 1 + k, 0), in_size - 1)] += np.float64(np.float32(c))
  return w


def cv2_resize_cubic(image: np.ndarray, size: int) -> np.ndarray:
  """A 2-D float64 array resized to size x size like `cv2.resize(image, (size, size), INTER_CUBIC)`."""
  wy = _cv2_cubic_weights(image.shape[0], size)
  wx = _cv2_cubic_weights(image.shape[1], size)
  return wy @ (image.astype(np.float64) @ wx.T)


def realistic_kernel(rng: np.random.Generator, *, scale: int = 4, size: int = 31, noise_level: float = 0.25,
                     out_size: int | None = 13) -> np.ndarray:
  """The official "realistic" kernel: noisy anisotropic Gaussian, centred, resized to out_size (float64)."""
  min_var, max_var = 0.6 * scale, 5.0 * scale
  lambda_1 = min_var + rng.random() * (max_var - min_var)
  lambda_2 = min_var + rng.random() * (max_var - min_var)
  theta = rng.random() * np.pi
  noise = -noise_level + rng.random((size, size)) * noise_level * 2
  q = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  inv_sigma = np.linalg.inv(q @ np.diag([lambda_1, lambda_2]) @ q.T)
  mu = size // 2 + 0.5 * (scale - size % 2)
  yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  zz = np.stack([xx - mu, yy - mu], -1)  # (x, y) as the code's meshgrid(range, range) stacks them
  quad = np.einsum("...i,ij,...j->...", zz, inv_sigma, zz)
  raw = np.exp(-0.5 * quad) * (1 + noise)
  shift = np.array(raw.shape) / 2 - np.array(ndimage.center_of_mass(raw))
  centred = ndimage.shift(raw, shift)
  centred[centred < 0] = 0
  kernel = centred / np.sum(centred)
  if out_size is not None and out_size != size:
    kernel = cv2_resize_cubic(kernel, out_size)
    kernel = np.clip(kernel, 0, np.max(kernel))
    kernel = kernel / np.sum(kernel)
  return kernel


def draw_kernel(rng: np.random.Generator, recipe: BlurDownRecipe) -> np.ndarray:
  """One frame's kernel under `recipe`."""
  if recipe.kernel == "gaussian":
    return random_gaussian_kernel(rng, recipe.sigmas)
  if recipe.kernel == "realistic":
    return realistic_kernel(rng, scale=recipe.scale, size=recipe.realistic_size,
                            noise_level=recipe.realistic_noise, out_size=recipe.realistic_out_size)
  raise ValueError(f"recipe.kernel={recipe.kernel!r} must be 'gaussian' or 'realistic'")


def blur_downsample(hr: np.ndarray, kernel: np.ndarray, scale: int = 4) -> np.ndarray:
  """Replicate pad, per-channel cross-correlation with `kernel`, then `[::scale, ::scale]`.

  Args:
    hr: (H, W, C) or (H, W) frame on any scale (the official code uses 0-255).
    kernel: (k, k) kernel, k odd; cast to float32 as the official code does.
    scale: subsampling factor.

  Returns:
    float64 (ceil(H / scale), ceil(W / scale)[, C]); only the kept positions are computed.
  """
  hr = np.asarray(hr)
  kernel = np.asarray(kernel)
  if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 != 1:
    raise ValueError(f"kernel must be square with an odd size, got shape {kernel.shape}")
  if hr.ndim not in (2, 3):
    raise ValueError(f"hr must be (H, W) or (H, W, C), got shape {hr.shape}")
  k = kernel.shape[0]
  p = k // 2
  img = hr.astype(np.float32).astype(np.float64)
  pad = ((p, p), (p, p)) + (((0, 0),) if img.ndim == 3 else ())
  padded = np.pad(img, pad, mode="edge")
  h_out, w_out = -(-hr.shape[0] // scale), -(-hr.shape[1] // scale)
  weights = kernel.astype(np.float32).astype(np.float64)
  out = np.zeros((h_out, w_out) + img.shape[2:], np.float64)
  for dy in range(k):
    for dx in range(k):
      if weights[dy, dx] != 0:
        out += weights[dy, dx] * padded[dy:dy + scale * h_out:scale, dx:dx + scale * w_out:scale]
  return out


def _to_255(hr: np.ndarray) -> np.ndarray:
  hr = np.asarray(hr)
  if hr.dtype == np.uint8:
    return hr.astype(np.float32)
  if np.issubdtype(hr.dtype, np.floating):
    return (hr * 255.0).astype(np.float32)
  raise ValueError(f"HR frames must be uint8 (0-255) or float in [0, 1], got dtype {hr.dtype}")


def degrade_frame(hr: np.ndarray, rng: np.random.Generator, recipe: BlurDownRecipe = TEST_RECIPE,
                  kernel: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """One HR frame -> (LR float32 in [0, 1] (exact k/255 when quantized; unclipped when not), kernel).

  Args:
    hr: (H, W, C) uint8 (0-255) or float in [0, 1].
    rng: the generator every draw comes from.
    recipe: the degradation.
    kernel: use this kernel instead of drawing one.
  """
  img = _to_255(hr)
  if kernel is None:
    kernel = draw_kernel(rng, recipe)
  lr = blur_downsample(img, kernel, recipe.scale)
  if recipe.noise_max > 0:
    sigma = rng.random() * recipe.noise_max if recipe.noise_random else recipe.noise_max
    lr = lr + rng.standard_normal(lr.shape) * sigma
  if recipe.quantize:
    lr = np.round(np.clip(lr, 0, 255))
  return (lr / 255.0).astype(np.float32), kernel


def degrade_clip(hr: np.ndarray, rng: np.random.Generator | int,
                 recipe: BlurDownRecipe = TEST_RECIPE) -> tuple[np.ndarray, np.ndarray]:
  """A clip (T, H, W, C) -> (LR (T, h, w, C) float32 in [0, 1], kernels), one kernel per frame.

  `rng` may be a seed. Kernels are returned as an object array when their sizes differ, else (T, k, k).
  """
  hr = np.asarray(hr)
  if hr.ndim != 4:
    raise ValueError(f"expected a clip (T, H, W, C), got shape {hr.shape}")
  rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
  lrs, kernels = [], []
  for frame in hr:
    lr, kernel = degrade_frame(frame, rng, recipe)
    lrs.append(lr)
    kernels.append(kernel)
  if len({k.shape for k in kernels}) == 1:
    kernel_out = np.stack(kernels)
  else:
    kernel_out = np.empty(len(kernels), object)
    for i, k in enumerate(kernels):
      kernel_out[i] = k
  return np.stack(lrs), kernel_out


def to_uint8(lr: np.ndarray) -> np.ndarray:
  """Quantized LR in [0, 1] back to its uint8 values."""
  return np.round(np.clip(np.asarray(lr, np.float64) * 255.0, 0, 255)).astype(np.uint8)
